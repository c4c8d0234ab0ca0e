#include "layers/embed.hpp"

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "autograd/backward.hpp"
#include "autograd/grad_mode.hpp"
#include "layers/dtypes.hpp"
#include "layers/per_example_capture.hpp"

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
  // A use of the table outside forward, which per-example capture does not see.
  if (PerExampleCapture* capture = PerExampleCapture::active()) capture->decline(this);
  const auto p = promote_dtype({query, embedding()}, options_.dtype);
  return matmul(p[0], transpose(p[1]));
}

std::optional<StateDict> Embed::per_example_param_grads(const Tensor& indices, const Tensor&, const Tensor& g) const {
  if (indices.dim() < 1 || !is_integral(indices.dtype())) return std::nullopt;
  const std::int64_t batch = indices.size(0), rows = options_.num_embeddings;
  const std::vector<double> values = indices.to_vector();
  for (const double v : values)
    if (v < 0 || v >= static_cast<double>(rows)) return std::nullopt;  // take's out-of-range rule, not a row
  // Example b's rows live at b·num_embeddings + index of one [batch·num_embeddings,
  // features] table; the VJP of take into it scatter-adds every example's g at once.
  Shape offsets_shape(static_cast<std::size_t>(indices.dim()), 1);
  offsets_shape.front() = batch;
  const Tensor shifted = cast(indices, DType::Int64) + reshape(arange(0.0, static_cast<double>(batch * rows), static_cast<double>(rows), DType::Int64),
                                                                    offsets_shape);
  Tensor per_example;
  {
    GradModeGuard recording(true);
    const Tensor table = zeros({batch * rows, options_.features}, g.dtype()).requires_grad_();
    per_example = grad({take(table, shifted, 0)}, {table}, {g})[0];
  }
  StateDict out;
  out["embedding"] = cast(reshape(per_example, {batch, rows, options_.features}), find_parameter("embedding").dtype());
  return out;
}

}  // namespace xgrad::nn
