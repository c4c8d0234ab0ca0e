// The AVX2 and AVX-512 locally connected kernels against a naive float64 loop of the
// formula (docs/convlocal.md §5.4, §5.6), on shapes that exercise every tile size,
// column block, run layout and thread split.
#include <doctest/doctest.h>

#include "conv_fast_2d.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/kernels/conv/conv_local_fast.hpp"
#include "core/threading.hpp"
#include "test_support.hpp"

using test_support::Conv2dFastShape;

namespace {

struct Reference {
  std::vector<double> y, y_scale;              // y and Σ|terms| (its rounding scale)
  std::vector<double> d_x, d_x_scale, d_kernel, d_kernel_scale, d_bias, d_bias_scale;
};

Reference reference(const test_support::Conv2dFastShape& s, const std::vector<float>& x, const std::vector<float>& kernel,
                    const std::vector<float>& bias, const std::vector<float>& dy) {
  const std::int64_t oh = s.out_height(), ow = s.out_width(), P = s.patch_size(), F = s.features;
  const std::int64_t taps = s.kernel_height * s.kernel_width;
  Reference r;
  r.y.assign(static_cast<std::size_t>(s.batch * oh * ow * F), 0.0);
  r.y_scale = r.y;
  r.d_x.assign(x.size(), 0.0);
  r.d_x_scale = r.d_x;
  r.d_kernel.assign(kernel.size(), 0.0);
  r.d_kernel_scale = r.d_kernel;
  r.d_bias.assign(bias.size(), 0.0);
  r.d_bias_scale = r.d_bias;
  for (std::int64_t n = 0; n < s.batch; ++n)
    for (std::int64_t oy = 0; oy < oh; ++oy)
      for (std::int64_t ox = 0; ox < ow; ++ox) {
        const std::int64_t pos = oy * ow + ox, out = ((n * oh + oy) * ow + ox) * F;
        for (std::int64_t f = 0; f < F; ++f) {
          r.y[out + f] = bias[pos * F + f];
          r.y_scale[out + f] = std::abs(bias[pos * F + f]);
          r.d_bias[pos * F + f] += dy[out + f];
          r.d_bias_scale[pos * F + f] += std::abs(dy[out + f]);
        }
        for (std::int64_t i = 0; i < P; ++i) {
          const std::int64_t c = i / taps, ky = i % taps / s.kernel_width, kx = i % s.kernel_width;
          const std::int64_t xi =
              ((n * s.in_height + oy + ky * s.dilation_height) * s.in_width + ox + kx * s.dilation_width) *
                  s.in_features + c;
          for (std::int64_t f = 0; f < F; ++f) {
            const std::int64_t ki = (pos * P + i) * F + f;
            const double yk = double(x[xi]) * kernel[ki], gk = double(dy[out + f]) * kernel[ki],
                         xg = double(x[xi]) * dy[out + f];
            r.y[out + f] += yk;
            r.y_scale[out + f] += std::abs(yk);
            r.d_x[xi] += gk;
            r.d_x_scale[xi] += std::abs(gk);
            r.d_kernel[ki] += xg;
            r.d_kernel_scale[ki] += std::abs(xg);
          }
        }
      }
  return r;
}

std::vector<float> random_vector(std::size_t size, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(size);
  for (float& e : v) e = normal(rng);
  return v;
}

// Worst |got − want| / (scale + 1e-30), where scale = Σ|terms| bounds the rounding error.
double worst_error(const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& scale,
                   const std::vector<float>& offset = {}) {
  double worst = 0;
  for (std::size_t k = 0; k < got.size(); ++k) {
    const double base = offset.empty() ? 0.0 : offset[k];
    worst = std::max(worst, std::abs(got[k] - base - want[k]) / (scale[k] + 1e-30));
  }
  return worst;
}

void check_against_reference(const test_support::Conv2dFastShape& s, unsigned seed) {
  REQUIRE(test_support::conv_local2d_fast_supported(s));
  std::mt19937 rng(seed);
  const std::size_t out_size = static_cast<std::size_t>(s.batch * s.out_height() * s.out_width() * s.features);
  const std::size_t kernel_size = static_cast<std::size_t>(s.out_height() * s.out_width() * s.patch_size() * s.features);
  const auto x = random_vector(static_cast<std::size_t>(s.batch * s.in_height * s.in_width * s.in_features), rng);
  const auto kernel = random_vector(kernel_size, rng);
  const auto bias = random_vector(static_cast<std::size_t>(s.out_height() * s.out_width() * s.features), rng);
  const auto dy = random_vector(out_size, rng);
  const auto d_x_start = random_vector(x.size(), rng);  // d_x accumulates onto this
  const Reference want = reference(s, x, kernel, bias, dy);

  std::vector<float> y_one_thread, d_kernel_one_thread;
  for (int threads : {1, 2, 3}) {  // 3: more slots than cores
    CAPTURE(threads);
    const test_support::ThreadCountGuard thread_count(threads);
    std::vector<float> y(out_size, NAN), d_kernel(kernel_size, NAN), d_bias(bias.size(), NAN);
    std::vector<float> d_x = d_x_start;
    test_support::conv_local2d_forward_fast(s, x.data(), kernel.data(), bias.data(), y.data());
    test_support::conv_local2d_backward_fast(s, x.data(), kernel.data(), dy.data(), d_x.data(), d_kernel.data(),
                                               d_bias.data());
    CHECK(worst_error(y, want.y, want.y_scale) < 1e-5);
    CHECK(worst_error(d_x, want.d_x, want.d_x_scale, d_x_start) < 1e-5);
    CHECK(worst_error(d_kernel, want.d_kernel, want.d_kernel_scale) < 1e-5);
    CHECK(worst_error(d_bias, want.d_bias, want.d_bias_scale) < 1e-5);
    // y and d_kernel are per position: the same bits whatever the thread count.
    if (threads == 1) {
      y_one_thread = y;
      d_kernel_one_thread = d_kernel;
    }
    CHECK(y == y_one_thread);
    CHECK(d_kernel == d_kernel_one_thread);

    // Without bias the forward starts from zero; without d_x only parameter gradients.
    std::vector<float> y_unbiased(out_size, NAN), d_kernel_only(kernel_size, NAN);
    test_support::conv_local2d_forward_fast(s, x.data(), kernel.data(), nullptr, y_unbiased.data());
    test_support::conv_local2d_backward_fast(s, x.data(), nullptr, dy.data(), nullptr, d_kernel_only.data(),
                                               nullptr);
    double worst_unbiased = 0;
    for (std::size_t k = 0; k < out_size; ++k) {
      const double f = static_cast<double>(k % static_cast<std::size_t>(s.features));
      const std::size_t pos = k / static_cast<std::size_t>(s.features) %
                              static_cast<std::size_t>(s.out_height() * s.out_width());
      const double b = bias[pos * static_cast<std::size_t>(s.features) + static_cast<std::size_t>(f)];
      worst_unbiased = std::max(worst_unbiased, std::abs(y_unbiased[k] - (want.y[k] - b)) / want.y_scale[k]);
    }
    CHECK(worst_unbiased < 1e-5);
    CHECK(d_kernel_only == d_kernel);
    std::vector<float> d_x_only = d_x_start;
    test_support::conv_local2d_backward_fast(s, x.data(), kernel.data(), dy.data(), d_x_only.data(), nullptr,
                                               nullptr);
    CHECK(d_x_only == d_x);
  }
}

}  // namespace

