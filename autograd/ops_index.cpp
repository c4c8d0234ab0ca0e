// Padding and gathers, and their VJPs: each gather's transpose is a scatter-add,
// itself a recorded linear op whose VJP is the gather again (so create_graph works).
#include <fmt/format.h>

#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "core/kernels/index.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad {

namespace {

// Index tensors a VJP reads. They are not recorded as inputs (the saved-input
// check would then also reject in-place updates of x, which no VJP here reads);
// their version is checked here instead, so that modifying them before backward
// is an error rather than a wrong gradient.
struct SavedIndices {
  Tensor indices;
  std::uint64_t version;
  const char* op;

  explicit SavedIndices(const Tensor& t, const char* op_name) : indices(t), version(t.version()), op(op_name) {}
  const Tensor& get() const {
    if (indices.version() != version)
      throw AutogradError(fmt::format("backward: the indices (shape {}) of '{}' were modified in place after the "
                                      "forward pass (version {} when saved, {} now)",
                                      shape_str(indices.shape()), op, version, indices.version()));
    return indices;
  }
};

Tensor pad_scatter_add(const Tensor& g, const Shape& x_shape, const kernels::Pads& pads, PadMode mode) {
  Tensor out = kernels::pad_scatter_add(g, x_shape, pads, mode);
  return record("pad_scatter_add", out, {g}, [pads, mode](const Tensor& gg, const Tensor&) -> Grads {
    return {pad(gg, pads, mode, 0.0)};
  }, Saves::Nothing);
}

Tensor take_scatter_add(const Tensor& g, const SavedIndices& indices, const Shape& x_shape, std::int64_t axis) {
  Tensor out = kernels::take_scatter_add(g, indices.get(), x_shape, axis);
  return record("take_scatter_add", out, {g}, [indices, axis](const Tensor& gg, const Tensor&) -> Grads {
    return {take(gg, indices.get(), axis)};
  }, Saves::Nothing);
}

Tensor take_along_axis_scatter_add(const Tensor& g, const SavedIndices& indices, const Shape& x_shape,
                                   std::int64_t axis) {
  Tensor out = kernels::take_along_axis_scatter_add(g, indices.get(), x_shape, axis);
  return record("take_along_axis_scatter_add", out, {g}, [indices, axis](const Tensor& gg, const Tensor&) -> Grads {
    return {take_along_axis(gg, indices.get(), axis)};
  }, Saves::Nothing);
}

}  // namespace

Tensor pad(const Tensor& x, const std::vector<std::pair<std::int64_t, std::int64_t>>& pads, PadMode mode,
           double value) {
  Tensor out = kernels::pad(x, pads, mode, value);
  // Every output element is a copy of one x element (or the constant), so the
  // gradient adds each g element back into the element it was copied from.
  return record("pad", out, {x}, [shape = x.shape(), pads, mode](const Tensor& g, const Tensor&) -> Grads {
    return {pad_scatter_add(g, shape, pads, mode)};
  }, Saves::Nothing);
}

Tensor take(const Tensor& x, const Tensor& indices, std::int64_t axis) {
  Tensor out = kernels::take(x, indices, axis);
  return record("take", out, {x}, [shape = x.shape(), saved = SavedIndices(indices, "take"), axis](
                                      const Tensor& g, const Tensor&) -> Grads {
    return {take_scatter_add(g, saved, shape, axis)};
  }, Saves::Nothing);
}

Tensor take_along_axis(const Tensor& x, const Tensor& indices, std::int64_t axis) {
  Tensor out = kernels::take_along_axis(x, indices, axis);
  return record("take_along_axis", out, {x}, [shape = x.shape(), saved = SavedIndices(indices, "take_along_axis"),
                                              axis](const Tensor& g, const Tensor&) -> Grads {
    return {take_along_axis_scatter_add(g, saved, shape, axis)};
  }, Saves::Nothing);
}

Tensor one_hot(const Tensor& labels, std::int64_t num_classes, DType dtype) {
  return kernels::one_hot(labels, num_classes, dtype);
}

}  // namespace xgrad
