// Shape ops and their VJPs.
#include <fmt/format.h>

#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "core/kernels/elementwise.hpp"
#include "core/kernels/shape_ops.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad {

Tensor reshape(const Tensor& x, const Shape& shape) {
  Tensor out = kernels::reshape(x, shape);
  return record("reshape", out, {x}, [from = x.shape()](const Tensor& g, const Tensor&) -> Grads {
    return {reshape(g, from)};
  }, Saves::Nothing);
}

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  if (broadcast_shapes(x.shape(), shape, "broadcast_to") != shape)
    throw ShapeError(fmt::format("broadcast_to: {} cannot be broadcast to {}", shape_str(x.shape()), shape_str(shape)));
  // Adding zeros reuses the broadcasting binary kernel.
  Tensor out = kernels::binary(kernels::Binary::Add, x, zeros(shape, x.dtype()));
  return record("broadcast_to", out, {x}, [from = x.shape()](const Tensor& g, const Tensor&) -> Grads {
    return {sum_to(g, from)};
  }, Saves::Nothing);
}

}  // namespace xgrad
