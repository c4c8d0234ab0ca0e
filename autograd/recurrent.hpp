// Fused recurrent ops: the LSTM and GRU gate nonlinearities and state update as one
// op with one VJP each, and a whole LSTM sequence as one op whose VJP is an iterative
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

// A whole sequence, time-major: xp [T, B, 4H] the input projections x_t W_i (or the
// same rows as [T * B, 4H], the output of one input product without a reshape), wh
// [H, 4H], bias [4H] (may be undefined), c0 and h0 [B, H] -> [T, 2, B, H], the cell
// and hidden state (c_t, h_t) after every step. float32 or float64. The tape holds
// one node; its VJP runs backward through time as a loop (no recursion) and keeps
// the activated gates [T, B, 4H] besides the states. With create_graph the VJP is
// replayed with differentiable ops, so higher-order gradients work.
Tensor lstm_sequence(const Tensor& xp, const Tensor& wh, const Tensor& bias, const Tensor& c0, const Tensor& h0);

// The GRU step of flax.linen.GRUCell (and torch.nn.GRU), gates [r | z | n]:
//   r = sigmoid(xp_r + hp_r), z = sigmoid(xp_z + hp_z), n = tanh(xp_n + r * hp_n)
//   h' = (1 - z) * n + z * h
// xp [..., 3H] = x W_i + b_i, hp [..., 3H] = h W_h + [0 | 0 | b_hn], h [..., H] (one
// floating dtype) -> h' [..., H]. float32 and float64 run a fused kernel, other
// floating dtypes elementwise ops; errors name "gru_cell_update" and the shapes.
Tensor gru_cell_update(const Tensor& xp, const Tensor& hp, const Tensor& h);

// A whole GRU sequence, time-major: xp [T, B, 3H] the input projections x_t W_i + b_i
// (gates [r | z | n]; or the same rows as [T * B, 3H]), wh [H, 3H] the recurrent kernels, bhn [H] the recurrent bias
// of n (may be undefined), h0 [B, H] -> the hidden states [T, B, H]. float32 or
// float64. One tape node, as lstm_sequence: its VJP runs backward through time as a
// loop, dW_h as one product over all steps; it keeps the recurrent projections
// [T, B, 3H]. With create_graph the VJP is replayed with differentiable ops. Errors
// name "gru_sequence" and the shapes.
Tensor gru_sequence(const Tensor& xp, const Tensor& wh, const Tensor& bhn, const Tensor& h0);

}  // namespace xgrad
