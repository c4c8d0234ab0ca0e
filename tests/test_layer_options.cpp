// Layer options are validated at construction with one rule for every layer, and
// the conveniences of issue 19: kernel_size as an int, chainable setters.
#include <string>

#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using test_support::error_of;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("conv layers check features, kernel_size, strides and dilations when constructed") {
  for (bool local : {false, true}) {
    auto make = [local](nn::ConvOptions o) {
      if (local) nn::ConvLocal layer(std::move(o));
      else nn::Conv layer(std::move(o));
    };
    const std::string who = local ? "ConvLocal" : "Conv";
    CAPTURE(who);
    // features = 0 gave an empty [4, 200, 0] output at the first call.
    CHECK(error_of<ValueError>([&] { make({.features = 0, .kernel_size = {3}}); }) ==
          who + ": features must be positive, got 0");
    CHECK(error_of<ValueError>([&] { make({.features = -2, .kernel_size = {3}}); }) ==
          who + ": features must be positive, got -2");
    // An empty kernel_size is a ValueError (it was NotImplementedError, at the first call).
    CHECK(contains(error_of<ValueError>([&] { make({.features = 4, .kernel_size = {}}); }),
                   who + ": kernel_size is empty"));
    CHECK(contains(error_of<ValueError>([&] { make({.features = 4, .kernel_size = {3, 0}}); }),
                   who + ": kernel_size [3, 0] must be positive"));
    CHECK(contains(error_of<ValueError>([&] { make({.features = 4, .kernel_size = {3}, .strides = -1}); }),
                   who + ": strides [-1] must be positive"));
    CHECK(contains(error_of<ValueError>([&] { make({.features = 4, .kernel_size = {3, 3}, .strides = {1, 1, 1}}); }),
                   who + ": strides [1, 1, 1] has 3 entries but kernel_size [3, 3] makes a 2-d convolution"));
    CHECK(contains(error_of<ValueError>([&] { make({.features = 4, .kernel_size = {3}, .input_dilation = 0}); }),
                   who + ": input_dilation [0] must be positive"));
    CHECK(contains(error_of<ValueError>([&] { make({.features = 4, .kernel_size = {3}, .kernel_dilation = {-2}}); }),
                   who + ": kernel_dilation [-2] must be positive"));
  }
  // Dense has always checked at construction; it keeps the same wording.
  CHECK(error_of<ValueError>([] { nn::Dense({.features = 0}); }) == "Dense: features must be positive, got 0");
}

TEST_CASE("a misspelt padding string fails at construction and lists every accepted form") {
  const std::string msg = error_of<ValueError>([] { nn::ConvLocal({.features = 4, .kernel_size = {3}, .padding = "SMAE"}); });
  CHECK(msg ==
        "ConvLocal: padding 'SMAE' is not one of the accepted forms: 'SAME', 'VALID', 'SAME_LOWER' (any case), "
        "'CIRCULAR', 'REFLECT', 'CAUSAL' (upper case; CAUSAL for 1-d kernels only), an int p (p on both sides of "
        "every spatial dim), or one int or (lo, hi) pair per spatial dim");
  CHECK(contains(error_of<ValueError>([] { nn::Conv({.features = 4, .kernel_size = {3}, .padding = "circular"}); }),
                 "Conv: padding 'circular' is not one of the accepted forms"));
  CHECK(contains(error_of<ValueError>([] { nn::Conv({.features = 4, .kernel_size = {3, 3}, .padding = "CAUSAL"}); }),
                 "Conv: CAUSAL padding is only implemented for 1-d convolutions"));
  CHECK(contains(error_of<ValueError>([] { nn::Conv({.features = 4, .kernel_size = {3, 3}, .padding = Padding{1, 2, 3}}); }),
                 "Conv: Invalid padding format: [1, 2, 3]"));
  // Every accepted form constructs.
  for (const Padding& p : {Padding("SAME"), Padding("valid"), Padding("SAME_LOWER"), Padding("CIRCULAR"),
                           Padding("REFLECT"), Padding("CAUSAL"), Padding(2), Padding{{1, 2}}, Padding{-1}}) {
    CAPTURE(p.to_string());
    CHECK_NOTHROW(nn::ConvLocal({.features = 4, .kernel_size = {3}, .padding = p}));
  }
}

