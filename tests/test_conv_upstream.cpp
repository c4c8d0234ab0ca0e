// The hard-coded expectations of the Flax and JAX test suites (docs/convlocal.md §6), the
// ConvLocal docstring's parameter shapes (docs/convlocal.md §4.2) and the upstream errors of
// docs/convlocal.md §2.4, raised by plan_conv before any computation.
#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

using V = std::vector<double>;

nn::ConvSpec local(std::int64_t features, Shape kernel_size, Padding padding = "SAME") {
  return {.features = features, .kernel_size = std::move(kernel_size), .padding = std::move(padding),
          .shared_weights = false};
}

// ConvLocal with kernel_init = ones and bias_init = `bias`, as the Flax tests build it.
Tensor run_constant(const Tensor& x, const nn::ConvSpec& spec, double bias, nn::ConvPlan* plan_out = nullptr) {
  const auto plan = nn::plan_conv(x.shape(), spec);
  if (plan_out) *plan_out = plan;
  return nn::conv_apply(plan, x, ones(plan.kernel_shape), full(plan.bias_shape, bias));
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

Tensor patches_1d(const Shape& filter, std::int64_t stride, const std::vector<std::int64_t>& rhs_dilation = {}) {
  Tensor lhs = from_vector({1, 2, 3, 4, 5}, {1, 5, 1});
  return conv_general_dilated_patches(lhs, filter, {stride}, stride == 2 ? "VALID" : "SAME", {}, rhs_dilation);
}

}  // namespace

TEST_CASE("§6.1-2 test_conv_local and test_single_input_conv_local: y = 3*2 + 1") {
  nn::ConvPlan plan;
  Tensor y = run_constant(ones({1, 8, 2}), local(4, {3}, "VALID"), 1.0, &plan);
  CHECK(plan.kernel_shape == Shape{6, 6, 4});
  CHECK(y.shape() == Shape{1, 6, 4});
  CHECK(y.to_vector() == V(24, 7.0));
  y = run_constant(ones({8, 2}), local(4, {3}, "VALID"), 1.0, &plan);
  CHECK(plan.kernel_shape == Shape{6, 6, 4});
  CHECK(y.shape() == Shape{6, 4});
  CHECK(y.to_vector() == V(24, 7.0));
}

TEST_CASE("§6.3 test_circular_conv_1d_constant (ConvLocal): y = kernel_size * in_features everywhere") {
  for (std::int64_t batch : {1, 3})
    for (std::int64_t features : {1, 2})
      for (std::int64_t k : {1, 2, 3, 9})
        for (std::int64_t c : {1, 3})
          for (std::int64_t size : {1, 8, 16}) {
            INFO("batch ", batch, " features ", features, " k ", k, " c ", c, " size ", size);
            nn::ConvPlan plan;
            Tensor y = run_constant(ones({batch, size, c}), local(features, {k}, "CIRCULAR"), 0.0, &plan);
            CHECK(plan.kernel_shape == Shape{size, c * k, features});
            CHECK(y.shape() == Shape{batch, size, features});
            CHECK(y.to_vector() == V(static_cast<std::size_t>(y.numel()), static_cast<double>(k * c)));
          }
}

TEST_CASE("§6.4 test_circular_conv_2d_constant (ConvLocal): y = k^2 * in_features everywhere") {
  for (std::int64_t batch : {1, 3})
    for (std::int64_t features : {1, 2, 10})
      for (std::int64_t k : {1, 2, 3, 9})
        for (std::int64_t c : {1, 5})
          for (std::int64_t width : {5, 10}) {
            INFO("batch ", batch, " features ", features, " k ", k, " c ", c, " width ", width);
            nn::ConvPlan plan;
            Tensor y = run_constant(ones({batch, 14, width, c}), local(features, {k, k}, "CIRCULAR"), 0.0, &plan);
            CHECK(plan.kernel_shape == Shape{14, width, c * k * k, features});
            CHECK(y.to_vector() == V(static_cast<std::size_t>(y.numel()), static_cast<double>(k * k * c)));
          }
}

