// Shape ops and their VJPs. Ops that only relabel the shape (squeeze, unsqueeze,
// flatten, stack's new axis) are reshapes and inherit reshape's VJP.
#include <algorithm>

#include <fmt/format.h>

#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "autograd/tangents.hpp"
#include "core/kernels/shape_ops.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad {

namespace {

Tensor slice_range(const Tensor& x, std::int64_t axis, const kernels::SliceRange& range);

// The transpose of slicing: g written into zeros of `shape`. Linear, so its VJP is the slice itself.
Tensor scatter_slice(const Tensor& g, const Shape& shape, std::int64_t axis, const kernels::SliceRange& range) {
  Tensor out = kernels::slice_scatter(g, shape, axis, range);
  return record("scatter_slice", out, {g}, [axis, range](const Tensor& gg, const Tensor&) -> Grads {
    return {slice_range(gg, axis, range)};
  }, Saves::Nothing, [&](const Grads&, const Grads& t, const Tensor&) { return scatter_slice(t[0], shape, axis, range); });
}

Tensor slice_range(const Tensor& x, std::int64_t axis, const kernels::SliceRange& range) {
  Tensor out = kernels::slice(x, axis, range);
  return record("slice", out, {x}, [shape = x.shape(), axis, range](const Tensor& g, const Tensor&) -> Grads {
    return {scatter_slice(g, shape, axis, range)};
  }, Saves::Nothing, [&](const Grads&, const Grads& t, const Tensor&) { return slice_range(t[0], axis, range); });
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  Tensor out = kernels::reshape(x, shape);
  VJP vjp = [from = x.shape()](const Tensor& g, const Tensor&) -> Grads { return {reshape(g, from)}; };
  // Forward mode: relu's deferred mask (tangent * (x > 0)) is elementwise, so it
  // stays deferred through a reshape, for a pool after it (layers reshape first).
  if (const Tensor raw = forward_ad::fusable_masked_tangent(x); raw.defined()) {
    out = forward_ad::record_with_tangent("reshape", out, {x}, std::move(vjp), Saves::Nothing, Tensor());
    if (out.impl() == x.impl()) out = out.detach();  // x keeps its own tangent
    forward_ad::set_tangent_masked_by_positive(out, kernels::reshape(raw, shape));
    return out;
  }
  return record("reshape", out, {x}, std::move(vjp), Saves::Nothing,
                [&](const Grads&, const Grads& t, const Tensor&) { return reshape(t[0], shape); });
}

Tensor transpose(const Tensor& x, const std::vector<std::int64_t>& permutation) {
  Tensor out = kernels::transpose(x, permutation);  // validates the permutation
  std::vector<std::int64_t> inverse(permutation.size());
  for (std::size_t k = 0; k < permutation.size(); ++k) {
    const std::int64_t a = permutation[k] < 0 ? permutation[k] + x.dim() : permutation[k];
    inverse[static_cast<std::size_t>(a)] = static_cast<std::int64_t>(k);
  }
  return record("transpose", out, {x}, [inverse](const Tensor& g, const Tensor&) -> Grads {
    return {transpose(g, inverse)};
  }, Saves::Nothing, [&](const Grads&, const Grads& t, const Tensor&) { return transpose(t[0], permutation); });
}

Tensor transpose(const Tensor& x) {
  std::vector<std::int64_t> reversed;
  for (std::int64_t a = x.dim(); a-- > 0;) reversed.push_back(a);
  return transpose(x, reversed);
}

Tensor swapaxes(const Tensor& x, std::int64_t a, std::int64_t b) {
  std::vector<std::int64_t> permutation;
  for (std::int64_t k = 0; k < x.dim(); ++k) permutation.push_back(k);
  if (x.dim() == 0)
    throw ShapeError(fmt::format("swapaxes: axes {} and {} are out of range for a tensor of rank 0", a, b));
  std::swap(permutation[static_cast<std::size_t>(normalize_axis(a, x.dim(), "swapaxes"))],
            permutation[static_cast<std::size_t>(normalize_axis(b, x.dim(), "swapaxes"))]);
  return transpose(x, permutation);
}

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  Tensor out = x.shape() == shape ? x.detach() : kernels::broadcast_to(x, shape);
  return record("broadcast_to", out, {x}, [from = x.shape()](const Tensor& g, const Tensor&) -> Grads {
    return {sum_to(g, from)};
  }, Saves::Nothing, [&](const Grads&, const Grads& t, const Tensor&) { return broadcast_to(t[0], shape); });
}

