// Dot-product attention (flax.linen.dot_product_attention and
// dot_product_attention_weights).
//
//   // q [batch..., q_length, heads, depth], k and v [batch..., kv_length, heads, depth]
//   Tensor out = nn::dot_product_attention(q, k, v, {.mask = nn::make_causal_mask(tokens)});
//   // out [batch..., q_length, heads, depth]
//
// weights = softmax(where(mask, q k^T / sqrt(depth) + bias, lowest)) over kv_length,
// then dropout, then out = weights v; lowest is the dtype's most negative finite
// value, as Flax's jnp.finfo(dtype).min. The scores, the masked softmax and the
// weighted sum are one op each (autograd/ops.hpp: attention_scores, masked_softmax,
// attention_values), computed in the layout above without transposes.
#pragma once

#include <functional>
#include <optional>

#include "core/random.hpp"
#include "core/tensor.hpp"

namespace xgrad::nn {

// Designated initializers name the fields in this order: bias, mask, broadcast_dropout,
//   dropout_rng, dropout_rate, deterministic, dtype, force_fp32_for_softmax.
struct DotProductAttentionOptions {
  // Added to the scores; broadcastable to [batch..., heads, q_length, kv_length].
  Tensor bias = {};
  // Scores where the mask is false (zero) are dropped; broadcastable as bias. Any dtype.
  Tensor mask = {};
  bool broadcast_dropout = true;  // one dropout mask shared by the batch dims and heads
  std::optional<Key> dropout_rng = std::nullopt;  // required when dropout runs
  double dropout_rate = 0.0;                      // in [0, 1)
  bool deterministic = false;                     // true: no dropout
  std::optional<DType> dtype = std::nullopt;      // empty: promoted from the inputs
  // As Flax: when the computation dtype is not float32, the softmax runs on the scores
  // cast to float32 and the weights stay float32 (so does the weighted sum of values,
  // which promotes). For mixed precision; note that float64 is computed in float32 too.
  bool force_fp32_for_softmax = false;
};

// A function used in place of dot_product_attention by MultiHeadDotProductAttention
// (Flax's attention_fn): query, key, value [batch..., length, heads, depth] and the
// options the module would pass (mask, dropout, dtype, force_fp32_for_softmax) ->
// [batch..., q_length, heads, v_depth].
using AttentionFn = std::function<Tensor(const Tensor& query, const Tensor& key, const Tensor& value,
                                         const DotProductAttentionOptions& options)>;

// The attention weights [batch..., heads, q_length, kv_length] of query
// [batch..., q_length, heads, depth] and key [batch..., kv_length, heads, depth].
// ShapeError when the shapes do not fit together or bias / mask do not broadcast;
// ValueError for a dropout_rate outside [0, 1) or dropout without dropout_rng.
Tensor dot_product_attention_weights(const Tensor& query, const Tensor& key,
                                     const DotProductAttentionOptions& options = {});

// The weighted sum of value [batch..., kv_length, heads, v_depth] by those weights:
// [batch..., q_length, heads, v_depth].
Tensor dot_product_attention(const Tensor& query, const Tensor& key, const Tensor& value,
                             const DotProductAttentionOptions& options = {});

}  // namespace xgrad::nn
