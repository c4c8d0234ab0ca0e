#include "layers/multi_head_attention.hpp"

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "autograd/grad_mode.hpp"
#include "layers/attention.hpp"
#include "layers/attention_masks.hpp"

namespace xgrad::nn {

MultiHeadDotProductAttention::MultiHeadDotProductAttention(MultiHeadDotProductAttentionOptions options)
    : options_(std::move(options)) {
  const auto& o = options_;
  if (o.num_heads <= 0) throw ValueError(fmt::format("MultiHeadDotProductAttention: num_heads must be positive, got {}", o.num_heads));
  if (o.qkv_features && *o.qkv_features <= 0)
    throw ValueError(fmt::format("MultiHeadDotProductAttention: qkv_features must be positive, got {}", *o.qkv_features));
  if (o.qkv_features && *o.qkv_features % o.num_heads != 0)
    throw ValueError(fmt::format("MultiHeadDotProductAttention: qkv_features ({}) must be divisible by num_heads ({})",
                                 *o.qkv_features, o.num_heads));
  if (o.out_features && *o.out_features <= 0)
    throw ValueError(fmt::format("MultiHeadDotProductAttention: out_features must be positive, got {}", *o.out_features));
  if (!(o.dropout_rate >= 0.0 && o.dropout_rate < 1.0))
    throw ValueError(fmt::format("MultiHeadDotProductAttention: dropout_rate must be in [0, 1), got {}", o.dropout_rate));
  bind_dtype_options(options_.dtype, options_.param_dtype);
}

std::string MultiHeadDotProductAttention::describe() const {
  return fmt::format("MultiHeadDotProductAttention, num_heads={}", options_.num_heads);
}

std::string SelfAttention::describe() const { return fmt::format("SelfAttention, num_heads={}", options().num_heads); }

void MultiHeadDotProductAttention::build(std::int64_t in_features) {
  if (query_) return;
  const auto& o = options_;
  const std::int64_t qkv = o.qkv_features.value_or(in_features), out = o.out_features.value_or(in_features);
  if (qkv % o.num_heads != 0)
    throw ValueError(fmt::format("qkv_features ({}, the query input's features) must be divisible by num_heads ({})",
                                 qkv, o.num_heads));
  const auto projection = [&](Shape features, std::vector<std::int64_t> axis, const Initializer& kernel_init,
                              const Initializer& bias_init) {
    return std::make_shared<DenseGeneral>(DenseGeneralOptions{.features = std::move(features),
                                                              .axis = std::move(axis),
                                                              .use_bias = o.use_bias,
                                                              .dtype = o.dtype,
                                                              .param_dtype = o.param_dtype,
                                                              .precision = o.precision,
                                                              .kernel_init = kernel_init,
                                                              .bias_init = bias_init});
  };
  const Shape heads{o.num_heads, qkv / o.num_heads};
  query_ = register_module("query", projection(heads, {-1}, o.kernel_init, o.bias_init));
  key_ = register_module("key", projection(heads, {-1}, o.kernel_init, o.bias_init));
  value_ = register_module("value", projection(heads, {-1}, o.kernel_init, o.bias_init));
  if (o.normalize_qk) {
    const LayerNormOptions ln{.dtype = o.dtype, .param_dtype = o.param_dtype, .use_bias = false};
    query_ln_ = register_module("query_ln", std::make_shared<LayerNorm>(ln));
    key_ln_ = register_module("key_ln", std::make_shared<LayerNorm>(ln));
  }
  out_ = register_module("out", projection({out}, {-2, -1}, o.out_kernel_init.value_or(o.kernel_init),
                                           o.out_bias_init.value_or(o.bias_init)));
}

Tensor MultiHeadDotProductAttention::operator()(const Tensor& inputs_q, const Tensor& inputs_k, const Tensor& inputs_v,
                                                const AttentionCall& call) {
  const Pending pending{&inputs_k, &inputs_v, &call};
  struct Reset {
    const Pending*& slot;
    ~Reset() { slot = nullptr; }
  } reset{pending_};
  pending_ = &pending;
  return Module::operator()(inputs_q);
}

Tensor SelfAttention::operator()(const Tensor& inputs_q, const AttentionCall& call) {
  return MultiHeadDotProductAttention::operator()(inputs_q, Tensor(), Tensor(), call);
}

Tensor MultiHeadDotProductAttention::forward(const Tensor& inputs_q) {
  const AttentionCall no_call;
  Tensor inputs_k, inputs_v;
  const AttentionCall* call = &no_call;
  if (pending_) {
    inputs_k = *pending_->inputs_k;
    inputs_v = *pending_->inputs_v;
    call = pending_->call;
    pending_ = nullptr;  // the submodules' calls below are not this call
  }
  if (!inputs_k.defined()) {
    if (inputs_v.defined())
      throw ValueError("inputs_k cannot be undefined if inputs_v is defined; to use the same tensor for both, "
                       "pass it as inputs_k and leave inputs_v undefined");
    inputs_k = inputs_q;
  }
  if (!inputs_v.defined()) inputs_v = inputs_k;
  return attend(inputs_q, inputs_k, inputs_v, *call);
}

Tensor MultiHeadDotProductAttention::attend(const Tensor& inputs_q, const Tensor& inputs_k, const Tensor& inputs_v,
                                            const AttentionCall& call) {
  for (const auto* t : {&inputs_q, &inputs_k, &inputs_v})
    if (t->dim() < 2)
      throw ShapeError(fmt::format("inputs must be [batch..., length, features], got query {}, key {}, value {}",
                                   shape_str(inputs_q.shape()), shape_str(inputs_k.shape()),
                                   shape_str(inputs_v.shape())));
  build(inputs_q.size(-1));
  Tensor query = (*query_)(inputs_q), key = (*key_)(inputs_k), value = (*value_)(inputs_v);
  if (query_ln_) {
    query = (*query_ln_)(query);
    key = (*key_ln_)(key);
  }

  const auto& o = options_;
  bool deterministic = true;
  if (o.dropout_rate > 0.0) {
    if (o.deterministic && call.deterministic)
      throw ValueError("deterministic is set both in the options and in the call; set it in one place (Flax's "
                       "merge_param)");
    deterministic = call.deterministic.value_or(o.deterministic.value_or(!is_training())) || is_initializing();
  }
  Tensor mask = call.mask;
  if (o.decode) use_cache(query, key, value, mask);
  DotProductAttentionOptions attention{.mask = mask,
                                       .broadcast_dropout = o.broadcast_dropout,
                                       .dropout_rate = o.dropout_rate,
                                       .deterministic = deterministic,
                                       .dtype = o.dtype,
                                       .force_fp32_for_softmax = o.force_fp32_for_softmax};
  if (!deterministic) attention.dropout_rng = call.dropout_rng ? *call.dropout_rng : next_rng("dropout");
  const Tensor x = o.attention_fn ? o.attention_fn(query, key, value, attention)
                                  : dot_product_attention(query, key, value, attention);
  return (*out_)(x);
}

void MultiHeadDotProductAttention::use_cache(const Tensor& query, Tensor& key, Tensor& value, Tensor& mask) {
  Tensor cached_key = find_buffer("cached_key");
  if (!cached_key.defined()) {  // the first call: make the cache, attend as without decode (Flax's init)
    buffer("cached_key", key.shape(), initializers::zeros(), key.dtype());
    buffer("cached_value", value.shape(), initializers::zeros(), value.dtype());
    buffer("cache_index", {}, initializers::zeros(), DType::Int32);
    return;
  }
  Tensor cached_value = find_buffer("cached_value"), cache_index = find_buffer("cache_index");
  const Shape& cache = cached_key.shape();
  const std::size_t r = cache.size();
  Shape expected(cache.begin(), cache.end() - 3);
  const Shape batch_dims = expected;
  expected.insert(expected.end(), {1, cache[r - 2], cache[r - 1]});
  if (query.shape() != expected)
    throw ValueError(fmt::format("Autoregressive cache shape error, expected query shape {} instead got {} (decode "
                                 "takes one token per call after the first)",
                                 shape_str(expected), shape_str(query.shape())));
  const std::int64_t max_length = cache[r - 3];
  const auto index = static_cast<std::int64_t>(cache_index.item());
  if (index >= max_length)
    throw ValueError(fmt::format("decode: the cache is full: all {} positions of cached_key {} are used (cache_index "
                                 "{}); initialise again for a new sequence",
                                 max_length, shape_str(cache), index));
  // Flax's dynamic_update_slice at position `index` of the length axis, as a concat
  // so that the new token's key and value keep their gradients.
  const std::int64_t axis = static_cast<std::int64_t>(r) - 3;
  const auto insert = [&](const Tensor& cached, const Tensor& token) {
    std::vector<Tensor> parts;
    if (index > 0) parts.push_back(slice(cached, axis, 0, index));
    parts.push_back(token);
    if (index + 1 < max_length) parts.push_back(slice(cached, axis, index + 1, max_length));
    return parts.size() == 1 ? token : concat(parts, axis);
  };
  if (value.shape().size() != r || value.size(-3) != 1 ||
      Shape(value.shape().begin(), value.shape().end() - 3) != batch_dims)
    throw ValueError(fmt::format("Autoregressive cache shape error: value {} does not fit cached_value {}",
                                 shape_str(value.shape()), shape_str(cached_value.shape())));
  const auto as = [](const Tensor& t, DType d) { return t.dtype() == d ? t : cast(t, d); };
  key = insert(cached_key, as(key, cached_key.dtype()));
  value = insert(cached_value, as(value, cached_value.dtype()));
  {
    NoGradGuard no_grad;
    cached_key.copy_(key.detach());
    cached_value.copy_(value.detach());
    cache_index.copy_(full({}, static_cast<double>(index + 1), DType::Int32));
  }
  // The query attends to the positions generated so far: arange(max_length) <= index.
  Shape mask_shape = batch_dims;
  mask_shape.insert(mask_shape.end(), {1, 1, max_length});
  const Tensor positions = less_equal(arange(max_length), full({}, static_cast<double>(index), DType::Int64));
  mask = combine_masks({mask, broadcast_to(positions, mask_shape)});
}

}  // namespace xgrad::nn