Tensor squeeze(const Tensor& x, const Axes& axes) {
  const Shape& shape = x.shape();
  Shape kept;
  if (axes.empty()) {
    for (auto d : shape)
      if (d != 1) kept.push_back(d);
    return reshape(x, kept);
  }
  const auto norm = normalize_axes(axes, x.dim(), "squeeze");
  for (std::size_t d = 0; d < shape.size(); ++d) {
    const bool listed = std::find(norm.begin(), norm.end(), static_cast<std::int64_t>(d)) != norm.end();
    if (listed && shape[d] != 1)
      throw ShapeError(fmt::format("squeeze: cannot squeeze axis {} of shape {}: its size is {}, not 1", d,
                                   shape_str(shape), shape[d]));
    if (!listed) kept.push_back(shape[d]);
  }
  return reshape(x, kept);
}

Tensor unsqueeze(const Tensor& x, std::int64_t axis) {
  Shape shape = x.shape();
  const std::int64_t a = normalize_axis(axis, x.dim() + 1, "unsqueeze");
  shape.insert(shape.begin() + a, 1);
  return reshape(x, shape);
}

Tensor flatten(const Tensor& x, std::int64_t start_axis, std::int64_t end_axis) {
  if (x.dim() == 0) return reshape(x, {1});
  const std::int64_t start = normalize_axis(start_axis, x.dim(), "flatten");
  const std::int64_t end = normalize_axis(end_axis, x.dim(), "flatten");
  if (start > end)
    throw ShapeError(fmt::format("flatten: start axis {} comes after end axis {} (shape {})", start_axis, end_axis,
                                 shape_str(x.shape())));
  const Shape& s = x.shape();
  Shape shape(s.begin(), s.begin() + start);
  shape.push_back(numel(Shape(s.begin() + start, s.begin() + end + 1)));
  shape.insert(shape.end(), s.begin() + end + 1, s.end());
  return reshape(x, shape);
}

Tensor slice(const Tensor& x, std::int64_t axis, std::int64_t start, std::int64_t stop, std::int64_t step) {
  if (x.dim() == 0) throw ShapeError("slice: cannot slice a 0-d tensor");
  const std::int64_t a = normalize_axis(axis, x.dim(), "slice");
  return slice_range(x, a, kernels::resolve_slice(x.size(a), start, stop, step));
}

Tensor concat(const std::vector<Tensor>& xs, std::int64_t axis) {
  Tensor out = kernels::concat(xs, axis);  // validates shapes and the axis
  const std::int64_t a = normalize_axis(axis, out.dim(), "concat");
  std::vector<std::int64_t> sizes;
  for (const Tensor& x : xs) sizes.push_back(x.size(a));
  // Each input's gradient is its block of g along the axis.
  return record("concat", out, xs, [a, sizes](const Tensor& g, const Tensor&) -> Grads {
    Grads grads;
    std::int64_t start = 0;
    for (std::int64_t size : sizes) {
      grads.push_back(slice_range(g, a, {start, 1, size}));
      start += size;
    }
    return grads;
  }, Saves::Nothing, [&](const Grads& in, const Grads& t, const Tensor&) {  // the inputs' tangents, concatenated
    std::vector<Tensor> parts;
    for (std::size_t i = 0; i < in.size(); ++i) parts.push_back(tangents::or_zeros(t[i], in[i]));
    return concat(parts, a);
  });
}

Tensor stack(const std::vector<Tensor>& xs, std::int64_t axis) {
  if (xs.empty()) throw ValueError("stack: needs at least one tensor");
  for (std::size_t j = 1; j < xs.size(); ++j)
    if (xs[j].shape() != xs[0].shape())
      throw ShapeError(fmt::format("stack: tensor {} has shape {} but tensor 0 has shape {} (stack needs equal shapes)",
                                   j, shape_str(xs[j].shape()), shape_str(xs[0].shape())));
  const std::int64_t a = normalize_axis(axis, xs[0].dim() + 1, "stack");
  std::vector<Tensor> expanded;
  for (const Tensor& x : xs) expanded.push_back(unsqueeze(x, a));
  return concat(expanded, a);
}

}  // namespace xgrad
