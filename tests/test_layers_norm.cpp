// LayerNorm, RMSNorm, GroupNorm and BatchNorm: formula values, statistics dtype,
// running statistics, and gradchecks with respect to inputs and parameters.
#include <cmath>

#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

// Non-trivial scale and bias, so their gradients are not checked only at 1 and 0.
void randomise(nn::Module& model, std::uint64_t seed) {
  for (auto& [name, t] : model.named_parameters()) t.copy_(random_normal(make_key(seed++), t.shape(), DType::Float64));
}

void check_close(const Tensor& a, const std::vector<double>& b, double eps = 1e-6) {
  const auto v = a.to_vector();
  REQUIRE(v.size() == b.size());
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(v[i] == doctest::Approx(b[i]).epsilon(eps));
}

}  // namespace

TEST_CASE("LayerNorm normalises the last axis with epsilon 1e-6, then scales and shifts") {
  nn::LayerNorm norm;
  Tensor x = from_vector({1, 2, 3, 4, 2, 2, 2, 2}, {2, 4});
  // Row 0: mean 2.5, variance 1.25. Row 1: constant, variance 0.
  const double r = 1.0 / std::sqrt(1.25 + 1e-6);
  check_close(norm(x), {-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r, 0, 0, 0, 0});
  CHECK(norm.state_dict().at("scale").shape() == Shape{4});
  norm.state_dict().at("scale").copy_(from_vector({1, 2, 3, 4}, {4}));
  norm.state_dict().at("bias").copy_(from_vector({0, 0, 0, 1}, {4}));
  check_close(norm(x), {-1.5 * r, -1.0 * r, 1.5 * r, 6 * r + 1, 0, 0, 0, 1});
  // Statistics in float32 for a bfloat16 input; the output promotes with the float32 params.
  CHECK(norm(x.astype(DType::BFloat16)).dtype() == DType::Float32);
  nn::LayerNorm exact({.use_fast_variance = false});
  check_close(exact(x), {-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r, 0, 0, 0, 0});
  nn::LayerNorm bare({.use_bias = false, .use_scale = false});
  bare.init(x);
  CHECK(bare.named_parameters().empty());
}

TEST_CASE("LayerNorm over several axes keeps parameters on the feature axes") {
  nn::LayerNorm norm({.param_dtype = DType::Float64, .reduction_axes = {1, 2}, .feature_axes = {-1}});
  Tensor x = random_normal(make_key(1), {2, 3, 4}, DType::Float64);
  Tensor y = norm(x);
  CHECK(norm.state_dict().at("scale").shape() == Shape{4});
  // Each example has mean 0 and variance ~1 over its 12 elements.
  const auto v = y.to_vector();
  for (int b = 0; b < 2; ++b) {
    double m = 0, s = 0;
    for (int i = 0; i < 12; ++i) m += v[static_cast<std::size_t>(b * 12 + i)];
    for (int i = 0; i < 12; ++i) s += v[static_cast<std::size_t>(b * 12 + i)] * v[static_cast<std::size_t>(b * 12 + i)];
    CHECK(m / 12 == doctest::Approx(0.0));
    CHECK(s / 12 == doctest::Approx(1.0).epsilon(1e-4));
  }
}

TEST_CASE("RMSNorm divides by the root mean square") {
  nn::RMSNorm norm;
  Tensor x = from_vector({3, 4}, {1, 2});
  const double rms = std::sqrt((9 + 16) / 2.0 + 1e-6);
  check_close(norm(x), {3 / rms, 4 / rms});
  CHECK(norm.state_dict().size() == 1);
}

TEST_CASE("GroupNorm normalises each example's channel groups over all non-batch axes") {
  nn::GroupNorm norm({.num_groups = 2, .param_dtype = DType::Float64});
  Tensor x = random_normal(make_key(2), {2, 3, 4}, DType::Float64);
  Tensor y = norm(x);
  CHECK(y.shape() == Shape{2, 3, 4});
  CHECK(norm.state_dict().at("scale").shape() == Shape{4});
  for (int b = 0; b < 2; ++b)
    for (int g = 0; g < 2; ++g) {
      double m = 0, sq = 0;
      for (int l = 0; l < 3; ++l)
        for (int c = 2 * g; c < 2 * g + 2; ++c) {
          m += x.at({b, l, c});
          sq += x.at({b, l, c}) * x.at({b, l, c});
        }
      m /= 6;
      const double var = sq / 6 - m * m;
      for (int l = 0; l < 3; ++l)
        for (int c = 2 * g; c < 2 * g + 2; ++c)
          CHECK(y.at({b, l, c}) == doctest::Approx((x.at({b, l, c}) - m) / std::sqrt(var + 1e-6)));
    }
  nn::GroupNorm by_size({.num_groups = std::nullopt, .group_size = 2, .param_dtype = DType::Float64});
  CHECK(by_size(x).to_vector() == y.to_vector());
  CHECK(by_size.describe() == "GroupNorm, group_size=2");
  CHECK_THROWS_WITH_AS(nn::GroupNorm({.group_size = 2}),
                       "Either `num_groups` or `group_size` should be specified. If `group_size` is to be specified, "
                       "pass `.num_groups = std::nullopt` to override the default `num_groups` value of 32.",
                       ValueError);
  nn::GroupNorm three({.num_groups = 3});
  CHECK_THROWS_WITH_AS(three(ones({2, 4})),
                       "GroupNorm, num_groups=3: Number of groups (3) does not divide the number of channels (4).",
                       ValueError);
}

