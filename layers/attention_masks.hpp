// Attention masks (flax.linen.make_attention_mask, make_causal_mask, combine_masks).
// A mask is true (nonzero) where a query may attend to a key; it broadcasts to the
// attention weights [batch..., heads, q_length, kv_length].
//
//   Tensor padding = nn::make_attention_mask(greater(tokens, 0), greater(tokens, 0));
//   Tensor mask = nn::combine_masks({padding, nn::make_causal_mask(tokens)});
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad::nn {

// Compares two broadcast operands elementwise, e.g. greater_equal.
using PairwiseFn = std::function<Tensor(const Tensor&, const Tensor&)>;

// pairwise_fn(query_input[..., :, None], key_input[..., None, :]) with a heads axis
// of size 1 inserted before the last two and extra_batch_dims leading axes of
// size 1: [1 x extra..., batch..., 1, len_q, len_kv], cast to dtype. The default
// pairwise_fn is multiplication (jnp.multiply). ShapeError when the batch dims of
// the inputs do not broadcast; ValueError for a negative extra_batch_dims.
Tensor make_attention_mask(const Tensor& query_input, const Tensor& key_input, const PairwiseFn& pairwise_fn = {},
                           std::int64_t extra_batch_dims = 0, DType dtype = DType::Float32);

// The causal mask of x [batch..., len]: [1 x extra..., batch..., 1, len, len], true
// where the key position is not after the query position.
Tensor make_causal_mask(const Tensor& x, std::int64_t extra_batch_dims = 0, DType dtype = DType::Float32);

// The logical and of the defined masks, cast to dtype; undefined when there is none.
// ValueError when the masks differ in rank (as Flax's assertion).
Tensor combine_masks(const std::vector<Tensor>& masks, DType dtype = DType::Float32);

}  // namespace xgrad::nn
