#include "layers/dense.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "layers/dtypes.hpp"
#include "layers/matmul.hpp"

namespace xgrad::nn {

Dense::Dense(DenseOptions options) : options_(std::move(options)) {
  if (options_.features <= 0)
    throw ValueError(fmt::format("Dense: features must be positive, got {}", options_.features));
  bind_dtype_options(options_.dtype, options_.param_dtype);
}

std::string Dense::describe() const { return fmt::format("Dense, features={}", options_.features); }

Tensor Dense::forward(const Tensor& x) {
  if (x.dim() == 0) throw ShapeError("input is a scalar; Dense needs [..., in_features]");
  const std::int64_t in = x.size(-1);
  if (const Tensor k = find_parameter("kernel"); k.defined() && k.shape()[0] != in)
    throw ShapeError(fmt::format("input last dim {} does not match kernel {}", in, shape_str(k.shape())));
  const Tensor kernel = param("kernel", {in, options_.features}, options_.kernel_init, options_.param_dtype);
  const Tensor bias =
      options_.use_bias ? param("bias", {options_.features}, options_.bias_init, options_.param_dtype) : Tensor();
  const auto p = promote_dtype({x, kernel, bias}, options_.dtype);
  // Rank > 2 inputs are flattened to one matrix product: one BLAS call instead of a batched loop.
  Tensor y;
  if (x.dim() <= 2) {
    y = matmul(p[0], p[1], options_.precision);
  } else {
    Shape out_shape = x.shape();
    out_shape.back() = options_.features;
    y = reshape(matmul(reshape(p[0], {-1, in}), p[1], options_.precision), out_shape);
  }
  return options_.use_bias ? y + p[2] : y;
}

std::optional<StateDict> Dense::per_example_param_grads(const Tensor& x, const Tensor&, const Tensor& g) const {
  if (x.dim() < 2) return std::nullopt;  // no batch axis
  const Tensor kernel = find_parameter("kernel");
  const std::int64_t batch = x.size(0), in = x.size(-1);
  // [B, rows, in]ᵀ · [B, rows, F]: one batched product, the rows of an example summed.
  const Tensor rows_in = reshape(cast(x, g.dtype()), {batch, -1, in});
  const Tensor rows_out = reshape(g, {batch, -1, options_.features});
  StateDict out;
  out["kernel"] = cast(matmul(swapaxes(rows_in, 1, 2), rows_out), kernel.dtype());
  if (options_.use_bias) out["bias"] = cast(sum(rows_out, {1}), find_parameter("bias").dtype());
  return out;
}

DenseGeneral::DenseGeneral(DenseGeneralOptions options) : options_(std::move(options)) {
  if (options_.features.empty() || std::any_of(options_.features.begin(), options_.features.end(),
                                               [](std::int64_t f) { return f <= 0; }))
    throw ValueError(fmt::format("DenseGeneral: features must be non-empty and positive, got {}",
                                 shape_str(options_.features)));
  bind_dtype_options(options_.dtype, options_.param_dtype);
}

std::string DenseGeneral::describe() const {
  return fmt::format("DenseGeneral, features={}", shape_str(options_.features));
}

Tensor DenseGeneral::forward(const Tensor& x) {
  const std::int64_t rank = x.dim();
  std::vector<std::int64_t> axis, batch;
  for (auto a : options_.axis) axis.push_back(normalize_axis(a, rank, "axis"));
  for (auto b : options_.batch_dims) batch.push_back(normalize_axis(b, rank, "batch_dims"));
  std::sort(batch.begin(), batch.end());
  for (std::size_t i = 0; i < batch.size(); ++i)
    if (batch[i] != static_cast<std::int64_t>(i))
      throw ValueError(fmt::format("batch_dims [{}] must be consecutive leading dimensions starting from 0",
                                   fmt::join(options_.batch_dims, ", ")));
  for (auto a : axis)
    if (std::count(axis.begin(), axis.end(), a) > 1 || std::count(batch.begin(), batch.end(), a) > 0)
      throw ValueError(fmt::format("axis [{}] repeats an axis or overlaps batch_dims [{}]",
                                   fmt::join(options_.axis, ", "), fmt::join(options_.batch_dims, ", ")));
  std::vector<std::int64_t> free;
  for (std::int64_t a = 0; a < rank; ++a)
    if (std::count(axis.begin(), axis.end(), a) == 0 && std::count(batch.begin(), batch.end(), a) == 0)
      free.push_back(a);

  const Shape& s = x.shape();
  Shape batch_shape, free_shape, in_shape;
  for (auto a : batch) batch_shape.push_back(s[static_cast<std::size_t>(a)]);
  for (auto a : free) free_shape.push_back(s[static_cast<std::size_t>(a)]);
  for (auto a : axis) in_shape.push_back(s[static_cast<std::size_t>(a)]);
  const std::int64_t n_batch = numel(batch_shape), n_free = numel(free_shape), n_in = numel(in_shape),
                     n_features = numel(options_.features);

  Shape kernel_shape = batch_shape;
  kernel_shape.insert(kernel_shape.end(), in_shape.begin(), in_shape.end());
  kernel_shape.insert(kernel_shape.end(), options_.features.begin(), options_.features.end());
  // Flax initialises the kernel as the 2-D [prod(batch) * prod(in), prod(features)]
  // matrix, so fan_in is the contracted size, and the bias as a vector.
  const Initializer kernel_init = [init = options_.kernel_init, n_batch, n_in, n_features](
                                      Key key, const Shape& shape, DType dtype) {
    return reshape(init(key, {n_batch * n_in, n_features}, dtype), shape);
  };
  const Tensor kernel = param("kernel", kernel_shape, kernel_init, options_.param_dtype);
  Tensor bias;
  if (options_.use_bias) {
    Shape bias_shape = batch_shape;
    bias_shape.insert(bias_shape.end(), options_.features.begin(), options_.features.end());
    const Initializer bias_init = [init = options_.bias_init, n_batch, n_features](Key key, const Shape& shape,
                                                                                   DType dtype) {
      return reshape(init(key, {n_batch * n_features}, dtype), shape);
    };
    bias = param("bias", bias_shape, bias_init, options_.param_dtype);
  }
  const auto p = promote_dtype({x, kernel, bias}, options_.dtype);

  // Move the axes into [batch, free, contracted] order and contract with one matmul.
  std::vector<std::int64_t> permutation = batch;
  permutation.insert(permutation.end(), free.begin(), free.end());
  permutation.insert(permutation.end(), axis.begin(), axis.end());
  bool identity = true;
  for (std::size_t i = 0; i < permutation.size(); ++i) identity = identity && permutation[i] == static_cast<std::int64_t>(i);
  const Tensor xt = identity ? p[0] : transpose(p[0], permutation);
  const Tensor y = batch.empty() ? matmul(reshape(xt, {n_free, n_in}), reshape(p[1], {n_in, n_features}),
                                          options_.precision)
                                 : matmul(reshape(xt, {n_batch, n_free, n_in}),
                                          reshape(p[1], {n_batch, n_in, n_features}), options_.precision);
  Shape out_shape = batch_shape;
  out_shape.insert(out_shape.end(), free_shape.begin(), free_shape.end());
  out_shape.insert(out_shape.end(), options_.features.begin(), options_.features.end());
  Tensor out = reshape(y, out_shape);
  if (!options_.use_bias) return out;
  Shape bias_view = batch_shape;
  bias_view.insert(bias_view.end(), free_shape.size(), 1);
  bias_view.insert(bias_view.end(), options_.features.begin(), options_.features.end());
  return out + reshape(p[2], bias_view);
}

std::optional<StateDict> DenseGeneral::per_example_param_grads(const Tensor& x, const Tensor&, const Tensor& g) const {
  if (!options_.batch_dims.empty() || x.dim() < 2) return std::nullopt;
  const std::int64_t rank = x.dim();
  std::vector<std::int64_t> axis;
  for (auto a : options_.axis) axis.push_back(normalize_axis(a, rank, "axis"));
  if (std::count(axis.begin(), axis.end(), 0) > 0) return std::nullopt;  // contracts over the examples
  // As forward: [free..., contracted...] with the free axes (axis 0 first) as rows.
  std::vector<std::int64_t> permutation;
  for (std::int64_t a = 0; a < rank; ++a)
    if (std::count(axis.begin(), axis.end(), a) == 0) permutation.push_back(a);
  Shape kernel_shape{x.size(0)};
  std::int64_t n_in = 1;
  for (auto a : axis) {
    permutation.push_back(a);
    kernel_shape.push_back(x.size(a));
    n_in *= x.size(a);
  }
  kernel_shape.insert(kernel_shape.end(), options_.features.begin(), options_.features.end());
  const std::int64_t batch = x.size(0), n_features = numel(options_.features);
  const Tensor rows_in = reshape(transpose(cast(x, g.dtype()), permutation), {batch, -1, n_in});
  const Tensor rows_out = reshape(g, {batch, -1, n_features});
  StateDict out;
  out["kernel"] = cast(reshape(matmul(swapaxes(rows_in, 1, 2), rows_out), kernel_shape),
                       find_parameter("kernel").dtype());
  if (options_.use_bias) {
    Shape bias_shape{batch};
    bias_shape.insert(bias_shape.end(), options_.features.begin(), options_.features.end());
    out["bias"] = cast(reshape(sum(rows_out, {1}), bias_shape), find_parameter("bias").dtype());
  }
  return out;
}

}  // namespace xgrad::nn
