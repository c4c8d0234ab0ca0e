// Attention kernels (no tape): the two contractions of dot-product attention in the
// [batch..., length, heads, depth] layout of Flax's attention (no transposes to
// [batch, heads, ...] and back), and a softmax over the last axis with an
// optional keep-mask, with its backward. float32 and float64 only; the autograd ops
// (autograd/ops_attention.cpp) compute 16-bit floats in float32.
//
// With N = prod(batch...):
//   attention_scores  q [N, Q, H, D], k [N, K, H, D] -> s [N, H, Q, K]
//                     s[n,h,i,j] = scale * sum_d q[n,i,h,d] k[n,j,h,d]
//   attention_values  w [N, H, Q, K], v [N, K, H, D] -> o [N, Q, H, D]
//                     o[n,i,h,d] = scale * sum_j w[n,h,i,j] v[n,j,h,d]
// The caller checks the shapes; both run one (n, h) pair per parallel_for chunk,
// each output element summed in a fixed order (the same bits at any thread count).
#pragma once

#include "core/tensor.hpp"

namespace xgrad::kernels {

Tensor attention_scores(const Tensor& query, const Tensor& key, double scale);
Tensor attention_values(const Tensor& weights, const Tensor& value, double scale);

// softmax over the last axis of where(keep, x, lowest), lowest = the dtype's most
// negative finite value (jnp.finfo(dtype).min, as flax's attention fills masked
// scores). `keep`: Bool, x's shape, or undefined for none. A fully masked row is
// uniform, as in Flax.
Tensor masked_softmax(const Tensor& x, const Tensor& keep);
// The VJP of masked_softmax from its output y and cotangent g:
//   dx = keep ? y * (g - sum(g * y)) : 0   (sums over the last axis).
Tensor masked_softmax_backward(const Tensor& y, const Tensor& g, const Tensor& keep);

}  // namespace xgrad::kernels
