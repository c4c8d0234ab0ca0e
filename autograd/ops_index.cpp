// Padding and gathers, and their VJPs: each gather's transpose is a scatter-add,
// itself a recorded linear op whose VJP is the gather again (so create_graph works).
#include <algorithm>
#include <string>

#include <fmt/format.h>

#include "autograd/grad_mode.hpp"

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

Tensor pad_scatter_add(const Tensor& g, const Shape& x_shape, const PadPairs& pads, PadMode mode) {
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

Tensor pad(const Tensor& x, const PadPairs& pads, PadMode mode,
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

// ---- x.at(index): JAX's functional index updates (core/tensor.hpp)

namespace {

// x[index] for a prefix index: a contiguous block of the row-major buffer.
struct IndexBlock {
  Shape sub_shape;          // x.shape() without the indexed axes
  std::int64_t rows = 1;    // number of such blocks in x
  std::int64_t row = 0;     // which one the index selects
  std::int64_t size = 1;    // elements per block
};

IndexBlock resolve_index(const Tensor& x, const Shape& index, const std::string& op) {
  if (!x.defined()) throw ValueError(fmt::format("{}: the tensor is undefined", op));
  const Shape& s = x.shape();
  if (index.size() > s.size())
    throw ShapeError(fmt::format("{}: index {} has {} entries but the tensor of shape {} has {} axes", op,
                                 shape_str(index), index.size(), shape_str(s), s.size()));
  IndexBlock b;
  b.sub_shape.assign(s.begin() + static_cast<std::ptrdiff_t>(index.size()), s.end());
  b.size = numel(b.sub_shape);
  for (std::size_t i = 0; i < index.size(); ++i) {
    const std::int64_t k = index[i] < 0 ? index[i] + s[i] : index[i];
    if (k < 0 || k >= s[i])
      throw ShapeError(fmt::format("{}: index {} is out of bounds for shape {} (axis {} has size {})", op,
                                   shape_str(index), shape_str(s), i, s[i]));
    b.row = b.row * s[i] + k;
    b.rows *= s[i];
  }
  return b;
}

void check_broadcasts_to(const Tensor& value, const IndexBlock& b, const Tensor& x, const std::string& op) {
  if (!value.defined()) throw ValueError(fmt::format("{}: the value is undefined", op));
  const Shape& v = value.shape();
  bool ok = v.size() <= b.sub_shape.size();
  for (std::size_t i = 1; ok && i <= v.size(); ++i) {
    const std::int64_t dv = v[v.size() - i], dt = b.sub_shape[b.sub_shape.size() - i];
    ok = dv == dt || dv == 1;
  }
  if (!ok)
    throw ShapeError(fmt::format("{}: value of shape {} does not broadcast to the selected {} of the tensor of "
                                 "shape {}",
                                 op, shape_str(v), shape_str(b.sub_shape), shape_str(x.shape())));
}

std::string op_name(const Shape& index, const char* what) { return fmt::format("at({}).{}", shape_str(index), what); }

// A copy of x whose selected block is `block` (x's dtype, the block's shape). Not recorded.
Tensor with_block(const Tensor& x, const IndexBlock& b, const Tensor& block) {
  Tensor out = x.clone();
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    std::copy_n(block.data<T>(), b.size, out.data<T>() + b.row * b.size);
  });
  return out;
}

// Records an update (set or add) of x's block by value: the gradient reaching the
// block goes to value (summed down to its shape), the rest to x.
Tensor record_update(const char* op, Tensor out, const Tensor& x, const Tensor& value, const Shape& index,
                     bool keeps_x_in_block) {
  if (!is_floating(x.dtype())) return out;  // no gradient through an integer result
  return record(op, out, {x, value},
                [index, value_shape = value.shape(), keeps_x_in_block](const Tensor& g, const Tensor&) -> Grads {
                  const Tensor g_block = g.at(index).get();
                  return {keeps_x_in_block ? g : g.at(index).set(0.0), sum_to(g_block, value_shape)};
                },
                Saves::Nothing);
}

// x.at(index).set(value) or, with `adds`, .add(value): the forward unrecorded, then
// one recorded update.
Tensor update(const Tensor& x, const Shape& index, const Tensor& value, bool adds) {
  const std::string op = op_name(index, adds ? "add" : "set");
  const IndexBlock b = resolve_index(x, index, op);
  check_broadcasts_to(value, b, x, op);
  Tensor out;
  {
    NoGradGuard forward_only;
    const Tensor block = adds ? x.at(index).get() + value : value;
    out = with_block(x, b, cast(broadcast_to(block, b.sub_shape), x.dtype()));
  }
  return record_update(adds ? "at_add" : "at_set", out, x, value, index, /*keeps_x_in_block=*/adds);
}

}  // namespace

Tensor IndexRef::get() const {
  const IndexBlock b = resolve_index(x_, index_, op_name(index_, "get"));
  return reshape(slice(reshape(x_, {b.rows, b.size}), 0, b.row, b.row + 1), b.sub_shape);
}

Tensor IndexRef::set(const Tensor& value) const { return update(x_, index_, value, /*adds=*/false); }
Tensor IndexRef::add(const Tensor& value) const { return update(x_, index_, value, /*adds=*/true); }
Tensor IndexRef::set(double value) const { return set(scalar(value, x_.dtype())); }
Tensor IndexRef::add(double value) const { return add(scalar(value, x_.dtype())); }

}  // namespace xgrad
