// Padding forms and their canonicalisation (docs/convlocal.md §2.3), lax string paddings
// (padtype_to_pads), Precision names, and the pad properties the CIRCULAR /
// REFLECT / CAUSAL pre-padding relies on.
#include <limits>

#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

using Pairs = std::vector<std::pair<int, int>>;

std::string canonical(const Padding& p, int rank) { return canonicalize_padding(p, rank).to_string(); }

}  // namespace

TEST_CASE("Padding is built from a string, an int, pairs, ints or a mixed sequence") {
  CHECK(Padding().to_string() == "'SAME'");
  Padding from_chars = "CIRCULAR";
  CHECK(from_chars.is_string());
  CHECK(from_chars.name() == "CIRCULAR");
  Padding from_int = 2;
  CHECK(from_int.is_int());
  CHECK(from_int.value() == 2);
  CHECK(Padding(Pairs{{1, 2}, {0, 3}}).to_string() == "[(1, 2), (0, 3)]");
  CHECK(Padding(std::vector<int>{1, 2}).to_string() == "[1, 2]");
  Padding mixed = {1, {2, 3}};
  CHECK(mixed.is_sequence());
  CHECK(mixed.to_string() == "[1, (2, 3)]");
  CHECK(mixed.pairs() == Pairs{{1, 1}, {2, 3}});
  Padding one_pair = {{1, 2}};  // braces are a Python list: [(1, 2)]
  CHECK(one_pair.to_string() == "[(1, 2)]");
  CHECK_THROWS_AS(from_int.name(), ValueError);
}

TEST_CASE("canonicalize_padding follows Flax's test_canonicalize_padding") {
  CHECK(canonical("SAME", 2) == "'SAME'");
  CHECK(canonical(2, 3) == "[(2, 2), (2, 2), (2, 2)]");
  CHECK(canonical(Padding{1, {2, 3}}, 2) == "[(1, 1), (2, 3)]");
  // Strings are kept as written, case included (lax upper-cases later).
  CHECK(canonical("same", 1) == "'same'");
  // ((2, 2), 3) and ((2, 2), 1): a sequence of two ints has length 2, not the rank.
  // ([None, (1, 2)], 2) has no C++ spelling: an entry is an int or a pair by type.
  for (int rank : {3, 1}) {
    const std::string msg = test_support::error_of<ValueError>([&] { canonicalize_padding(Padding{2, 2}, rank); });
    CHECK(msg == "Invalid padding format: [2, 2], should be str, int, or a sequence of len " + std::to_string(rank) +
                     " where each element is an int or pair of ints.");
  }
  // For a 1-d conv the pair must be wrapped: {{2, 2}} or 2, not the two ints {2, 2}.
  CHECK(canonical(Padding{{2, 2}}, 1) == "[(2, 2)]");
}

TEST_CASE("padtype_to_pads resolves VALID, SAME and SAME_LOWER in any case") {
  CHECK(padtype_to_pads("VALID", {5, 4}, {3, 2}, {1, 1}, "t") == PadPairs{{0, 0}, {0, 0}});
  CHECK(padtype_to_pads("SAME", {5}, {3}, {1}, "t") == PadPairs{{1, 1}});
  CHECK(padtype_to_pads("same", {5}, {2}, {1}, "t") == PadPairs{{0, 1}});        // odd unit at the end
  CHECK(padtype_to_pads("SAME_LOWER", {5}, {2}, {1}, "t") == PadPairs{{1, 0}});  // ... or at the start
  CHECK(padtype_to_pads("SAME", {5, 6}, {3, 3}, {2, 2}, "t") == PadPairs{{1, 1}, {0, 1}});
  CHECK(padtype_to_pads("SAME", {2}, {5}, {1}, "t") == PadPairs{{2, 2}});  // dilated window 5
  CHECK(padtype_to_pads("SAME", {7}, {2}, {4}, "t") == PadPairs{{0, 0}});  // max(.., 0)
  const std::string msg = test_support::error_of<ValueError>([] { padtype_to_pads("FULL", {5}, {3}, {1}, "conv"); });
  CHECK(msg.find("conv: Unrecognized padding type: expected 'VALID', 'SAME', or 'SAME_LOWER', got 'FULL'") == 0);
}

