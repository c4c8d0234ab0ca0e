#include "core/kernels/lstm.hpp"

#include <cmath>
#include <cstring>

#include "core/kernels/gemm.hpp"
#include "core/tensor.hpp"
#include "core/threading.hpp"

namespace xgrad::kernels {

namespace {

template <class T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// Row chunks for the elementwise parts: each row is independent, so any split
// gives the same bits; small batches stay on the caller.
template <class F>
void for_rows(std::int64_t rows, std::int64_t hidden, F&& fn) {
  const std::int64_t work = rows * hidden;
  const std::int64_t chunks = work < 16384 ? 1 : num_threads();
  parallel_for_ranges(rows, chunks, fn);
}

// Activates the gates of rows [r0, r1) in place (z may alias gates) and updates the cell.
template <class T>
void step_rows(const T* z, const T* c, T* c_out, T* h_out, T* gates, std::int64_t r0, std::int64_t r1,
               std::int64_t hidden) {
  const std::int64_t h4 = 4 * hidden;
  for (std::int64_t r = r0; r < r1; ++r) {
    const T* zr = z + r * h4;
    T* gr = gates ? gates + r * h4 : nullptr;
    for (std::int64_t j = 0; j < hidden; ++j) {
      const T i = sigmoid(zr[j]), f = sigmoid(zr[hidden + j]), g = std::tanh(zr[2 * hidden + j]),
              o = sigmoid(zr[3 * hidden + j]);
      const T cn = f * c[r * hidden + j] + i * g;
      c_out[r * hidden + j] = cn;
      h_out[r * hidden + j] = o * std::tanh(cn);
      if (gr) {
        gr[j] = i;
        gr[hidden + j] = f;
        gr[2 * hidden + j] = g;
        gr[3 * hidden + j] = o;
      }
    }
  }
}

// The step VJP from activated gates, rows [r0, r1). grad_c / grad_h may be null;
// dc_carry / dh_carry (may be null) are added to them (the cotangents flowing back
// from the next step). dc may alias dc_carry: each element is read before written.
template <class T>
void step_backward_rows(const T* gates, const T* c, const T* c_new, const T* grad_c, const T* grad_h,
                        const T* dc_carry, const T* dh_carry, T* dz, T* dc, std::int64_t r0, std::int64_t r1,
                        std::int64_t hidden) {
  const std::int64_t h4 = 4 * hidden;
  for (std::int64_t r = r0; r < r1; ++r) {
    const T* gr = gates + r * h4;
    T* dzr = dz + r * h4;
    for (std::int64_t j = 0; j < hidden; ++j) {
      const std::int64_t k = r * hidden + j;
      const T i = gr[j], f = gr[hidden + j], g = gr[2 * hidden + j], o = gr[3 * hidden + j];
      T gc = grad_c ? grad_c[k] : T(0), gh = grad_h ? grad_h[k] : T(0);
      if (dc_carry) gc += dc_carry[k];
      if (dh_carry) gh += dh_carry[k];
      const T tc = std::tanh(c_new[k]);
      const T dct = gc + gh * o * (T(1) - tc * tc);  // dL/dc' through c' and through h' = o tanh(c')
      dzr[j] = dct * g * i * (T(1) - i);
      dzr[hidden + j] = dct * c[k] * f * (T(1) - f);
      dzr[2 * hidden + j] = dct * i * (T(1) - g * g);
      dzr[3 * hidden + j] = gh * tc * o * (T(1) - o);
      dc[k] = dct * f;
    }
  }
}

template <class T>
void activate(const T* z, T* gates, std::int64_t r0, std::int64_t r1, std::int64_t hidden) {
  const std::int64_t h4 = 4 * hidden;
  for (std::int64_t r = r0; r < r1; ++r)
    for (std::int64_t j = 0; j < h4; ++j) {
      const T v = z[r * h4 + j];
      gates[r * h4 + j] = (j >= 2 * hidden && j < 3 * hidden) ? std::tanh(v) : sigmoid(v);
    }
}

}  // namespace

template <class T>
void lstm_step_forward(const T* z, const T* c, T* c_out, T* h_out, T* gates, std::int64_t rows,
                       std::int64_t hidden) {
  for_rows(rows, hidden, [&](std::int64_t r0, std::int64_t r1) { step_rows(z, c, c_out, h_out, gates, r0, r1, hidden); });
}

template <class T>
void lstm_step_backward(const T* z, const T* c, const T* c_new, const T* grad_c, const T* grad_h, T* dz, T* dc,
                        std::int64_t rows, std::int64_t hidden) {
  // dz doubles as the activated gates' buffer: each row's gates are read before its dz is written.
  for_rows(rows, hidden, [&](std::int64_t r0, std::int64_t r1) {
    activate(z, dz, r0, r1, hidden);
    step_backward_rows(dz, c, c_new, grad_c, grad_h, static_cast<const T*>(nullptr),
                       static_cast<const T*>(nullptr), dz, dc, r0, r1, hidden);
  });
}

template <class T>
void lstm_sequence_forward(const T* xp, const T* wh, const T* bias, const T* c0, const T* h0, T* states, T* gates,
                           std::int64_t steps, std::int64_t rows, std::int64_t hidden) {
  const std::int64_t h4 = 4 * hidden, plane = rows * hidden;
  for (std::int64_t t = 0; t < steps; ++t) {
    T* z = gates + t * rows * h4;  // pre-activations, activated in place
    const T* x = xp + t * rows * h4;
    if (bias) {
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t j = 0; j < h4; ++j) z[r * h4 + j] = x[r * h4 + j] + bias[j];
    } else {
      std::memcpy(z, x, sizeof(T) * static_cast<std::size_t>(rows * h4));
    }
    const T* c_prev = t == 0 ? c0 : states + (t - 1) * 2 * plane;
    const T* h_prev = t == 0 ? h0 : states + (t - 1) * 2 * plane + plane;
    gemm<T>(false, false, rows, h4, hidden, h_prev, hidden, wh, h4, z, h4, /*accumulate=*/true);
    T* c_out = states + t * 2 * plane;
    lstm_step_forward(z, c_prev, c_out, c_out + plane, z, rows, hidden);
  }
}

template <class T>
void lstm_sequence_backward(const T* wh, const T* c0, const T* h0, const T* states, const T* gates,
                            const T* grad_states, T* dxp, T* dwh, T* dbias, T* dc0, T* dh0, std::int64_t steps,
                            std::int64_t rows, std::int64_t hidden) {
  const std::int64_t h4 = 4 * hidden, plane = rows * hidden;
  // dc0 / dh0 carry the cotangents flowing from step t+1 back into step t.
  std::fill(dc0, dc0 + plane, T(0));
  std::fill(dh0, dh0 + plane, T(0));
  for (std::int64_t t = steps - 1; t >= 0; --t) {
    const T* c_prev = t == 0 ? c0 : states + (t - 1) * 2 * plane;
    const T* c_new = states + t * 2 * plane;
    const T* g_c = grad_states + t * 2 * plane;
    T* dz = dxp + t * rows * h4;
    const T* gt = gates + t * rows * h4;
    for_rows(rows, hidden, [&](std::int64_t r0, std::int64_t r1) {
      step_backward_rows(gt, c_prev, c_new, g_c, g_c + plane, dc0, dh0, dz, dc0, r0, r1, hidden);
    });
    gemm<T>(false, true, rows, hidden, h4, dz, h4, wh, h4, dh0, hidden);  // dh_{t-1} = dz_t W_h^T
  }
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