TEST_CASE("§6.5 test_circular_conv_local_1d_custom: padded row [5,1,2,3,4,5,1], stride 3") {
  Tensor x = from_vector({1, 2, 3, 4, 5}, {1, 5, 1});
  nn::ConvSpec spec = local(1, {3}, "CIRCULAR");
  spec.strides = {3};
  const auto plan = nn::plan_conv(x.shape(), spec);
  CHECK(plan.prepad_pads == PadPairs{{1, 1}});
  Tensor kernel = from_vector({-1, 2, 3, 4, 5, 6}, {2, 3, 1});
  Tensor y = nn::conv_apply(plan, x, kernel, zeros(plan.bias_shape));
  CHECK(y.shape() == Shape{1, 2, 1});
  CHECK(y.to_vector() == V{3, 62});
}

TEST_CASE("§6.6 test_circular_conv_local_1d_dilation: k=3, dilation 3 pads (3, 3)") {
  Tensor x = from_vector({1, 2, 3, 4, 5}, {1, 5, 1});
  nn::ConvSpec spec = local(1, {3}, "CIRCULAR");
  spec.kernel_dilation = {3};
  const auto plan = nn::plan_conv(x.shape(), spec);
  CHECK(plan.prepad_pads == PadPairs{{3, 3}});
  Tensor kernel = from_vector({1, 2, 1, 3, 4, 5, -1, 1, 2, 2, 3, 4, -1, -2, -3}, {5, 3, 1});
  CHECK(nn::conv_apply(plan, x, kernel, zeros(plan.bias_shape)).to_vector() == V{9, 45, 0, 22, -21});
}

TEST_CASE("§6.7 test_circular_conv_local_2d_custom: row-major patch order") {
  Tensor x = from_vector({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 3, 3, 1});
  const auto plan = nn::plan_conv(x.shape(), local(1, {3, 3}, "CIRCULAR"));
  CHECK(plan.kernel_shape == Shape{3, 3, 9, 1});
  V kernel;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c)
      for (double v : V{0, 1, 0, 1, 2.0 + 3 * r + c, 1, 0, 1, 0}) kernel.push_back(v);
  Tensor y = nn::conv_apply(plan, x, from_vector(kernel, {3, 3, 9, 1}), zeros(plan.bias_shape));
  CHECK(y.to_vector() == V{2 * 1 + 7 + 2 + 4 + 3, 3 * 2 + 8 + 3 + 5 + 1, 4 * 3 + 9 + 1 + 6 + 2,
                           5 * 4 + 1 + 5 + 7 + 6, 6 * 5 + 2 + 6 + 8 + 4, 7 * 6 + 3 + 4 + 9 + 5,
                           8 * 7 + 4 + 8 + 1 + 9, 9 * 8 + 5 + 9 + 2 + 7, 10 * 9 + 6 + 7 + 3 + 8});
}