TEST_CASE("BatchNorm: batch statistics and running averages in train, running statistics in eval") {
  nn::BatchNorm bn;
  Tensor x = from_vector({1, 10, 2, 20, 3, 30, 6, 40}, {4, 2});
  // Column means 3 and 25; biased variances (4 + 1 + 0 + 9) / 4 = 3.5 and (225 + 25 + 25 + 225) / 4 = 125.
  bn.init(x);
  CHECK(bn.named_buffers()[0].first == "mean");
  CHECK(bn.named_buffers()[0].second.to_vector() == std::vector<double>{0, 0});  // init does not update
  CHECK(bn.named_buffers()[1].second.to_vector() == std::vector<double>{1, 1});
  CHECK(bn.named_buffers()[1].second.dtype() == DType::Float32);
  Tensor y = bn(x);
  const double s0 = std::sqrt(3.5 + 1e-5), s1 = std::sqrt(125 + 1e-5);
  check_close(y, {-2 / s0, -15 / s1, -1 / s0, -5 / s1, 0, 5 / s1, 3 / s0, 15 / s1}, 1e-5);
  const nn::StateDict s = bn.state_dict();
  check_close(s.at("mean"), {0.01 * 3, 0.01 * 25});
  check_close(s.at("var"), {0.99 + 0.01 * 3.5, 0.99 + 0.01 * 125});
  bn(x);  // a second step compounds: ra = 0.99 ra + 0.01 batch
  check_close(s.at("mean"), {0.99 * 0.03 + 0.03, 0.99 * 0.25 + 0.25});

  bn.eval();
  const double m0 = s.at("mean").at({0}), v0 = s.at("var").at({0});
  Tensor z = bn(x);
  CHECK(z.at({0, 0}) == doctest::Approx((1 - m0) / std::sqrt(v0 + 1e-5)));
  check_close(s.at("mean"), {0.99 * 0.03 + 0.03, 0.99 * 0.25 + 0.25});  // eval does not update

  // use_running_average overrides the mode.
  nn::BatchNorm fixed({.use_running_average = true});
  check_close(fixed(x), {1 / std::sqrt(1 + 1e-5), 10 / std::sqrt(1 + 1e-5), 2 / std::sqrt(1 + 1e-5),
                         20 / std::sqrt(1 + 1e-5), 3 / std::sqrt(1 + 1e-5), 30 / std::sqrt(1 + 1e-5),
                         6 / std::sqrt(1 + 1e-5), 40 / std::sqrt(1 + 1e-5)});

  // NHWC maps: statistics per channel over batch and space.
  nn::BatchNorm maps;
  Tensor image = random_normal(make_key(3), {2, 3, 3, 4});
  maps(image);
  CHECK(maps.state_dict().at("mean").shape() == Shape{4});
}

TEST_CASE("normalization gradients with respect to input, scale and bias") {
  Tensor x = random_normal(make_key(4), {3, 2, 4}, DType::Float64);
  nn::LayerNorm fast({.param_dtype = DType::Float64});
  fast.init(x);
  randomise(fast, 10);
  test_support::check_module_gradients(fast, x, {"scale", "bias"});
  nn::LayerNorm exact({.param_dtype = DType::Float64, .reduction_axes = {1, 2}, .use_fast_variance = false});
  exact.init(x);
  randomise(exact, 20);
  test_support::check_module_gradients(exact, x, {"scale", "bias"});
  nn::RMSNorm rms({.param_dtype = DType::Float64});
  rms.init(x);
  randomise(rms, 30);
  test_support::check_module_gradients(rms, x, {"scale"});
  nn::GroupNorm group({.num_groups = 2, .param_dtype = DType::Float64});
  group.init(x);
  randomise(group, 40);
  test_support::check_module_gradients(group, x, {"scale", "bias"});
  nn::BatchNorm batch({.param_dtype = DType::Float64});
  batch.init(x);
  randomise(batch, 50);
  test_support::check_module_gradients(batch, x, {"scale", "bias"});
  batch.eval();
  test_support::check_module_gradients(batch, x, {"scale", "bias"});
}
