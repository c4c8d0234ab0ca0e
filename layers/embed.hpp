// Embed (flax.linen.Embed): a lookup table of num_embeddings vectors of size features.
//
//   nn::Embed embed({.num_embeddings = 1000, .features = 64});
//   Tensor vectors = embed(token_ids);        // integer [batch...] -> [batch..., 64]
//   Tensor logits = embed.attend(vectors);    // [..., 64] -> [..., 1000], shared weights
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "layers/initializers.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

// Designated initializers name the fields in this order: num_embeddings, features, dtype, param_dtype.
struct EmbedOptions {
  std::int64_t num_embeddings = 0;  // required
  std::int64_t features = 0;        // required
  std::optional<DType> dtype = std::nullopt;  // computation dtype; empty: param_dtype (attend: promoted with query)
  DType param_dtype = DType::Float32;         // dtype of "embedding"
  // N(0, 1 / features): variance_scaling(1, fan_in, normal, out_axis=0).
  Initializer embedding_init =
      initializers::variance_scaling(1.0, initializers::FanMode::FanIn, initializers::Distribution::Normal, -2, 0);
};

// Parameter: embedding [num_embeddings, features].
class Embed : public Module {
 public:
  // ValueError unless num_embeddings and features are positive.
  explicit Embed(EmbedOptions options);
  std::string describe() const override;  // "Embed, num_embeddings=1000, features=64"
  // The options it was built with.
  const EmbedOptions& options() const { return options_; }

  // query @ embedding^T: similarity of each query with every embedding.
  Tensor attend(const Tensor& query);
  // Per example: the rows of g_b added into the rows its indices name (zeros
  // elsewhere), [batch, num_embeddings, features]. Declines (per_example_grads loops)
  // for an index outside [0, num_embeddings) or when attend used the table too.
  std::optional<StateDict> per_example_param_grads(const Tensor& input, const Tensor& output,
                                                   const Tensor& output_grad) const override;

 protected:
  Tensor forward(const Tensor& indices) override;  // integer indices only (ValueError otherwise)

 private:
  Tensor embedding();
  EmbedOptions options_;
};

}  // namespace xgrad::nn
