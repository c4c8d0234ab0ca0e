// The direct shared-weight conv kernels (core/kernels/conv_shared_fast.*) against the
// general path (patches + GEMM) run with Precision::Highest (float64 accumulation,
// rounded once), on random and edge-case shapes, with and without a bias, at 1 and
// 2 threads; and the dispatch: float32 conv_general_dilated and its gradients take
// the fast path.
#include <doctest/doctest.h>

#include "conv_fast_2d.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/kernels/conv/conv.hpp"
#include "core/kernels/conv/conv_shared_fast.hpp"
#include "core/threading.hpp"
#include "xgrad.hpp"
#include "test_support.hpp"

using namespace xgrad;
using test_support::Conv2dFastShape;

namespace {

Shape input_shape(const test_support::Conv2dFastShape& s) { return {s.batch, s.in_height, s.in_width, s.in_features}; }
Shape kernel_shape(const test_support::Conv2dFastShape& s) {
  return {s.kernel_height, s.kernel_width, s.in_features, s.features};
}
Shape output_shape(const test_support::Conv2dFastShape& s) { return {s.batch, s.out_height(), s.out_width(), s.features}; }

Padding padding_of(const test_support::Conv2dFastShape& s) {
  return {Padding::Entry(static_cast<int>(s.pad_top), static_cast<int>(s.pad_bottom)),
          Padding::Entry(static_cast<int>(s.pad_left), static_cast<int>(s.pad_right))};
}

kernels::ConvContraction general_highest(const test_support::Conv2dFastShape& s) {
  kernels::ConvContraction c;
  c.geometry = kernels::make_conv_geometry(input_shape(s), {s.kernel_height, s.kernel_width}, {1, 1}, padding_of(s),
                                           {}, {s.dilation_height, s.dilation_width}, "test");
  c.features = s.features;
  c.precision = Precision::Highest;
  return c;
}

// Worst |got − want| / scale, where scale = the same sum over |terms| bounds the rounding error.
double worst_error(const std::vector<float>& got, const Tensor& want, const Tensor& scale) {
  const auto w = want.to_vector(), sc = scale.to_vector();
  REQUIRE(got.size() == w.size());
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - w[i]) / (sc[i] + 1e-30));
  return worst;
}

struct Results {
  std::vector<float> y, d_x, d_kernel, d_bias;
};

// With a bias (F) the forward adds it and the kernel VJP also returns d_bias.
Results run_fast(const test_support::Conv2dFastShape& s, const Tensor& x, const Tensor& k, const Tensor& dy,
                 const Tensor& bias = Tensor()) {
  Results r{std::vector<float>(static_cast<std::size_t>(dy.numel()), NAN),
            std::vector<float>(static_cast<std::size_t>(x.numel()), NAN),
            std::vector<float>(static_cast<std::size_t>(k.numel()), NAN),
            std::vector<float>(static_cast<std::size_t>(s.features), NAN)};
  const bool biased = bias.defined();
  test_support::conv_shared2d_forward_fast(s, x.data<float>(), k.data<float>(), biased ? bias.data<float>() : nullptr,
                                      r.y.data());
  test_support::conv_shared2d_input_vjp_fast(s, dy.data<float>(), k.data<float>(), r.d_x.data());
  test_support::conv_shared2d_kernel_vjp_fast(s, x.data<float>(), dy.data<float>(), r.d_kernel.data(),
                                         biased ? r.d_bias.data() : nullptr);
  return r;
}