TEST_CASE("ConvLocalTranspose checks its options when constructed, as the other conv layers") {
  using Options = nn::ConvLocalTransposeOptions;
  auto make = [](Options o) { nn::ConvLocalTranspose layer(std::move(o)); };
  CHECK(error_of<ValueError>([&] { make({.features = 0, .kernel_size = {3}}); }) ==
        "ConvLocalTranspose: features must be positive, got 0");
  CHECK(contains(error_of<ValueError>([&] { make({.features = 4, .kernel_size = {3, 0}}); }),
                 "ConvLocalTranspose: kernel_size [3, 0] must be positive"));
  CHECK(contains(error_of<ValueError>([&] { make({.features = 4, .kernel_size = {3}, .strides = -1}); }),
                 "ConvLocalTranspose: strides [-1] must be positive"));
  CHECK(contains(error_of<ValueError>([&] { make({.features = 4, .kernel_size = {3, 3}, .kernel_dilation = {1, 1, 1}}); }),
                 "ConvLocalTranspose: kernel_dilation [1, 1, 1] has 3 entries but kernel_size [3, 3] makes a 2-d "
                 "convolution"));
  CHECK(contains(error_of<ValueError>([&] { make({.features = 4, .kernel_size = {3}, .padding = "CIRCLE"}); }),
                 "ConvLocalTranspose: padding 'CIRCLE' is not one of the accepted forms"));
  CHECK(contains(error_of<ValueError>([&] { make({.features = 4, .kernel_size = {3, 3}, .padding = Padding{1, 2, 3}}); }),
                 "ConvLocalTranspose: Invalid padding format: [1, 2, 3]"));
  for (const Padding& p : {Padding("SAME"), Padding("VALID"), Padding("CIRCULAR"), Padding(2), Padding{{1, 2}},
                           Padding{-1}}) {
    CAPTURE(p.to_string());
    CHECK_NOTHROW(make({.features = 4, .kernel_size = {3}, .padding = p}));
  }
}

TEST_CASE("kernel_size accepts an int (a 1-d kernel, as Flax's kernel_size=3)") {
  nn::ConvLocal by_int({.features = 2, .kernel_size = 3, .padding = "VALID"});
  nn::ConvLocal by_list({.features = 2, .kernel_size = {3}, .padding = "VALID"});
  CHECK(by_int.describe() == "ConvLocal, features=2, kernel_size=[3]");
  const Tensor x = random_normal(make_key(3), {2, 8, 5});
  CHECK(by_int(x).shape() == Shape{2, 6, 2});
  CHECK(by_int.state_dict().at("kernel").shape() == Shape{6, 15, 2});
  // Same seed and path, same kernel, same output.
  CHECK(by_int(x).to_vector() == by_list(x).to_vector());
  nn::ConvTranspose up({.features = 2, .kernel_size = 2, .strides = 2});
  CHECK(up(x).shape() == Shape{2, 16, 2});
}

TEST_CASE("ConvOptions' chainable setters build the same options in any order") {
  const nn::ConvOptions chained =
      nn::ConvOptions{}.set_padding("CAUSAL").set_kernel_size(9).set_features(8).set_use_bias(false);
  nn::ConvLocal a(chained), b({.features = 8, .kernel_size = {9}, .padding = "CAUSAL", .use_bias = false});
  CHECK(a.describe() == b.describe());
  const Tensor x = random_normal(make_key(4), {1, 20, 3});
  CHECK(a(x).to_vector() == b(x).to_vector());
  CHECK(a.named_parameters().size() == 1);  // no bias
}

TEST_CASE("Conv and ConvLocal are siblings over ConvBase (Flax's _Conv): neither is the other") {
  nn::Conv conv(nn::ConvOptions{.features = 4, .kernel_size = {3, 3}});
  nn::ConvLocal local(nn::ConvOptions{.features = 4, .kernel_size = {3, 3}});
  nn::Module* a = &conv;
  nn::Module* b = &local;
  CHECK(dynamic_cast<nn::Conv*>(b) == nullptr);
  CHECK(dynamic_cast<nn::ConvLocal*>(a) == nullptr);
  REQUIRE(dynamic_cast<nn::ConvBase*>(a) != nullptr);
  REQUIRE(dynamic_cast<nn::ConvBase*>(b) != nullptr);
  CHECK(dynamic_cast<nn::ConvBase*>(a)->shared_weights());
  CHECK_FALSE(dynamic_cast<nn::ConvBase*>(b)->shared_weights());
  CHECK(conv.describe() == "Conv, features=4, kernel_size=[3, 3]");
  CHECK(local.describe() == "ConvLocal, features=4, kernel_size=[3, 3]");
}