TEST_CASE("CIRCULAR and REFLECT pre-pads larger than the axis repeat periodically") {
  Tensor x = from_vector({1, 10}, {1, 2, 1});
  const auto reflect = nn::plan_conv(x.shape(), local(1, {9}, "REFLECT"));
  CHECK(reflect.prepad_pads == PadPairs{{4, 4}});
  // Reflection of [1, 10] has period 2: [1, 10, 1, 10, ...]; windows of 9 ones.
  CHECK(nn::conv_apply(reflect, x, ones(reflect.kernel_shape)).to_vector() == V{5 * 1 + 4 * 10, 5 * 10 + 4 * 1});
  const auto wrap = nn::plan_conv(ones({1, 3, 1}).shape(), local(1, {9}, "CIRCULAR"));
  // Wrap of [1, 2, 3] with lo = 4 starts at x[-4 mod 3] = 3: [3,1,2,3,1,2,3,1,2,3,1].
  Tensor y = nn::conv_apply(wrap, from_vector({1, 2, 3}, {1, 3, 1}), ones(wrap.kernel_shape));
  CHECK(y.to_vector() == V{3 + 1 + 2 + 3 + 1 + 2 + 3 + 1 + 2, 1 + 2 + 3 + 1 + 2 + 3 + 1 + 2 + 3,
                           2 + 3 + 1 + 2 + 3 + 1 + 2 + 3 + 1});
  // CAUSAL: output t sees inputs t*s - dilation*(k-1) ... t*s.
  nn::ConvSpec causal = local(1, {2}, "CAUSAL");
  causal.kernel_dilation = {2};
  causal.strides = {2};
  const auto plan = nn::plan_conv({1, 5, 1}, causal);
  CHECK(plan.prepad_pads == PadPairs{{2, 0}});
  CHECK(nn::conv_apply(plan, from_vector({1, 2, 3, 4, 5}, {1, 5, 1}), ones(plan.kernel_shape)).to_vector() ==
        V{0 + 1, 1 + 3, 3 + 5});
}

TEST_CASE("§6.8 test_int_kernel_equality: kernel_size {3} is Flax's int 3, a 1-d kernel") {
  const auto plan = nn::plan_conv({8, 3}, local(4, {3}));
  CHECK(plan.kernel_shape == Shape{8, 9, 4});
  CHECK(plan.batch_shape.empty());
  // On a 2-d input (H, W, C) a 1-d kernel convolves along W with batch H (docs/convlocal.md §2.1).
  const auto on_2d = nn::plan_conv({5, 8, 3}, local(4, {3}));
  CHECK(on_2d.batch_shape == Shape{5});
  CHECK(on_2d.kernel_shape == Shape{8, 9, 4});
}

TEST_CASE("§6.10 testConvGeneralDilatedPatchesOverlapping1D") {
  CHECK(patches_1d({2}, 2).to_vector() == V{1, 2, 3, 4});
  Tensor same = patches_1d({3}, 1);
  CHECK(same.shape() == Shape{1, 5, 3});
  CHECK(same.to_vector() == V{0, 1, 2, 1, 2, 3, 2, 3, 4, 3, 4, 5, 4, 5, 0});
  CHECK(patches_1d({3}, 1, {2}).to_vector() == V{0, 1, 3, 0, 2, 4, 1, 3, 5, 2, 4, 0, 3, 5, 0});
}

TEST_CASE("§6.11 testConvGeneralDilatedPatchesOverlapping2D, and channel-major patch order") {
  Tensor lhs = from_vector({1, 2, 3, 4, 5, 6}, {1, 2, 3, 1});
  Tensor p = conv_general_dilated_patches(lhs, {2, 2}, {1, 1}, "SAME");
  CHECK(p.shape() == Shape{1, 2, 3, 4});
  CHECK(p.to_vector() == V{1, 2, 4, 5, 2, 3, 5, 6, 3, 0, 6, 0, 4, 5, 0, 0, 5, 6, 0, 0, 6, 0, 0, 0});
  // Two channels: entry c*S + r, i.e. all window offsets of channel 0 first.
  Tensor two = from_vector({1, 10, 2, 20, 3, 30}, {1, 3, 2});
  CHECK(conv_general_dilated_patches(two, {2}, {1}, "VALID").to_vector() == V{1, 2, 10, 20, 2, 3, 20, 30});
}

TEST_CASE("testConvInvalidPadding: the lax ops want a string or (low, high) pairs") {
  Tensor lhs = ones({1, 4, 4, 1});
  const std::string msg = test_support::error_of<ValueError>([&] { conv_general_dilated_patches(lhs, {2, 2}, {1, 1}, {3, 3}); });
  CHECK(contains(msg, "padding argument"));
  CHECK(contains(msg, "got [3, 3]"));
}