void check_against_general(const test_support::Conv2dFastShape& s, std::uint64_t seed) {
  REQUIRE(test_support::conv_shared2d_fast_supported(s));
  const Tensor x = random_normal(make_key(seed), input_shape(s));
  const Tensor k = random_normal(make_key(seed + 1), kernel_shape(s));
  const Tensor dy = random_normal(make_key(seed + 2), output_shape(s));
  const auto c = general_highest(s);
  const Tensor ax = abs(x), ak = abs(k), ady = abs(dy);
  const Tensor y = kernels::conv_forward(x, k, c), y_scale = kernels::conv_forward(ax, ak, c);
  const Tensor d_x = kernels::conv_input_vjp(dy, k, c), d_x_scale = kernels::conv_input_vjp(ady, ak, c);
  const Tensor d_k = kernels::conv_kernel_vjp(x, dy, c), d_k_scale = kernels::conv_kernel_vjp(ax, ady, c);
  const Tensor bias = random_normal(make_key(seed + 3), {s.features});
  const Tensor y_biased = add(y, bias), y_biased_scale = add(y_scale, abs(bias));
  const Tensor d_bias = sum(cast(dy, DType::Float64), {0, 1, 2}), d_bias_scale = sum(ady, {0, 1, 2});

  Results one_thread;
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    const test_support::ThreadCountGuard thread_count(threads);
    const Results r = run_fast(s, x, k, dy, bias), unbiased = run_fast(s, x, k, dy);
    CHECK(worst_error(r.y, y_biased, y_biased_scale) < 1e-5);
    CHECK(worst_error(unbiased.y, y, y_scale) < 1e-5);
    CHECK(worst_error(r.d_x, d_x, d_x_scale) < 1e-5);
    CHECK(worst_error(r.d_kernel, d_k, d_k_scale) < 1e-5);
    CHECK(worst_error(r.d_bias, d_bias, d_bias_scale) < 1e-5);
    CHECK(unbiased.d_kernel == r.d_kernel);
    if (threads == 1) {
      one_thread = r;
    } else {  // the same bits for any thread count
      CHECK(r.y == one_thread.y);
      CHECK(r.d_x == one_thread.d_x);
      CHECK(r.d_kernel == one_thread.d_kernel);
      CHECK(r.d_bias == one_thread.d_bias);
    }
  }
}

#define CAPTURE_SHAPE(s)                                                                                  \
  CAPTURE(s.batch);                                                                                       \
  CAPTURE(s.in_height);                                                                                   \
  CAPTURE(s.in_width);                                                                                    \
  CAPTURE(s.in_features);                                                                                 \
  CAPTURE(s.kernel_height);                                                                               \
  CAPTURE(s.kernel_width);                                                                                \
  CAPTURE(s.dilation_height);                                                                             \
  CAPTURE(s.dilation_width);                                                                              \
  CAPTURE(s.pad_top);                                                                                     \
  CAPTURE(s.pad_bottom);                                                                                  \
  CAPTURE(s.pad_left);                                                                                    \
  CAPTURE(s.pad_right);                                                                                   \
  CAPTURE(s.features)

bool fast_path_available() {
  const bool available = test_support::conv_shared2d_fast_supported({});
  if (!available) MESSAGE("this CPU has no AVX2/FMA: the shared conv fast kernels are not tested");
  return available;
}

}  // namespace

TEST_CASE("conv_shared2d fast kernels match the general path on edge cases") {
  if (!fast_path_available()) return;
  // {N, H, W, C, kh, kw, dh, dw, pad top, bottom, left, right, F}
  const test_support::Conv2dFastShape shapes[] = {
      {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 8},        // one of everything
      {3, 5, 7, 2, 1, 1, 1, 1, 0, 0, 0, 0, 16},       // 1×1 kernel
      {4, 6, 5, 3, 6, 5, 1, 1, 0, 0, 0, 0, 24},       // kernel = input size: one output position
      {2, 4, 4, 3, 6, 6, 1, 1, 1, 1, 1, 1, 8},        // kernel = padded input size, all of it padding-adjacent
      {2, 1, 1, 5, 3, 3, 1, 1, 1, 1, 1, 1, 16},       // 1×1 input, SAME-like padding: only the centre tap is data
      {9, 28, 28, 1, 3, 3, 1, 1, 0, 0, 0, 0, 16},     // cnn_b64's first conv (C = 1: 9-element patches)
      {9, 13, 13, 16, 3, 3, 1, 1, 0, 0, 0, 0, 32},    // cnn_b64's second conv
      {5, 28, 28, 1, 3, 3, 1, 1, 1, 1, 1, 1, 16},     // localnet_b64's SAME conv
      {5, 9, 10, 13, 3, 2, 2, 3, 2, 0, 1, 2, 40},     // odd C, both dilations (d_x runs of one tap), uneven pads
      {20, 7, 6, 4, 2, 2, 1, 1, 1, 0, 0, 1, 8},       // 20 samples: d_kernel blocks of 3 (one of 2)
      {3, 8, 20, 9, 2, 5, 1, 1, 0, 0, 0, 0, 8},       // runs of 45 (columns 40 + masked 5)
      {2, 6, 6, 24, 1, 3, 1, 2, 0, 0, 2, 2, 16},      // C a multiple of 8 with a dilated row
  };
  std::uint64_t seed = 10;
  for (const auto& s : shapes) {
    CAPTURE_SHAPE(s);
    check_against_general(s, seed);
    seed += 3;
  }
}

