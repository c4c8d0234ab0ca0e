// MultiHeadDotProductAttention and SelfAttention (flax.linen's).
//
//   nn::MultiHeadDotProductAttention attention({.num_heads = 4});
//   Tensor y = attention(x);                      // self-attention: x [batch..., length, features]
//   Tensor z = attention(q, kv, {}, {.mask = mask});  // cross-attention (value = key input)
//
// Projects the inputs to [batch..., length, num_heads, head_dim] with DenseGeneral
// submodules `query`, `key` and `value` (kernel [in, num_heads, head_dim], bias
// [num_heads, head_dim]), applies nn::dot_product_attention (layers/attention.hpp),
// and projects back with DenseGeneral `out` (kernel [num_heads, head_dim,
// out_features], bias [out_features]) over the last two axes. head_dim =
// qkv_features / num_heads. Not implemented: Flax's sow_weights.
//
// decode (Flax's autoregressive cache): the first call (or init) with the full-length
// input [batch..., max_length, features] creates the buffers `cached_key` and
// `cached_value` (zeros shaped like the projected key and value, [batch..., max_length,
// heads, head_dim]) and `cache_index` (int32 scalar 0), Flax's "cache" collection, and
// attends as without decode. Every later call takes one token [batch..., 1, features]:
// its key and value go into the cache at cache_index, the query attends to the cached
// positions 0..cache_index (a mask combined with the call's), and cache_index grows by
// one. A full cache or a query of another shape is a ValueError. Gradients reach the
// current token's projections; the cached ones are stored detached. The cache buffers
// are part of state_dict(): after init, load parameters trained without decode with
// load_state_dict(params, /*strict=*/false); init again (or load a saved cache) to
// start a new sequence.
//
// Per-example gradients (xgrad::per_example_grads): the four projections are
// DenseGeneral submodules called as modules, and query_ln / key_ln LayerNorms, so each
// takes its layer's batched rule; no parameter is used outside those calls.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/precision.hpp"
#include "core/random.hpp"
#include "layers/attention.hpp"
#include "layers/dense.hpp"
#include "layers/initializers.hpp"
#include "layers/layer_norm.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

// Designated initializers name the fields in this order: num_heads, dtype, param_dtype,
//   qkv_features, out_features, broadcast_dropout, dropout_rate, deterministic, precision,
//   kernel_init, out_kernel_init, bias_init, out_bias_init, use_bias, attention_fn, decode,
//   normalize_qk, force_fp32_for_softmax.
struct MultiHeadDotProductAttentionOptions {
  std::int64_t num_heads = 0;  // required; must divide qkv_features
  std::optional<DType> dtype = std::nullopt;  // computation dtype; empty: promoted from inputs and params
  DType param_dtype = DType::Float32;  // dtype of every kernel and bias
  std::optional<std::int64_t> qkv_features = std::nullopt;  // empty: the query input's features
  std::optional<std::int64_t> out_features = std::nullopt;  // empty: the query input's features
  bool broadcast_dropout = true;  // one dropout mask shared by the batch dims and heads
  double dropout_rate = 0.0;      // dropout of the attention weights, in [0, 1)
  // Set here or per call, not both (Flax's merge_param); neither: deterministic in eval().
  std::optional<bool> deterministic = std::nullopt;
  Precision precision = Precision::Default;  // of the four projections
  Initializer kernel_init = initializers::lecun_normal();  // initializer of the query/key/value kernels
  std::optional<Initializer> out_kernel_init = std::nullopt;  // empty: kernel_init
  Initializer bias_init = initializers::zeros();  // initializer of the query/key/value biases
  std::optional<Initializer> out_bias_init = std::nullopt;  // empty: bias_init
  bool use_bias = true;  // biases in all four projections
  // Called in place of nn::dot_product_attention with the projected query, key, value
  // and the options (mask, dropout, dtype, force_fp32_for_softmax); empty: the default.
  AttentionFn attention_fn = {};
  bool decode = false;        // the autoregressive cache (see above)
  bool normalize_qk = false;  // LayerNorm (no bias) `query_ln` / `key_ln` on the projected query and key
  bool force_fp32_for_softmax = false;  // passed to the attention function (layers/attention.hpp)
};

// The keyword arguments of Flax's __call__.
// Designated initializers name the fields in this order: mask, deterministic, dropout_rng.
struct AttentionCall {
  // Broadcastable to [batch..., num_heads, q_length, kv_length]; false (zero) drops a score.
  Tensor mask = {};
  std::optional<bool> deterministic = std::nullopt;  // true: no dropout; here or in the options
  std::optional<Key> dropout_rng = std::nullopt;  // empty: the module's "dropout" stream
};

// flax.linen.MultiHeadDotProductAttention (projections above): output
// [batch..., q_length, out_features]. Errors: ValueError for the options, a
// qkv_features not divisible by num_heads, deterministic set twice, or inputs_v
// without inputs_k; ShapeError for inputs of rank < 2.
class MultiHeadDotProductAttention : public Module {
 public:
  // Checks the options (ValueError: num_heads, qkv_features,
  // out_features, dropout_rate).
  explicit MultiHeadDotProductAttention(MultiHeadDotProductAttentionOptions options);
  std::string describe() const override;  // "MultiHeadDotProductAttention, num_heads=4"
  // The options it was built with.
  const MultiHeadDotProductAttentionOptions& options() const { return options_; }

  using Module::operator();  // attention(inputs_q): self-attention
  // inputs [batch..., length, features]. As Flax: an undefined inputs_k is inputs_q, an
  // undefined inputs_v is inputs_k (inputs_v without inputs_k is a ValueError).
  Tensor operator()(const Tensor& inputs_q, const Tensor& inputs_k, const Tensor& inputs_v = {},
                    const AttentionCall& call = {});

 protected:
  Tensor forward(const Tensor& inputs_q) override;  // Self-attention of inputs_q with default call arguments.

 private:
  struct Pending {
    const Tensor* inputs_k;
    const Tensor* inputs_v;
    const AttentionCall* call;
  };
  void build(std::int64_t in_features);  // creates the submodules at the first call, as Flax's compact
  Tensor attend(const Tensor& inputs_q, const Tensor& inputs_k, const Tensor& inputs_v, const AttentionCall& call);
  // decode: key and value through the cache and the mask limited to the cached positions.
  void use_cache(const Tensor& query, Tensor& key, Tensor& value, Tensor& mask);

  MultiHeadDotProductAttentionOptions options_;
  std::shared_ptr<DenseGeneral> query_, key_, value_, out_;
  std::shared_ptr<LayerNorm> query_ln_, key_ln_;
  // The extra arguments of a call in flight: operator() passes inputs_q through
  // Module::operator() (error prefixes, summaries) and forward picks these up.
  const Pending* pending_ = nullptr;
};

// Self-attention (Flax's SelfAttention): attention(x, {.mask = m}) attends x to itself.
class SelfAttention : public MultiHeadDotProductAttention {
 public:
  using MultiHeadDotProductAttention::MultiHeadDotProductAttention;  // The same options and checks.
  std::string describe() const override;  // "SelfAttention, num_heads=4"
  using Module::operator();
  Tensor operator()(const Tensor& inputs_q, const AttentionCall& call);  // attends inputs_q to itself
};

}  // namespace xgrad::nn
