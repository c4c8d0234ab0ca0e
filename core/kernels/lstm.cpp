// The clamps in exp_kernel are compares that may raise FP exceptions, which GCC
// will not if-convert under its default -ftrapping-math, and so would not
// vectorise the activation loops. xgrad never reads the FP exception flags.
#pragma GCC optimize("no-trapping-math")

#include "core/kernels/lstm.hpp"

#include <cstring>
#include <type_traits>
#include <vector>

#include "core/kernels/gemm.hpp"
#include "core/kernels/packed_gemm.hpp"
#include "core/kernels/recurrent_math.hpp"
#include "core/tensor.hpp"
#include "core/threading.hpp"

namespace xgrad::kernels {

namespace {

using namespace recurrent_math;

// Activates the gates of rows [r0, r1) (z may alias gates; gates may be null) and
// updates the cell. Loops over contiguous blocks, so they vectorise.
template <class T>
[[gnu::always_inline]] inline void step_rows(const T* z, const T* c, T* c_out, T* h_out, T* gates, std::int64_t r0, std::int64_t r1,
               std::int64_t hidden) {
  const std::int64_t h4 = 4 * hidden;
  std::vector<T> scratch(gates ? 0 : static_cast<std::size_t>(h4));
  for (std::int64_t r = r0; r < r1; ++r) {
    const T* zr = z + r * h4;
    T* a = gates ? gates + r * h4 : scratch.data();
    for (std::int64_t j = 0; j < 2 * hidden; ++j) a[j] = sigmoid(zr[j]);                  // i, f
    for (std::int64_t j = 2 * hidden; j < 3 * hidden; ++j) a[j] = tanh_kernel(zr[j]);     // g
    for (std::int64_t j = 3 * hidden; j < h4; ++j) a[j] = sigmoid(zr[j]);                 // o
    const T *i = a, *f = a + hidden, *g = a + 2 * hidden, *o = a + 3 * hidden, *cr = c + r * hidden;
    T *cn = c_out + r * hidden, *hn = h_out + r * hidden;
    for (std::int64_t j = 0; j < hidden; ++j) cn[j] = f[j] * cr[j] + i[j] * g[j];
    for (std::int64_t j = 0; j < hidden; ++j) hn[j] = o[j] * tanh_kernel(cn[j]);
  }
}

// The step VJP from activated gates, rows [r0, r1). With `Carry`, dc_carry and
// dh_carry (the cotangents flowing back from the next step) are added to grad_c and
// grad_h. No output aliases an input, so the loops vectorise.
template <bool Carry, class T>
[[gnu::always_inline]] inline void step_backward_rows(const T* gates, const T* c, const T* c_new, const T* grad_c, const T* grad_h,
                        const T* dc_carry, const T* dh_carry, T* __restrict__ dz, T* __restrict__ dc,
                        std::int64_t r0, std::int64_t r1, std::int64_t hidden) {
  const std::int64_t h4 = 4 * hidden;
  for (std::int64_t r = r0; r < r1; ++r) {
    const std::int64_t off = r * hidden;
    const T *i = gates + r * h4, *f = i + hidden, *g = i + 2 * hidden, *o = i + 3 * hidden;
    T *dzi = dz + r * h4, *dzf = dzi + hidden, *dzg = dzi + 2 * hidden, *dzo = dzi + 3 * hidden;
    for (std::int64_t j = 0; j < hidden; ++j) {
      const std::int64_t k = off + j;
      const T gc = Carry ? grad_c[k] + dc_carry[k] : grad_c[k];
      const T gh = Carry ? grad_h[k] + dh_carry[k] : grad_h[k];
      const T tc = tanh_kernel(c_new[k]);
      const T dct = gc + gh * o[j] * (T(1) - tc * tc);  // dL/dc' through c' and through h' = o tanh(c')
      dzi[j] = dct * g[j] * i[j] * (T(1) - i[j]);
      dzf[j] = dct * c[k] * f[j] * (T(1) - f[j]);
      dzg[j] = dct * i[j] * (T(1) - g[j] * g[j]);
      dzo[j] = gh * tc * o[j] * (T(1) - o[j]);
      dc[k] = dct * f[j];
    }
  }
}

template <class T>
void activate(const T* z, T* gates, std::int64_t r0, std::int64_t r1, std::int64_t hidden) {
  const std::int64_t h4 = 4 * hidden;
  for (std::int64_t r = r0; r < r1; ++r)
    for (std::int64_t j = 0; j < h4; ++j) {
      const T v = z[r * h4 + j];
      gates[r * h4 + j] = (j >= 2 * hidden && j < 3 * hidden) ? tanh_kernel(v) : sigmoid(v);
    }
}

}  // namespace

// The float rows compiled three times, for AVX-512 (16 lanes: the activations took
// 13 % of an LSTM training step with 8), AVX2 and the baseline, the one for this CPU
// picked at load time (GCC function multiversioning; the helpers above are always
// inlined into each clone). double keeps one baseline version.
namespace lstm_rows {

__attribute__((target_clones("avx512f", "avx2", "default"))) void forward_f32(
    const float* z, const float* c, float* c_out, float* h_out, float* gates, std::int64_t r0, std::int64_t r1,
    std::int64_t hidden) {
  step_rows(z, c, c_out, h_out, gates, r0, r1, hidden);
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void backward_f32(
    bool carry, const float* gates, const float* c, const float* c_new, const float* grad_c, const float* grad_h,
    const float* dc_carry, const float* dh_carry, float* dz, float* dc, std::int64_t r0, std::int64_t r1,
    std::int64_t hidden) {
  if (carry) step_backward_rows<true>(gates, c, c_new, grad_c, grad_h, dc_carry, dh_carry, dz, dc, r0, r1, hidden);
  else step_backward_rows<false>(gates, c, c_new, grad_c, grad_h, dc_carry, dh_carry, dz, dc, r0, r1, hidden);
}

template <class T>
void forward(const T* z, const T* c, T* c_out, T* h_out, T* gates, std::int64_t r0, std::int64_t r1,
             std::int64_t hidden) {
  if constexpr (std::is_same_v<T, float>) forward_f32(z, c, c_out, h_out, gates, r0, r1, hidden);
  else step_rows(z, c, c_out, h_out, gates, r0, r1, hidden);
}

template <bool Carry, class T>
void backward(const T* gates, const T* c, const T* c_new, const T* grad_c, const T* grad_h, const T* dc_carry,
              const T* dh_carry, T* dz, T* dc, std::int64_t r0, std::int64_t r1, std::int64_t hidden) {
  if constexpr (std::is_same_v<T, float>)
    backward_f32(Carry, gates, c, c_new, grad_c, grad_h, dc_carry, dh_carry, dz, dc, r0, r1, hidden);
  else step_backward_rows<Carry>(gates, c, c_new, grad_c, grad_h, dc_carry, dh_carry, dz, dc, r0, r1, hidden);
}

}  // namespace lstm_rows

template <class T>
void lstm_step_forward(const T* z, const T* c, T* c_out, T* h_out, T* gates, std::int64_t rows,
                       std::int64_t hidden) {
  for_rows(rows, hidden, [&](std::int64_t r0, std::int64_t r1) {
    lstm_rows::forward(z, c, c_out, h_out, gates, r0, r1, hidden);
  });
}

template <class T>
void lstm_step_backward(const T* z, const T* c, const T* c_new, const T* grad_c, const T* grad_h, T* dz, T* dc,
                        std::int64_t rows, std::int64_t hidden) {
  std::vector<T> gates(static_cast<std::size_t>(rows * 4 * hidden));
  for_rows(rows, hidden, [&](std::int64_t r0, std::int64_t r1) {
    activate(z, gates.data(), r0, r1, hidden);
    lstm_rows::backward<false>(gates.data(), c, c_new, grad_c, grad_h, static_cast<const T*>(nullptr),
                              static_cast<const T*>(nullptr), dz, dc, r0, r1, hidden);
  });
}

namespace {

// The recurrent products of one sequence, h W_h forward and dz W_h^T backward. float
// on an AVX-512 CPU packs W_h once for all steps (packed_gemm.hpp); otherwise each
// product is a kernels::gemm.
template <class T>
class RecurrentProduct {
 public:
  // op(W_h) = W_h [hidden, 4H] (forward) or W_h^T [4H, hidden] (backward).
  RecurrentProduct(const T* wh, std::int64_t hidden, bool transposed)
      : wh_(wh), hidden_(hidden), transposed_(transposed) {
    if constexpr (std::is_same_v<T, float>) {
      if (packed_gemm_available()) {
        const std::int64_t k = transposed ? 4 * hidden : hidden, n = transposed ? hidden : 4 * hidden;
        packed_ = empty({packed_b_size(k, n)}, DType::Float32);
        pack_b(transposed, k, n, wh, 4 * hidden, packed_.data<float>());
      }
    }
  }
  // out [rows, n] = in [rows, k] times op(W_h).
  void operator()(std::int64_t rows, const T* in, T* out) const {
    const std::int64_t k = transposed_ ? 4 * hidden_ : hidden_, n = transposed_ ? hidden_ : 4 * hidden_;
    if constexpr (std::is_same_v<T, float>) {
      if (packed_.defined()) return gemm_packed(rows, n, k, in, k, packed_.data<float>(), out, n, false);
    }
    gemm<T>(false, transposed_, rows, n, k, in, k, wh_, 4 * hidden_, out, n);
  }
  // The forward pre-activations z [rows, 4H] = (x + bias) + in times W_h (bias may be null).
  void pre_activations(std::int64_t rows, const T* in, const T* x, const T* bias, T* z) const {
    const std::int64_t h4 = 4 * hidden_;
    if constexpr (std::is_same_v<T, float>) {
      if (packed_.defined()) return gemm_packed(rows, h4, hidden_, in, hidden_, packed_.data<float>(), z, h4, false, x, h4, bias);
    }
    if (bias) {
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t j = 0; j < h4; ++j) z[r * h4 + j] = x[r * h4 + j] + bias[j];
    } else {
      std::memcpy(z, x, sizeof(T) * static_cast<std::size_t>(rows * h4));
    }
    gemm<T>(false, false, rows, h4, hidden_, in, hidden_, wh_, h4, z, h4, /*accumulate=*/true);
  }

