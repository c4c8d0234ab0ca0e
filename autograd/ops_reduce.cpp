// Reductions and their VJPs.
#include <fmt/format.h>

#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "core/kernels/reduce.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad {

Tensor sum(const Tensor& x, const Axes& axes, bool keepdims) {
  const auto norm = normalize_axes(axes, x.dim(), "sum");
  Tensor out = kernels::sum(x, norm, keepdims);
  // The gradient of a sum broadcasts the cotangent back over the reduced axes.
  return record("sum", out, {x}, [shape = x.shape(), kept = kernels::reduced_shape(x.shape(), norm, true)](
                                     const Tensor& g, const Tensor&) -> Grads {
    return {broadcast_to(reshape(g, kept), shape)};
  }, Saves::Nothing);
}

Tensor mean(const Tensor& x, const Axes& axes, bool keepdims) {
  const auto norm = normalize_axes(axes, x.dim(), "mean");
  std::int64_t count = 1;
  for (auto a : norm) count *= x.shape()[static_cast<std::size_t>(a)];
  const Tensor total = sum(is_floating(x.dtype()) ? x : cast(x, default_float_dtype()), norm, keepdims);
  return total / static_cast<double>(count);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const std::size_t lead = x.shape().size() - shape.size();
  if (x.shape().size() < shape.size())
    throw ShapeError(fmt::format("sum_to: cannot sum {} down to the larger rank of {}", shape_str(x.shape()),
                                 shape_str(shape)));
  Axes axes;
  for (std::size_t i = 0; i < x.shape().size(); ++i) {
    if (i < lead) {
      axes.push_back(static_cast<std::int64_t>(i));
    } else if (shape[i - lead] == 1 && x.shape()[i] != 1) {
      axes.push_back(static_cast<std::int64_t>(i));
    } else if (shape[i - lead] != x.shape()[i]) {
      throw ShapeError(fmt::format("sum_to: shape {} is not a broadcast of {}", shape_str(x.shape()),
                                   shape_str(shape)));
    }
  }
  return reshape(sum(x, axes, false), shape);
}

}  // namespace xgrad