TEST_CASE("conv_local2d fast kernels match the float64 formula") {
  // {N, Hp, Wp, C, kh, kw, dh, dw, F}
  const test_support::Conv2dFastShape shapes[] = {
      {.batch = 1, .in_height = 1, .in_width = 1, .in_features = 1, .kernel_height = 1, .kernel_width = 1, .dilation_height = 1, .dilation_width = 1, .features = 8},     // one position, one sample, 1×1 kernel
      {.batch = 3, .in_height = 5, .in_width = 7, .in_features = 1, .kernel_height = 1, .kernel_width = 1, .dilation_height = 1, .dilation_width = 1, .features = 8},     // 1×1 kernel, N below every tile height
      {.batch = 7, .in_height = 9, .in_width = 6, .in_features = 3, .kernel_height = 3, .kernel_width = 2, .dilation_height = 1, .dilation_width = 1, .features = 16},    // odd C (runs of 6 padded to 8)
      {.batch = 13, .in_height = 10, .in_width = 11, .in_features = 8, .kernel_height = 3, .kernel_width = 3, .dilation_height = 2, .dilation_width = 1, .features = 24},  // row dilation, F = 16 + 8 column blocks
      {.batch = 9, .in_height = 11, .in_width = 10, .in_features = 5, .kernel_height = 2, .kernel_width = 3, .dilation_height = 1, .dilation_width = 2, .features = 8},   // column dilation: one run per tap
      {.batch = 6, .in_height = 8, .in_width = 9, .in_features = 16, .kernel_height = 5, .kernel_width = 5, .dilation_height = 1, .dilation_width = 1, .features = 32},   // 5×5, C multiple of 8 (vector transpose path)
      {.batch = 17, .in_height = 12, .in_width = 9, .in_features = 12, .kernel_height = 4, .kernel_width = 4, .dilation_height = 1, .dilation_width = 1, .features = 16},  // C = 8 + 4 (vector and scalar transpose), even kernel
      {.batch = 64, .in_height = 8, .in_width = 7, .in_features = 1, .kernel_height = 3, .kernel_width = 3, .dilation_height = 1, .dilation_width = 1, .features = 16},   // the image layer's geometry, smaller
      {.batch = 20, .in_height = 13, .in_width = 8, .in_features = 16, .kernel_height = 3, .kernel_width = 3, .dilation_height = 2, .dilation_width = 2, .features = 40},  // both dilations; 9 output rows < 2 bands of 2·halo: one band
      {.batch = 5, .in_height = 14, .in_width = 6, .in_features = 8, .kernel_height = 3, .kernel_width = 3, .dilation_height = 1, .dilation_width = 1, .features = 8},    // 12 output rows: two d_x bands of 6 at 2 threads
      {.batch = 64, .in_height = 6, .in_width = 7, .in_features = 16, .kernel_height = 3, .kernel_width = 3, .dilation_height = 1, .dilation_width = 1, .features = 32},  // the hidden layer's geometry, smaller
  };
  // Both tile kinds where the CPU has AVX-512 (AVX-512 active, then forced AVX2).
  const bool has_avx512 = xgrad::kernels::conv_local_avx512_active();
  for (const bool avx512 : {true, false}) {
    if (avx512 && !has_avx512) continue;
    CAPTURE(avx512);
    xgrad::kernels::set_conv_local_avx512_allowed(avx512);
    CHECK(xgrad::kernels::conv_local_avx512_active() == avx512);
    unsigned seed = 1;
    for (const auto& s : shapes) {
      CAPTURE(s.batch);
      CAPTURE(s.in_height);
      CAPTURE(s.in_width);
      CAPTURE(s.in_features);
      CAPTURE(s.kernel_height);
      CAPTURE(s.kernel_width);
      CAPTURE(s.features);
      check_against_reference(s, seed++);
    }
  }
  xgrad::kernels::set_conv_local_avx512_allowed(has_avx512);
  if (!has_avx512) MESSAGE("this CPU has no AVX-512F: only the AVX2 tiles were checked");
}

