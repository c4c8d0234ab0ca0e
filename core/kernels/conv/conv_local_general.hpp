// The general path of the local conv (every configuration the fast kernels of
// conv_local_fast.* do not take): one pass over the output positions, split into
// slots that xgrad::num_threads() threads share. Per position o
// its N x I patch block is built in a small per-thread buffer (it stays in cache)
// and contracted at once with the position's kernel block K_o (I/G x F per group)
// by OpenBLAS, single-threaded inside.
// Buffers are raw, in the accumulation type A; x is read in its storage type T.
#pragma once

#include "core/kernels/conv/conv.hpp"

namespace xgrad::kernels {

// y (N, O..., F) = per position o: P_o . K_o (+ bias_o, bias (O..., F), when not
// null: the GEMM accumulates onto it). Every element of y written.
template <class T, class A>
void local_conv_forward(const T* x, const A* kernel, const A* bias, A* y, const ConvContraction& c);

// The gradients from one pass over g (N, O..., F); any output may be null.
// dkernel_o = P_o^T . g_o and dbias_o = g_o summed over the batch (written);
// dx += col2im(g_o . K_o^T) (accumulated, so clear dx first). x may be null when
// dkernel is, kernel when dx is. Each slot of positions but the first scatters into
// its own copy of dx, added in at the end in slot order; while deterministic() the
// slots are fixed by the shape, so dx has the same bits at any thread count.
template <class T, class A>
void local_conv_backward(const T* x, const A* kernel, const A* g, A* dx, A* dkernel, A* dbias,
                         const ConvContraction& c);

}  // namespace xgrad::kernels
