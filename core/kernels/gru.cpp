// See lstm.cpp for why: the activation loops vectorise only without trapping math.
#pragma GCC optimize("no-trapping-math")

#include "core/kernels/gru.hpp"

#include "core/kernels/recurrent_math.hpp"

namespace xgrad::kernels {

using namespace recurrent_math;

namespace {

template <class T>
[[gnu::always_inline]] inline void forward_rows(const T* xp, const T* hp, const T* h, T* __restrict__ h_out,
                                                std::int64_t r0, std::int64_t r1, std::int64_t hidden) {
  const std::int64_t h3 = 3 * hidden;
  for (std::int64_t row = r0; row < r1; ++row) {
    const T *x = xp + row * h3, *p = hp + row * h3, *hr = h + row * hidden;
    T* out = h_out + row * hidden;
    for (std::int64_t j = 0; j < hidden; ++j) {
      const T r = sigmoid(x[j] + p[j]), z = sigmoid(x[hidden + j] + p[hidden + j]);
      const T n = tanh_kernel(x[2 * hidden + j] + r * p[2 * hidden + j]);
      out[j] = (T(1) - z) * n + z * hr[j];
    }
  }
}

template <class T>
[[gnu::always_inline]] inline void backward_rows(const T* xp, const T* hp, const T* h, const T* grad_h,
                                                 T* __restrict__ dxp, T* __restrict__ dhp, T* __restrict__ dh,
                                                 std::int64_t r0, std::int64_t r1, std::int64_t hidden) {
  const std::int64_t h3 = 3 * hidden;
  for (std::int64_t row = r0; row < r1; ++row) {
    const T *x = xp + row * h3, *p = hp + row * h3, *hr = h + row * hidden, *g = grad_h + row * hidden;
    T *dx = dxp + row * h3, *dp = dhp + row * h3, *dhr = dh + row * hidden;
    for (std::int64_t j = 0; j < hidden; ++j) {
      const T r = sigmoid(x[j] + p[j]), z = sigmoid(x[hidden + j] + p[hidden + j]);
      const T n = tanh_kernel(x[2 * hidden + j] + r * p[2 * hidden + j]);
      const T dn = g[j] * (T(1) - z) * (T(1) - n * n);  // through n's pre-activation
      const T dr = dn * p[2 * hidden + j] * r * (T(1) - r);
      const T dz = g[j] * (hr[j] - n) * z * (T(1) - z);
      dx[j] = dr;
      dx[hidden + j] = dz;
      dx[2 * hidden + j] = dn;
      dp[j] = dr;
      dp[hidden + j] = dz;
      dp[2 * hidden + j] = dn * r;
      dhr[j] = g[j] * z;
    }
  }
}

}  // namespace

// float compiled for AVX2 and the baseline, picked at load time (as in lstm.cpp).
namespace gru_rows {

__attribute__((target_clones("avx2", "default"))) void forward_f32(const float* xp, const float* hp, const float* h,
                                                                   float* h_out, std::int64_t r0, std::int64_t r1,
                                                                   std::int64_t hidden) {
  forward_rows(xp, hp, h, h_out, r0, r1, hidden);
}

__attribute__((target_clones("avx2", "default"))) void backward_f32(const float* xp, const float* hp, const float* h,
                                                                    const float* grad_h, float* dxp, float* dhp,
                                                                    float* dh, std::int64_t r0, std::int64_t r1,
                                                                    std::int64_t hidden) {
  backward_rows(xp, hp, h, grad_h, dxp, dhp, dh, r0, r1, hidden);
}

}  // namespace gru_rows

template <class T>
void gru_step_forward(const T* xp, const T* hp, const T* h, T* h_out, std::int64_t rows, std::int64_t hidden) {
  for_rows(rows, hidden, [&](std::int64_t r0, std::int64_t r1) {
    if constexpr (std::is_same_v<T, float>) gru_rows::forward_f32(xp, hp, h, h_out, r0, r1, hidden);
    else forward_rows(xp, hp, h, h_out, r0, r1, hidden);
  });
}

template <class T>
void gru_step_backward(const T* xp, const T* hp, const T* h, const T* grad_h, T* dxp, T* dhp, T* dh,
                       std::int64_t rows, std::int64_t hidden) {
  for_rows(rows, hidden, [&](std::int64_t r0, std::int64_t r1) {
    if constexpr (std::is_same_v<T, float>) gru_rows::backward_f32(xp, hp, h, grad_h, dxp, dhp, dh, r0, r1, hidden);
    else backward_rows(xp, hp, h, grad_h, dxp, dhp, dh, r0, r1, hidden);
  });
}

template void gru_step_forward<float>(const float*, const float*, const float*, float*, std::int64_t, std::int64_t);
template void gru_step_forward<double>(const double*, const double*, const double*, double*, std::int64_t,
                                       std::int64_t);
template void gru_step_backward<float>(const float*, const float*, const float*, const float*, float*, float*, float*,
                                       std::int64_t, std::int64_t);
template void gru_step_backward<double>(const double*, const double*, const double*, const double*, double*, double*,
                                        double*, std::int64_t, std::int64_t);

}  // namespace xgrad::kernels
