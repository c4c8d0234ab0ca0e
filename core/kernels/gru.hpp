// GRU step kernels on raw row-major buffers (float or double), tape-free.
//
// Gate layout as PyTorch's and Flax's GRU: rows of 3H values [r | z | n].
//   xp = x W_i + b_i  (input side, with the r, z and n biases)
//   hp = h W_h + [0 | 0 | b_hn]  (recurrent side, only n has a bias)
//   r = sigmoid(xp_r + hp_r), z = sigmoid(xp_z + hp_z), n = tanh(xp_n + r * hp_n)
//   h' = (1 - z) * n + z * h
#pragma once

#include <cstdint>

namespace xgrad::kernels {

// xp, hp [rows, 3H], h [rows, H] -> h_out [rows, H].
template <class T>
void gru_step_forward(const T* xp, const T* hp, const T* h, T* h_out, std::int64_t rows, std::int64_t hidden);

// The VJP from the cotangent of h': dxp, dhp [rows, 3H] and dh [rows, H].
template <class T>
void gru_step_backward(const T* xp, const T* hp, const T* h, const T* grad_h, T* dxp, T* dhp, T* dh,
                       std::int64_t rows, std::int64_t hidden);

// A whole sequence, time-major: xp [steps, rows, 3H] the input projections x_t W_i + b_i
// of every step, wh [H, 3H] the recurrent kernels [W_hr | W_hz | W_hn], bhn [H] (may be
// null), h0 [rows, H]. Writes the hidden states hs [steps, rows, H] and the recurrent
// projections hps [steps, rows, 3H] (h_{t-1} W_h + [0 | 0 | b_hn], kept for the VJP).
template <class T>
void gru_sequence_forward(const T* xp, const T* wh, const T* bhn, const T* h0, T* hs, T* hps, std::int64_t steps,
                          std::int64_t rows, std::int64_t hidden);

// Backward through time, iterative from the last step. `grad_hs` [steps, rows, H] is the
// cotangent of hs. Writes dxp [steps, rows, 3H], dhps [steps, rows, 3H] (the recurrent
// projections' cotangents), dwh [H, 3H], dbhn [H] (when not null) and dh0 [rows, H].
template <class T>
void gru_sequence_backward(const T* xp, const T* wh, const T* h0, const T* hs, const T* hps, const T* grad_hs,
                           T* dxp, T* dhps, T* dwh, T* dbhn, T* dh0, std::int64_t steps, std::int64_t rows,
                           std::int64_t hidden);

}  // namespace xgrad::kernels