TEST_CASE("conv_shared2d fast kernels match the general path on random shapes") {
  if (!fast_path_available()) return;
  std::mt19937 rng(7);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int trial = 0; trial < 30; ++trial) {
    test_support::Conv2dFastShape s;
    s.batch = pick(1, 6);
    s.in_features = pick(1, 20);
    s.features = 8 * pick(1, 5);
    s.kernel_height = pick(1, 4);
    s.kernel_width = pick(1, 4);
    s.dilation_height = pick(1, 3);
    s.dilation_width = pick(1, 3);
    s.pad_top = pick(0, 2);
    s.pad_bottom = pick(0, 2);
    s.pad_left = pick(0, 2);
    s.pad_right = pick(0, 2);
    // At least one output position.
    s.in_height = std::max<std::int64_t>(pick(1, 12), (s.kernel_height - 1) * s.dilation_height + 1 - s.pad_top -
                                                          s.pad_bottom);
    s.in_width = std::max<std::int64_t>(pick(1, 12), (s.kernel_width - 1) * s.dilation_width + 1 - s.pad_left -
                                                         s.pad_right);
    s.in_height = std::max<std::int64_t>(s.in_height, 1);
    s.in_width = std::max<std::int64_t>(s.in_width, 1);
    CAPTURE(trial);
    CAPTURE_SHAPE(s);
    check_against_general(s, 100 + 3 * static_cast<std::uint64_t>(trial));
  }
}

TEST_CASE("conv_shared2d fast path declines what it does not handle") {
  if (!fast_path_available()) return;
  using test_support::conv_shared2d_fast_supported;
  CHECK(test_support::conv_shared2d_fast_supported({4, 6, 6, 2, 3, 3, 1, 1, 0, 0, 0, 0, 16}));
  CHECK(test_support::conv_shared2d_fast_supported({4, 6, 6, 2, 3, 3, 1, 1, 0, 0, 0, 0, 12}));         // F not a multiple of 8: masked tails
  CHECK_FALSE(test_support::conv_shared2d_fast_supported({4, 6, 6, 2, 7, 3, 1, 1, 0, 0, 0, 0, 16}));   // kernel taller than input
  CHECK(test_support::conv_shared2d_fast_supported({4, 6, 6, 2, 7, 3, 1, 1, 1, 0, 0, 0, 16}));         // ... but not than padded
  CHECK(test_support::conv_shared2d_fast_supported({4, 6, 6, 2, 3, 3, 1, 1, -1, 0, 0, 0, 16}));        // negative padding (crop)
  CHECK_FALSE(test_support::conv_shared2d_fast_supported({4, 6, 6, 2, 3, 3, 1, 1, -5, 0, 0, 0, 16}));  // cropped below the kernel
  CHECK_FALSE(test_support::conv_shared2d_fast_supported({0, 6, 6, 2, 3, 3, 1, 1, 0, 0, 0, 0, 16}));   // empty batch
  CHECK_FALSE(test_support::conv_shared2d_fast_supported({4, 6, 6, 2, 3, 3, 0, 1, 0, 0, 0, 0, 16}));   // dilation 0
}