TEST_CASE("§4.2 ConvLocal docstring parameter shapes") {
  auto plan = nn::plan_conv({1, 8, 3}, local(4, {3}, "VALID"));
  CHECK(plan.bias_shape == Shape{6, 4});
  CHECK(plan.kernel_shape == Shape{6, 9, 4});
  CHECK(plan.output_shape == Shape{1, 6, 4});

  nn::ConvSpec strided = local(4, {3, 3}, "CIRCULAR");
  strided.strides = {2};
  plan = nn::plan_conv({1, 8, 3}, strided);  // no batch dim: spatial (1, 8), C = 3
  CHECK(plan.batch_shape.empty());
  CHECK(plan.bias_shape == Shape{1, 4, 4});
  CHECK(plan.kernel_shape == Shape{1, 4, 27, 4});
  CHECK(plan.output_shape == Shape{1, 4, 4});

  // mask = jnp.tril(ones((6, 9, 4))): keeps kernel[o, i, f] with f <= i.
  V tril;
  for (int o = 0; o < 6; ++o)
    for (int i = 0; i < 9; ++i)
      for (int f = 0; f < 4; ++f) tril.push_back(f <= i ? 1.0 : 0.0);
  Tensor mask = from_vector(tril, {6, 9, 4});
  plan = nn::plan_conv({1, 8, 3}, local(4, {3}, "VALID"), mask.shape());
  Tensor kernel = ones(plan.kernel_shape).requires_grad_();
  Tensor y = nn::conv_apply(plan, ones({1, 8, 3}), kernel, zeros(plan.bias_shape), mask);
  // Output feature f sums the 9 - f unmasked patch entries (all ones).
  CHECK(y.to_vector()[0] == 9.0);
  CHECK(y.to_vector()[3] == 6.0);
  // The gradient with respect to the stored kernel is masked.
  CHECK(grad({y.sum()}, {kernel})[0].to_vector() == tril);
}

TEST_CASE("§2.4 errors are raised by plan_conv with the upstream wording and a hint") {
  using nn::plan_conv;
  std::string msg = test_support::error_of<ValueError>([] { plan_conv({1, 6, 6, 2}, local(2, {3, 3}, Padding{1, 2, 3})); });
  CHECK(contains(msg, "ConvLocal: Invalid padding format: [1, 2, 3]"));

  msg = test_support::error_of<ValueError>([] { plan_conv({1, 4, 4, 2}, local(2, {3, 3}, "CAUSAL")); });
  CHECK(contains(msg, "Causal padding is only implemented for 1D convolutions."));

  for (const char* p : {"SAME", "CIRCULAR", "VALID"}) {
    nn::ConvSpec s = local(2, {3}, p);
    s.input_dilation = {2};
    msg = test_support::error_of<ValueError>([&] { plan_conv({1, 5, 2}, s); });
    CHECK(contains(msg, "String padding is not implemented for transposed convolution"));
  }
  nn::ConvSpec dilated_pairs = local(2, {3}, Padding{{1, 1}});
  dilated_pairs.input_dilation = {2};
  CHECK(plan_conv({1, 5, 2}, dilated_pairs).out_spatial == Shape{9});

  msg = test_support::error_of<ValueError>([] { plan_conv({1, 5, 2}, local(2, {3}, "circular")); });
  CHECK(contains(msg, "Unrecognized padding type: expected 'VALID', 'SAME', or 'SAME_LOWER', got 'circular'"));
  CHECK(plan_conv({1, 5, 2}, local(2, {3}, "same")).lax_pads == PadPairs{{1, 1}});

  msg = test_support::error_of<ValueError>([] { plan_conv({1, 5, 2}, local(2, {3}, Padding{{-4, -3}})); });
  CHECK(contains(msg, "Negative padding is larger than the size of the corresponding dimension"));

  nn::ConvSpec bad_strides = local(2, {3, 3});
  bad_strides.strides = {1, 2, 3};
  msg = test_support::error_of<ValueError>([&] { plan_conv({1, 5, 5, 2}, bad_strides); });
  CHECK(contains(msg, "window_strides has 3 entries [1, 2, 3] but the convolution has 2 spatial dims"));

  nn::ConvSpec zero_dilation = local(2, {3});
  zero_dilation.kernel_dilation = {0};
  msg = test_support::error_of<ValueError>([&] { plan_conv({1, 5, 2}, zero_dilation); });
  CHECK(contains(msg, "All dilations must be positive"));

  msg = test_support::error_of<ValueError>([] { plan_conv({1, 8, 3}, local(4, {3}, "VALID"), Shape{3, 3, 4}); });
  CHECK(contains(msg, "Mask needs to have the same shape as weights. Shapes are: (3, 3, 4), (6, 9, 4)"));

  msg = test_support::error_of<ShapeError>([] { plan_conv({5, 3}, local(4, {3, 3})); });
  CHECK(contains(msg, "input of shape [5, 3] has rank 2, but kernel_size [3, 3] makes a 2-d convolution"));

  nn::ConvSpec groups = local(4, {3});
  groups.feature_group_count = 3;
  msg = test_support::error_of<ValueError>([&] { plan_conv({1, 5, 6}, groups); });
  CHECK(contains(msg, "feature_group_count 3 must divide both the input features 6 and features 4"));

  msg = test_support::error_of<ValueError>([] { plan_conv({1, 5, 6}, local(4, {})); });
  CHECK(contains(msg, "kernel_size is empty"));
}

