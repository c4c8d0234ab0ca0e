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

}  // namespace xgrad::kernels