TEST_CASE("conv_local2d fast path rejects what it does not handle") {
  using test_support::conv_local2d_fast_supported;
  CHECK(test_support::conv_local2d_fast_supported({.batch = 4, .in_height = 6, .in_width = 6, .in_features = 2, .kernel_height = 3, .kernel_width = 3, .dilation_height = 1, .dilation_width = 1, .features = 16}));
  CHECK(test_support::conv_local2d_fast_supported({.batch = 4, .in_height = 6, .in_width = 6, .in_features = 2, .kernel_height = 3, .kernel_width = 3, .dilation_height = 1, .dilation_width = 1, .features = 12}));  // F not a multiple of 8: masked tails
  CHECK_FALSE(test_support::conv_local2d_fast_supported({.batch = 4, .in_height = 6, .in_width = 6, .in_features = 2, .kernel_height = 7, .kernel_width = 3, .dilation_height = 1, .dilation_width = 1, .features = 16}));  // kernel taller than the input
  CHECK_FALSE(test_support::conv_local2d_fast_supported({.batch = 4, .in_height = 6, .in_width = 6, .in_features = 2, .kernel_height = 3, .kernel_width = 3, .dilation_height = 3, .dilation_width = 1, .features = 16}));  // dilated kernel taller
  CHECK_FALSE(test_support::conv_local2d_fast_supported({.batch = 0, .in_height = 6, .in_width = 6, .in_features = 2, .kernel_height = 3, .kernel_width = 3, .dilation_height = 1, .dilation_width = 1, .features = 16}));  // empty batch
  CHECK_FALSE(test_support::conv_local2d_fast_supported({.batch = 4, .in_height = 6, .in_width = 6, .in_features = 2, .kernel_height = 3, .kernel_width = 3, .dilation_height = 0, .dilation_width = 1, .features = 16}));  // dilation 0
}

TEST_CASE("set_num_threads clamps to at least one thread") {
  const int before = xgrad::num_threads();
  CHECK(before >= 1);
  {
    const test_support::ThreadCountGuard thread_count(0);  // checks num_threads() == 1
  }
  CHECK(xgrad::num_threads() == before);
}