 private:
  const T* wh_;
  std::int64_t hidden_;
  bool transposed_;
  Tensor packed_;
};

}  // namespace

template <class T>
void lstm_sequence_forward(const T* xp, const T* wh, const T* bias, const T* c0, const T* h0, T* states, T* gates,
                           std::int64_t steps, std::int64_t rows, std::int64_t hidden) {
  const std::int64_t h4 = 4 * hidden, plane = rows * hidden;
  const RecurrentProduct<T> recurrent(wh, hidden, false);
  for (std::int64_t t = 0; t < steps; ++t) {
    T* z = gates + t * rows * h4;  // pre-activations, activated in place
    const T* c_prev = t == 0 ? c0 : states + (t - 1) * 2 * plane;
    const T* h_prev = t == 0 ? h0 : states + (t - 1) * 2 * plane + plane;
    recurrent.pre_activations(rows, h_prev, xp + t * rows * h4, bias, z);
    T* c_out = states + t * 2 * plane;
    lstm_step_forward(z, c_prev, c_out, c_out + plane, z, rows, hidden);
  }
}

template <class T>
void lstm_sequence_backward(const T* wh, const T* c0, const T* h0, const T* states, const T* gates,
                            const T* grad_states, T* dxp, T* dwh, T* dbias, T* dc0, T* dh0, std::int64_t steps,
                            std::int64_t rows, std::int64_t hidden) {
  const std::int64_t h4 = 4 * hidden, plane = rows * hidden;
  // The cotangents flowing from step t+1 back into step t: dh in dh0, dc in two
  // buffers used in turn (a step reads one and writes the other), ending in dc0.
  Tensor dc_scratch = empty({rows, hidden}, dtype_v<T>);
  T* dc_in = dc0;
  T* dc_out = dc_scratch.data<T>();
  std::fill(dc0, dc0 + plane, T(0));
  std::fill(dh0, dh0 + plane, T(0));
  const RecurrentProduct<T> recurrent_t(wh, hidden, true);
  for (std::int64_t t = steps - 1; t >= 0; --t) {
    const T* c_prev = t == 0 ? c0 : states + (t - 1) * 2 * plane;
    const T* c_new = states + t * 2 * plane;
    const T* g_c = grad_states + t * 2 * plane;
    T* dz = dxp + t * rows * h4;
    const T* gt = gates + t * rows * h4;
    for_rows(rows, hidden, [&](std::int64_t r0, std::int64_t r1) {
      lstm_rows::backward<true>(gt, c_prev, c_new, g_c, g_c + plane, dc_in, dh0, dz, dc_out, r0, r1, hidden);
    });
    std::swap(dc_in, dc_out);
    recurrent_t(rows, dz, dh0);  // dh_{t-1} = dz_t W_h^T
  }
  if (dc_in != dc0) std::memcpy(dc0, dc_in, sizeof(T) * static_cast<std::size_t>(plane));
  // dW_h = sum_t h_{t-1}^T dz_t: the previous hidden states gathered into one
  // [steps * rows, H] matrix make it a single GEMM.
  Tensor h_prev_all = empty({steps * rows, hidden}, dtype_v<T>);
  T* hp = h_prev_all.data<T>();
  for (std::int64_t t = 0; t < steps; ++t) {
    const T* src = t == 0 ? h0 : states + (t - 1) * 2 * plane + plane;
    std::memcpy(hp + t * plane, src, sizeof(T) * static_cast<std::size_t>(plane));
  }
  gemm<T>(true, false, hidden, h4, steps * rows, hp, hidden, dxp, h4, dwh, h4);
  if (dbias) {
    // Column sums in a fixed order per column, whatever the thread count.
    const std::int64_t n = steps * rows;
    parallel_for_ranges(h4, h4 * n < 65536 ? 1 : num_threads(), [&](std::int64_t j0, std::int64_t j1) {
      for (std::int64_t j = j0; j < j1; ++j) dbias[j] = T(0);
      for (std::int64_t r = 0; r < n; ++r)
        for (std::int64_t j = j0; j < j1; ++j) dbias[j] += dxp[r * h4 + j];
    });
  }
}

#define XGRAD_LSTM_INSTANTIATE(T)                                                                                   \
  template void lstm_step_forward<T>(const T*, const T*, T*, T*, T*, std::int64_t, std::int64_t);                 \
  template void lstm_step_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, std::int64_t,      \
                                      std::int64_t);                                                              \
  template void lstm_sequence_forward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, std::int64_t,  \
                                         std::int64_t, std::int64_t);                                             \
  template void lstm_sequence_backward<T>(const T*, const T*, const T*, const T*, const T*, const T*, T*, T*, T*, \
                                          T*, T*, std::int64_t, std::int64_t, std::int64_t);
XGRAD_LSTM_INSTANTIATE(float)
XGRAD_LSTM_INSTANTIATE(double)
#undef XGRAD_LSTM_INSTANTIATE

}  // namespace xgrad::kernels