TEST_CASE("plan_conv rejects sizes, strides and dilations whose arithmetic overflows int64 (issue 14.9)") {
  constexpr std::int64_t huge = std::int64_t{1} << 62;
  const Shape input{1, 5, 2};
  const auto plan = [&](nn::ConvSpec spec) { return nn::plan_conv(input, spec); };
  const std::string kernel_error = test_support::error_of<ValueError>(
      [&] { plan({.features = 1, .kernel_size = {3}, .kernel_dilation = {huge}}); });
  CHECK(kernel_error == "Conv: a dilated size overflows int64 (2 * 4611686018427387904)");
  CHECK(test_support::error_of<ValueError>([&] {
          plan({.features = 1, .kernel_size = {2}, .padding = Padding(Pairs{{0, 0}}), .input_dilation = {huge}});
        }) == "Conv: a dilated size overflows int64 (4 * 4611686018427387904)");
  CHECK(test_support::error_of<ValueError>([&] {
          plan({.features = 1, .kernel_size = {3}, .padding = "CIRCULAR", .kernel_dilation = {huge}});
        }) == "Conv: the dilated kernel overflows int64 (2 * 4611686018427387904)");
  CHECK(test_support::error_of<ValueError>([&] {
          plan({.features = 1, .kernel_size = {3}, .padding = "CAUSAL", .kernel_dilation = {huge}});
        }) == "Conv: the causal padding overflows int64 (4611686018427387904 * 2)");
  // A ConvLocal kernel of 2^62 positions x 2 channels cannot be a tensor (nor, on an
  // empty batch, can the output, whose strides would overflow).
  CHECK(test_support::error_of<ShapeError>([&] {
          nn::plan_conv({1, huge, 2}, {.features = 1, .kernel_size = {1}, .shared_weights = false});
        }) == "ConvLocal kernel: shape [4611686018427387904, 2, 1] of 8-byte elements is too big for one allocation "
              "(over 9223372036854775807 bytes)");
  CHECK(test_support::error_of<ShapeError>([&] {
          nn::plan_conv({0, huge, 2}, {.features = 1, .kernel_size = {1}});
        }).find("Conv output: shape [0, 4611686018427387904, 1]") == 0);
  // SAME with a stride near the int64 limit: one output position, no padding (was an overflow).
  const auto far = plan({.features = 1, .kernel_size = {3}, .strides = {std::numeric_limits<std::int64_t>::max()}});
  CHECK(far.out_spatial == Shape{1});
  CHECK(far.lax_pads == PadPairs{{0, 0}});
}

TEST_CASE("pad: an empty result builds no tables, and a padded size past int64 is a typed error (issue 14.9)") {
  // Found by fuzz_conv_plan with its cap lifted: a CIRCULAR pre-pad of a huge dilated
  // kernel over an empty batch. The result has no element, so nothing may be allocated
  // per padded position.
  constexpr std::int64_t huge = std::int64_t{1} << 40;
  const Tensor empty_batch = zeros({0, 3, 2});
  for (PadMode mode : {PadMode::Constant, PadMode::Wrap, PadMode::Reflect, PadMode::Edge}) {
    const Tensor padded = pad(empty_batch, {{0, 0}, {huge, huge}, {0, 0}}, mode);
    CHECK(padded.shape() == Shape{0, 2 * huge + 3, 2});
  }
  // Its gradient, and a sum over the huge axis of an empty tensor, run no loop over it (a
  // fuzz_conv_plan timeout: the bias gradient of an empty output).
  Tensor x = empty_batch.detach().requires_grad_();
  pad(x, {{0, 0}, {huge, huge}, {0, 0}}, PadMode::Wrap).sum().backward();
  CHECK(x.grad().shape() == x.shape());
  CHECK(sum(zeros({std::int64_t{1} << 60, 0}), {0}).shape() == Shape{0});
  CHECK(test_support::error_of<ValueError>([] {
          pad(zeros({2}), {{std::numeric_limits<std::int64_t>::max(), 1}});
        }) == "pad: a padded axis overflows int64 (9223372036854775807 + 2)");
}

