#include "layers/embed.hpp"

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "layers/dtypes.hpp"

namespace xgrad::nn {

Embed::Embed(EmbedOptions options) : options_(std::move(options)) {
  if (options_.num_embeddings <= 0 || options_.features <= 0)
    throw ValueError(fmt::format("Embed: num_embeddings and features must be positive, got {} and {}",
                                 options_.num_embeddings, options_.features));
  bind_dtype_options(options_.dtype, options_.param_dtype);
}

std::string Embed::describe() const {
  return fmt::format("Embed, num_embeddings={}, features={}", options_.num_embeddings, options_.features);
}

Tensor Embed::embedding() {
  return param("embedding", {options_.num_embeddings, options_.features}, options_.embedding_init,
               options_.param_dtype);
}

Tensor Embed::forward(const Tensor& indices) {
  if (!is_integral(indices.dtype()))
    throw ValueError(fmt::format("Input type must be an integer or unsigned integer, got {}",
                                 dtype_name(indices.dtype())));
  // Flax promotes the table alone, without forcing a floating dtype.
  const Tensor table = promote_dtype({embedding()}, options_.dtype, /*inexact=*/false)[0];
  return take(table, indices, 0);
}

Tensor Embed::attend(const Tensor& query) {
  const auto p = promote_dtype({query, embedding()}, options_.dtype);
  return matmul(p[0], transpose(p[1]));
}

}  // namespace xgrad::nn
