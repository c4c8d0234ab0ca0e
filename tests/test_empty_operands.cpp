// Empty tensors (a zero-size dim) through reshape, pad and convolutions: found by
// tests/fuzz/fuzz_conv_plan, where UBSan flagged memcpy and pointer offsets applied
// to an empty array's null data, and a pad of an empty tensor timed out. A conv over
// an empty operand is a sum of nothing.
#include <doctest/doctest.h>

#include <limits>

#include "core/kernels/conv/conv_local_fast.hpp"
#include "core/kernels/conv/conv_tiles.hpp"
#include "xgrad.hpp"

using namespace xgrad;

TEST_CASE("reshape of an empty tensor") {
  const Tensor x = zeros({0, 3}, DType::Float64);
  CHECK(reshape(x, {3, 0}).shape() == Shape{3, 0});
  CHECK(reshape(x, {0}).numel() == 0);
}

TEST_CASE("padding an empty tensor is instant, however large the pads") {
  // The output has no elements; the pad walk used to visit all 60003^2 outer positions.
  const Tensor x = zeros({1, 3, 3, 0});
  for (PadMode mode : {PadMode::Constant, PadMode::Wrap, PadMode::Reflect, PadMode::Edge}) {
    Tensor y = pad(x, {{0, 0}, {30000, 30000}, {30000, 30000}, {0, 0}}, mode);
    CHECK(y.shape() == Shape{1, 60003, 60003, 0});
  }
  Tensor g = zeros({1, 3, 3, 0}).requires_grad_();
  pad(g, {{0, 0}, {30000, 30000}, {30000, 30000}, {0, 0}}, PadMode::Wrap).sum().backward();
  CHECK(g.grad().shape() == g.shape());
}

TEST_CASE("conv and ConvLocal with an empty operand give zeros, or an empty output, and gradients") {
  for (bool shared : {true, false}) {
    CAPTURE(shared);
    // No input features: the output is the bias alone.
    nn::ConvSpec spec{.features = 2, .kernel_size = {3}, .padding = "SAME", .shared_weights = shared};
    auto plan = nn::plan_conv({1, 4, 0}, spec);
    Tensor x = zeros({1, 4, 0}).requires_grad_();
    Tensor kernel = zeros(plan.kernel_shape).requires_grad_();
    Tensor bias = full(plan.bias_shape, 0.5).requires_grad_();
    Tensor y = nn::conv_apply(plan, x, kernel, bias);
    CHECK(y.shape() == Shape{1, 4, 2});
    CHECK(y.to_vector() == std::vector<double>(8, 0.5));
    y.sum().backward();
    CHECK(bias.grad().to_vector() == std::vector<double>(static_cast<std::size_t>(bias.numel()), shared ? 4.0 : 1.0));

    // An empty output: the window is larger than the input ('VALID').
    spec.padding = "VALID";
    spec.kernel_size = {5};
    plan = nn::plan_conv({2, 3, 1}, spec);
    CHECK(plan.output_shape == Shape{2, 0, 2});
    Tensor x2 = ones({2, 3, 1}).requires_grad_();
    Tensor kernel2 = ones(plan.kernel_shape).requires_grad_();
    Tensor y2 = nn::conv_apply(plan, x2, kernel2);
    CHECK(y2.shape() == Shape{2, 0, 2});
    y2.sum().backward();
    CHECK(x2.grad().to_vector() == std::vector<double>(6, 0.0));
  }
}

TEST_CASE("ConvLocal over no input features with a window of any size: the bias gradient needs no patch table") {
  // Found by fuzz_conv_plan: kernel 9223184325296180479 with SAME padding over an input
  // of 0 features. The output is the bias; its gradient read no patch, but the
  // backward built the patch table first, sized out_positions × window (overflow).
  nn::ConvSpec spec{.features = 3, .kernel_size = {9223184325296180479}, .padding = "SAME", .shared_weights = false};
  const auto plan = nn::plan_conv({2, 0}, spec);
  Tensor x = zeros(plan.input_shape).requires_grad_();
  Tensor kernel = zeros(plan.kernel_shape).requires_grad_();
  Tensor bias = full(plan.bias_shape, 0.25).requires_grad_();
  Tensor y = nn::conv_apply(plan, x, kernel, bias);
  CHECK(y.shape() == plan.output_shape);
  CHECK(y.to_vector() == std::vector<double>(static_cast<std::size_t>(y.numel()), 0.25));
  y.sum().backward();
  CHECK(bias.grad().to_vector() == std::vector<double>(static_cast<std::size_t>(bias.numel()), 1.0));
  CHECK(x.grad().shape() == x.shape());
}

TEST_CASE("a stride of any size along an axis with one output position (fast ConvLocal path)") {
  // Found by fuzz_conv_plan: stride INT64_MAX with one output position along the axis;
  // the fast path computed stride × row stride (overflow) for a step it never takes.
  // The fast path (counted) must agree with the general path, values and gradients.
  nn::ConvSpec spec{.features = 2, .kernel_size = {2, 3}, .strides = {std::numeric_limits<std::int64_t>::max()},
                    .padding = 4, .kernel_dilation = {1, 3}, .shared_weights = false};
  const auto plan = nn::plan_conv({3, 2, 3, 3}, spec);
  CHECK(plan.output_shape == Shape{3, 1, 1, 2});
  const Tensor x = random_normal(make_key(5), plan.input_shape);
  const Tensor kernel = random_normal(make_key(6), plan.kernel_shape);
  const Tensor cotangent = random_normal(make_key(7), plan.output_shape);
  struct FastPathRestored {  // the test flips a process-wide switch
    bool before = kernels::conv_local_fast_enabled();
    ~FastPathRestored() { kernels::set_conv_local_fast_enabled(before); }
  } restore;
  std::vector<std::vector<double>> results;
  for (bool fast : {true, false}) {
    CAPTURE(fast);
    kernels::set_conv_local_fast_enabled(fast);
    const std::int64_t dispatched = kernels::conv_fast_dispatch_count();
    Tensor xg = x.detach().requires_grad_(), kg = kernel.detach().requires_grad_();
    Tensor y = nn::conv_apply(plan, xg, kg);
    (y * cotangent).sum().backward();
    CHECK((kernels::conv_fast_dispatch_count() > dispatched) == (fast && kernels::tiles::cpu_supported()));
    std::vector<double> all = y.to_vector();
    for (const Tensor& t : {xg.grad(), kg.grad()})
      for (double e : t.to_vector()) all.push_back(e);
    results.push_back(all);
  }
  REQUIRE(results[0].size() == results[1].size());
  for (std::size_t i = 0; i < results[0].size(); ++i) CHECK(results[0][i] == doctest::Approx(results[1][i]).epsilon(1e-5));
}