TEST_CASE("pads_nothing: 'VALID' in any case, or (0, 0) on every dim") {
  CHECK(pads_nothing("VALID", 2));
  CHECK(pads_nothing("valid", 2));
  CHECK(pads_nothing(0, 2));
  CHECK(pads_nothing(Padding{0, {0, 0}}, 2));
  CHECK_FALSE(pads_nothing("SAME", 2));
  CHECK_FALSE(pads_nothing("CIRCULAR", 2));
  CHECK_FALSE(pads_nothing(1, 2));
  CHECK_FALSE(pads_nothing(Padding{0, {0, 1}}, 2));
  CHECK_FALSE(pads_nothing(Padding{0, 0}, 3));  // two entries for three dims: refused, not "no padding"
}

TEST_CASE("Precision parses the strings lax.canonicalize_precision accepts") {
  CHECK(parse_precision("default") == Precision::Default);
  CHECK(parse_precision("bfloat16") == Precision::Default);
  CHECK(parse_precision("fastest") == Precision::Default);
  CHECK(parse_precision("high") == Precision::High);
  CHECK(parse_precision("bfloat16_3x") == Precision::High);
  CHECK(parse_precision("tensorfloat32") == Precision::High);
  CHECK(parse_precision("highest") == Precision::Highest);
  CHECK(parse_precision("float32") == Precision::Highest);
  CHECK(precision_name(Precision::Highest) == "highest");
  CHECK(test_support::error_of<ValueError>([] { parse_precision("HIGHEST"); }).find("unknown precision 'HIGHEST'") !=
        std::string::npos);
}

// The pre-padding of CIRCULAR / REFLECT / CAUSAL goes through pad (autograd/ops.hpp);
// these are the properties it relies on.
TEST_CASE("pad (as the conv pre-pad uses it): wrap and reflect repeat for pads larger than the axis") {
  Tensor x = from_vector({1, 2, 3}, {3}, DType::Float64);
  CHECK(pad(x, {{4, 5}}, PadMode::Wrap).to_vector() == std::vector<double>{3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2});
  CHECK(pad(x, {{4, 4}}, PadMode::Reflect).to_vector() ==
        std::vector<double>{1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3});
  CHECK(pad(from_vector({7}, {1}, DType::Float64), {{2, 3}}, PadMode::Reflect).to_vector() ==
        std::vector<double>(6, 7.0));
  CHECK(pad(x, {{2, 0}}).to_vector() == std::vector<double>{0, 0, 1, 2, 3});
  Tensor m = from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::Float64);
  CHECK(pad(m, {{0, 0}, {1, 1}}, PadMode::Wrap).to_vector() ==
        std::vector<double>{3, 1, 2, 3, 1, 6, 4, 5, 6, 4});
}

TEST_CASE("pad's gradient accumulates every copy of an element; second order through create_graph") {
  Tensor x = from_vector({1, 2, 3}, {3}, DType::Float64).requires_grad_();
  Tensor y = pad(x, {{4, 5}}, PadMode::Wrap);  // sources [2,0,1, 2,0,1, 2,0,1, 2,0,1]
  Tensor g = arange(0.0, 12.0, 1.0, DType::Float64);
  CHECK(grad({y}, {x}, {g})[0].to_vector() == std::vector<double>{1 + 4 + 7 + 10, 2 + 5 + 8 + 11, 0 + 3 + 6 + 9});
  for (PadMode mode : {PadMode::Constant, PadMode::Wrap, PadMode::Reflect}) {
    auto f = [mode](const std::vector<Tensor>& in) {
      Tensor p = pad(in[0], {{1, 2}, {3, 1}}, mode);
      return p * p;
    };
    Tensor a = random_normal(make_key(7), {2, 3}, DType::Float64);
    auto first = gradcheck(f, {a}, test_support::every_check);
    CHECK_MESSAGE(first.ok, first.to_string());
    auto second = gradgradcheck(f, {a});
    CHECK_MESSAGE(second.ok, second.to_string());
  }
}
