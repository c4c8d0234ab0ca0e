// LSTM kernels on raw row-major buffers (float or double), tape-free.
//
// Gate layout (Flax's i, f, g, o order, also PyTorch's): a pre-activation row of
// 4H values holds [i | f | g | o]. One step:
//   i = sigmoid(z_i), f = sigmoid(z_f), g = tanh(z_g), o = sigmoid(z_o)
//   c' = f * c + i * g,  h' = o * tanh(c')
#pragma once

#include <cstdint>

namespace xgrad::kernels {

// One step over `rows` independent rows. `z` [rows, 4H] pre-activations, `c` [rows, H];
// writes c' and h' ([rows, H] each) and, when `gates` is not null, the activated
// gates [rows, 4H].
template <class T>
void lstm_step_forward(const T* z, const T* c, T* c_out, T* h_out, T* gates, std::int64_t rows,
                       std::int64_t hidden);

// The VJP of one step: from the cotangents of c' and h',
// the pre-activations' cotangent dz [rows, 4H] and the old cell's dc [rows, H].
// Gates are recomputed from `z`; `c_new` is the step's c'.
template <class T>
void lstm_step_backward(const T* z, const T* c, const T* c_new, const T* grad_c, const T* grad_h, T* dz, T* dc,
                        std::int64_t rows, std::int64_t hidden);

// A whole sequence, time-major. `xp` [steps, rows, 4H] holds the input projections
// x_t W_i of every step, `wh` [H, 4H] the recurrent kernel, `bias` [4H] (may be
// null), `c0`, `h0` [rows, H]. Writes `states` [steps, 2, rows, H] (c_t then h_t of
// every step) and `gates` [steps, rows, 4H] (the activated gates, kept for the VJP).
template <class T>
void lstm_sequence_forward(const T* xp, const T* wh, const T* bias, const T* c0, const T* h0, T* states, T* gates,
                           std::int64_t steps, std::int64_t rows, std::int64_t hidden);

// Backward through time, iterative from the last step to the first. `grad_states`
// [steps, 2, rows, H] is the cotangent of `states`. Writes dxp [steps, rows, 4H]
// (the pre-activations' cotangents, which are also x_t W_i's), dwh [H, 4H], dbias
// [4H] (when not null), dc0 and dh0 [rows, H].
template <class T>
void lstm_sequence_backward(const T* wh, const T* c0, const T* h0, const T* states, const T* gates,
                            const T* grad_states, T* dxp, T* dwh, T* dbias, T* dc0, T* dh0, std::int64_t steps,
                            std::int64_t rows, std::int64_t hidden);

}  // namespace xgrad::kernels