TEST_CASE("conv_apply refuses tensors that do not match the plan") {
  const auto plan = nn::plan_conv({2, 8, 3}, local(4, {3}, "VALID"));
  std::string msg = test_support::error_of<ShapeError>([&] { nn::conv_apply(plan, ones({2, 9, 3}), ones(plan.kernel_shape)); });
  CHECK(contains(msg, "ConvLocal: input has shape [2, 9, 3] but the layer was planned for [2, 8, 3]"));
  msg = test_support::error_of<ShapeError>([&] { nn::conv_apply(plan, ones({2, 8, 3}), ones({6, 9, 5})); });
  CHECK(contains(msg, "kernel has shape [6, 9, 5] but must be [6, 9, 4]"));
  msg = test_support::error_of<ShapeError>([&] { nn::conv_apply(plan, ones({2, 8, 3}), ones(plan.kernel_shape), ones({4})); });
  CHECK(contains(msg, "bias has shape [4] but must be [6, 4]"));
}

TEST_CASE("the lax ops check dtypes and kernel shapes before computing") {
  Tensor x = ones({1, 5, 2});
  std::string msg = test_support::error_of<DTypeError>(
      [&] { conv_general_dilated_local(x, ones({3, 6, 4}, DType::Float64), {1}, "VALID", {3}); });
  CHECK(contains(msg, "lhs [1, 5, 2] is float32 but rhs [3, 6, 4] is float64"));
  msg = test_support::error_of<DTypeError>([&] { conv_general_dilated(ones({1, 5, 2}, DType::Int32), ones({3, 2, 4}), {1}, "SAME"); });
  CHECK(contains(msg, "lhs [1, 5, 2] has dtype int32; convolutions need a floating dtype"));
  msg = test_support::error_of<ShapeError>([&] { conv_general_dilated_local(x, ones({3, 5, 4}), {1}, "VALID", {3}); });
  CHECK(contains(msg, "rhs has shape [3, 5, 4] but an input of shape [1, 5, 2] needs a kernel of shape [3, 6, 4]"));
  msg = test_support::error_of<ValueError>([&] { conv_general_dilated(ones({1, 5, 3}), ones({3, 1, 4}), {1}, "SAME", {}, {}, 2); });
  CHECK(contains(msg, "feature_group_count 2 must divide the input feature dimension 3"));
}
