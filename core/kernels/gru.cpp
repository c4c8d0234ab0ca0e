// See lstm.cpp for why: the activation loops vectorise only without trapping math.
#pragma GCC optimize("no-trapping-math")

#include "core/kernels/gru.hpp"

#include <algorithm>
#include <cstring>

#include "core/kernels/gemm.hpp"
#include "core/kernels/recurrent_math.hpp"
#include "core/tensor.hpp"

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

// float compiled for AVX-512, AVX2 and the baseline, picked at load time (as in lstm.cpp).
namespace gru_rows {

__attribute__((target_clones("avx512f", "avx2", "default"))) void forward_f32(const float* xp, const float* hp, const float* h,
                                                                   float* h_out, std::int64_t r0, std::int64_t r1,
                                                                   std::int64_t hidden) {
  forward_rows(xp, hp, h, h_out, r0, r1, hidden);
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void backward_f32(const float* xp, const float* hp, const float* h,
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

template <class T>
void gru_sequence_forward(const T* xp, const T* wh, const T* bhn, const T* h0, T* hs, T* hps, std::int64_t steps,
                          std::int64_t rows, std::int64_t hidden) {
  const std::int64_t h3 = 3 * hidden, plane = rows * hidden;
  for (std::int64_t t = 0; t < steps; ++t) {
    const T* h_prev = t == 0 ? h0 : hs + (t - 1) * plane;
    T* hp = hps + t * rows * h3;
    gemm<T>(false, false, rows, h3, hidden, h_prev, hidden, wh, h3, hp, h3);
    if (bhn)
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t j = 0; j < hidden; ++j) hp[r * h3 + 2 * hidden + j] += bhn[j];
    gru_step_forward(xp + t * rows * h3, hp, h_prev, hs + t * plane, rows, hidden);
  }
}

template <class T>
void gru_sequence_backward(const T* xp, const T* wh, const T* h0, const T* hs, const T* hps, const T* grad_hs,
                           T* dxp, T* dhps, T* dwh, T* dbhn, T* dh0, std::int64_t steps, std::int64_t rows,
                           std::int64_t hidden) {
  const std::int64_t h3 = 3 * hidden, plane = rows * hidden;
  // dh0 carries dL/dh_{t-1} from step t back to step t-1; gh is the total cotangent of h_t.
  Tensor gh_scratch = empty({rows, hidden}, dtype_v<T>);
  T* gh = gh_scratch.data<T>();
  std::fill(dh0, dh0 + plane, T(0));
  for (std::int64_t t = steps - 1; t >= 0; --t) {
    const T* g = grad_hs + t * plane;
    for (std::int64_t k = 0; k < plane; ++k) gh[k] = g[k] + dh0[k];
    const T* h_prev = t == 0 ? h0 : hs + (t - 1) * plane;
    T* dhp = dhps + t * rows * h3;
    gru_step_backward(xp + t * rows * h3, hps + t * rows * h3, h_prev, gh, dxp + t * rows * h3, dhp, dh0, rows,
                      hidden);  // dh0 = gh * z, the direct path
    gemm<T>(false, true, rows, hidden, h3, dhp, h3, wh, h3, dh0, hidden, /*accumulate=*/true);  // + dhp W_h^T
  }
  // dW_h = sum_t h_{t-1}^T dhp_t: h_0's step, then steps 1.. in one GEMM over the
  // contiguous states h_0..h_{T-2}.
  gemm<T>(true, false, hidden, h3, rows, h0, hidden, dhps, h3, dwh, h3);
  if (steps > 1)
    gemm<T>(true, false, hidden, h3, (steps - 1) * rows, hs, hidden, dhps + rows * h3, h3, dwh, h3, true);
  if (dbhn) {
    std::fill(dbhn, dbhn + hidden, T(0));
    for (std::int64_t r = 0; r < steps * rows; ++r)
      for (std::int64_t j = 0; j < hidden; ++j) dbhn[j] += dhps[r * h3 + 2 * hidden + j];
  }
}

template void gru_sequence_forward<float>(const float*, const float*, const float*, const float*, float*, float*,
                                          std::int64_t, std::int64_t, std::int64_t);
template void gru_sequence_forward<double>(const double*, const double*, const double*, const double*, double*,
                                           double*, std::int64_t, std::int64_t, std::int64_t);
template void gru_sequence_backward<float>(const float*, const float*, const float*, const float*, const float*,
                                           const float*, float*, float*, float*, float*, float*, std::int64_t,
                                           std::int64_t, std::int64_t);
template void gru_sequence_backward<double>(const double*, const double*, const double*, const double*, const double*,
                                            const double*, double*, double*, double*, double*, double*, std::int64_t,
                                            std::int64_t, std::int64_t);
template void gru_step_forward<float>(const float*, const float*, const float*, float*, std::int64_t, std::int64_t);
template void gru_step_forward<double>(const double*, const double*, const double*, double*, std::int64_t,
                                       std::int64_t);
template void gru_step_backward<float>(const float*, const float*, const float*, const float*, float*, float*, float*,
                                       std::int64_t, std::int64_t);
template void gru_step_backward<double>(const double*, const double*, const double*, const double*, double*, double*,
                                        double*, std::int64_t, std::int64_t);

}  // namespace xgrad::kernels