TEST_CASE("float32 conv_general_dilated and its gradients run the shared fast kernels") {
  if (!fast_path_available()) return;
  // SAME padding with a dilated kernel: pads (2, 2) and (1, 1).
  const test_support::Conv2dFastShape s{3, 7, 6, 5, 3, 2, 2, 2, 2, 2, 1, 1, 16};
  const Tensor x0 = random_normal(make_key(1), input_shape(s));
  const Tensor k0 = random_normal(make_key(2), kernel_shape(s));
  const Tensor dy = random_normal(make_key(3), output_shape(s));
  Tensor x = x0.detach().requires_grad_(), k = k0.detach().requires_grad_();
  const Tensor y = conv_general_dilated(x, k, {1, 1}, "SAME", {}, {2, 2});
  REQUIRE(y.shape() == output_shape(s));
  (y * dy).sum().backward();
  const Results direct = run_fast(s, x0, k0, dy);
  CHECK(y.to_vector() == std::vector<double>(direct.y.begin(), direct.y.end()));
  CHECK(x.grad().to_vector() == std::vector<double>(direct.d_x.begin(), direct.d_x.end()));
  CHECK(k.grad().to_vector() == std::vector<double>(direct.d_kernel.begin(), direct.d_kernel.end()));
}

TEST_CASE("conv_general_dilated_bias is conv_general_dilated + bias as one op, gradients of every order included") {
  // float32 runs the fused kernels (bias in the forward, d_bias in the kernel-VJP pass);
  // conv + add is the composition they replace. SAME padding, F = 16.
  const Tensor x0 = random_normal(make_key(4), {4, 9, 8, 3});
  const Tensor k0 = random_normal(make_key(5), {3, 3, 3, 16});
  const Tensor b0 = random_normal(make_key(6), {16});
  const Tensor g = random_normal(make_key(7), {4, 9, 8, 16});
  for (bool create_graph : {false, true}) {
    CAPTURE(create_graph);
    std::vector<std::vector<Tensor>> runs;
    for (bool one_op : {true, false}) {
      Tensor x = x0.detach().requires_grad_(), k = k0.detach().requires_grad_(), b = b0.detach().requires_grad_();
      const Tensor y = one_op ? conv_general_dilated_bias(x, k, b, {1, 1}, "SAME")
                              : add(conv_general_dilated(x, k, {1, 1}, "SAME"), b);
      auto grads = grad({y}, {x, k, b}, {g}, {.create_graph = create_graph});
      std::vector<Tensor> results{y, grads[0], grads[1], grads[2]};
      // A second-order term: d/dx of Σ dk² (through the recorded backward).
      if (create_graph) results.push_back(grad({(grads[1] * grads[1]).sum()}, {x})[0]);
      runs.push_back(results);
    }
    for (std::size_t i = 0; i < runs[0].size(); ++i) {
      CAPTURE(i);
      const auto fused = runs[0][i].to_vector(), composed = runs[1][i].to_vector();
      REQUIRE(fused.size() == composed.size());
      double worst = 0, largest = 0;
      for (std::size_t e = 0; e < fused.size(); ++e) {
        worst = std::max(worst, std::abs(fused[e] - composed[e]));
        largest = std::max(largest, std::abs(composed[e]));
      }
      CHECK(worst <= 1e-5 * largest);
    }
  }
}

TEST_CASE("conv_general_dilated_bias checks the bias") {
  const Tensor x = random_normal(make_key(8), {2, 5, 5, 3}), k = random_normal(make_key(9), {3, 3, 3, 8});
  CHECK_THROWS_WITH_AS(conv_general_dilated_bias(x, k, zeros({4}), {1, 1}, "VALID"),
                       "conv_general_dilated: bias has shape [4] but must be [8] (the output features)", ShapeError);
  CHECK_THROWS_WITH_AS(conv_general_dilated_bias(x, k, zeros({8}, DType::Float64), {1, 1}, "VALID"),
                       "conv_general_dilated: bias [8] is float64 but lhs is float32; both must have the same dtype",
                       DTypeError);
}
