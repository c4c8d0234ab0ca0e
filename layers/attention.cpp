#include "layers/attention.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "autograd/grad_mode.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "layers/dtypes.hpp"

namespace xgrad::nn {

namespace {

constexpr const char* kLayout = "[batch..., length, heads, depth]";

// Flax's assertions on q, k (and v), as ShapeErrors that name the operation and the shapes.
void check_qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor* v) {
  const auto fail = [&](const char* what) {
    throw ShapeError(fmt::format("{}: query {}, key {}{} {} (layout {})", op, shape_str(q.shape()),
                                 shape_str(k.shape()), v ? fmt::format(", value {}", shape_str(v->shape())) : "",
                                 what, kLayout));
  };
  if (q.dim() < 3) fail("need rank >= 3");
  if (k.dim() != q.dim() || (v && v->dim() != q.dim())) fail("must have the same rank");
  const std::size_t r = q.shape().size();
  const auto batch_equal = [&](const Tensor& t) { return std::equal(q.shape().begin(), q.shape().end() - 3, t.shape().begin()); };
  if (!batch_equal(k) || (v && !batch_equal(*v))) fail("must have the same batch dims");
  if (k.shape()[r - 2] != q.shape()[r - 2] || (v && v->shape()[r - 2] != q.shape()[r - 2]))
    fail("must have the same number of heads");
  if (k.shape()[r - 1] != q.shape()[r - 1]) fail("differ in query/key depth");
  if (v && v->shape()[r - 3] != k.shape()[r - 3]) fail("differ in key/value length");
}

bool broadcasts_to(const Shape& from, const Shape& to) {
  if (from.size() > to.size()) return false;
  for (std::size_t i = 0; i < from.size(); ++i) {
    const std::int64_t f = from[from.size() - 1 - i];
    if (f != 1 && f != to[to.size() - 1 - i]) return false;
  }
  return true;
}

void check_broadcast(const char* op, const char* what, const Tensor& t, const Shape& scores) {
  if (t.defined() && !broadcasts_to(t.shape(), scores))
    throw ShapeError(fmt::format("{}: {} {} does not broadcast to the attention weights {} "
                                 "[batch..., heads, q_length, kv_length]",
                                 op, what, shape_str(t.shape()), shape_str(scores)));
}

Tensor weights_of(const char* op, const Tensor& query, const Tensor& key, const DotProductAttentionOptions& o) {
  if (!(o.dropout_rate >= 0.0 && o.dropout_rate < 1.0))
    throw ValueError(fmt::format("{}: dropout_rate must be in [0, 1), got {}", op, o.dropout_rate));
  const bool dropout = !o.deterministic && o.dropout_rate > 0.0;
  if (dropout && !o.dropout_rng)
    throw ValueError(fmt::format("{}: dropout (rate {}, deterministic false) needs a dropout_rng", op, o.dropout_rate));
  const std::size_t r = query.shape().size();
  Shape scores_shape(query.shape().begin(), query.shape().end() - 3);
  scores_shape.insert(scores_shape.end(), {query.shape()[r - 2], query.shape()[r - 3], key.shape()[r - 3]});
  check_broadcast(op, "bias", o.bias, scores_shape);
  check_broadcast(op, "mask", o.mask, scores_shape);

  // Flax divides the query by sqrt(depth); here the scale is applied to each score sum.
  const double depth = static_cast<double>(query.shape()[r - 1]);
  Tensor weights = attention_scores(query, key, 1.0 / std::sqrt(depth));
  if (o.bias.defined()) weights = weights + o.bias;
  if (o.force_fp32_for_softmax && weights.dtype() != DType::Float32) {
    weights = masked_softmax(cast(weights, DType::Float32), o.mask);  // stays float32, as Flax's
  } else {
    weights = masked_softmax(weights, o.mask);
    if (o.bias.defined() && weights.dtype() != query.dtype()) weights = cast(weights, query.dtype());
  }
  if (dropout) {
    const double keep_prob = 1.0 - o.dropout_rate;
    // Broadcast dropout shares one [q_length, kv_length] mask across batch dims and heads.
    Shape keep_shape = weights.shape();
    if (o.broadcast_dropout)
      std::fill(keep_shape.begin(), keep_shape.end() - 2, std::int64_t{1});
    Tensor multiplier;
    {
      NoGradGuard no_grad;
      multiplier = cast(random_bernoulli(*o.dropout_rng, keep_shape, keep_prob), weights.dtype()) / keep_prob;
    }
    weights = weights * multiplier;
  }
  return weights;
}

}  // namespace

Tensor dot_product_attention_weights(const Tensor& query, const Tensor& key, const DotProductAttentionOptions& options) {
  const char* op = "dot_product_attention_weights";
  check_qkv(op, query, key, nullptr);
  const auto p = promote_dtype({query, key}, options.dtype);
  return weights_of(op, p[0], p[1], options);
}

Tensor dot_product_attention(const Tensor& query, const Tensor& key, const Tensor& value,
                             const DotProductAttentionOptions& options) {
  const char* op = "dot_product_attention";
  check_qkv(op, query, key, &value);
  const auto p = promote_dtype({query, key, value}, options.dtype);
  return attention_values(weights_of(op, p[0], p[1], options), p[2]);
}

}  // namespace xgrad::nn
