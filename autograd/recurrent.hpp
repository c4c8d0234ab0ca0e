// Fused recurrent ops: the LSTM gate nonlinearities and cell update as one op with
// one VJP, and a whole LSTM sequence as one op whose VJP is an iterative
// backward-through-time loop. Gate order [i | f | g | o] along the last axis, as
// Flax's OptimizedLSTMCell concatenates them (and as PyTorch stores them).
//
//   i = sigmoid(z_i), f = sigmoid(z_f), g = tanh(z_g), o = sigmoid(z_o)
//   c' = f * c + i * g,   h' = o * tanh(c')
#pragma once

#include "core/tensor.hpp"

namespace xgrad {

// gates [..., 4H] pre-activations, c [..., H] (same leading dims, same floating
// dtype) -> [2, ..., H]: c' at index 0, h' at index 1. float32 and float64 run a
// fused kernel; other floating dtypes are computed with elementwise ops. Throws
// ShapeError / DTypeError naming "lstm_cell_update" and the shapes.
Tensor lstm_cell_update(const Tensor& gates, const Tensor& c);

// A whole sequence, time-major: xp [T, B, 4H] the input projections x_t W_i, wh
// [H, 4H], bias [4H] (may be undefined), c0 and h0 [B, H] -> [T, 2, B, H], the cell
// and hidden state (c_t, h_t) after every step. float32 or float64. The tape holds
// one node; its VJP runs backward through time as a loop (no recursion) and keeps
// the activated gates [T, B, 4H] besides the states. With create_graph the VJP is
// replayed with differentiable ops, so higher-order gradients work.
Tensor lstm_sequence(const Tensor& xp, const Tensor& wh, const Tensor& bias, const Tensor& c0, const Tensor& h0);

}  // namespace xgrad
