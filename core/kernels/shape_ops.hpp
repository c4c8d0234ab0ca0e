// Shape kernels (no tape): reshape, transpose, broadcast, slice, concat.
// Every result is a fresh row-major tensor (xgrad has no strided views).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad::kernels {

// Same elements, new shape (a copy: every tensor owns a row-major xarray of its own shape).
Tensor reshape(const Tensor& x, const Shape& shape);

// Resolves one -1 entry and checks the element count; throws ShapeError naming `op`.
Shape infer_reshape(const Shape& from, const Shape& to, const char* op);

// out.shape[k] = x.shape[permutation[k]]; throws ShapeError unless `permutation`
// is a permutation of x's axes (negative entries allowed).
Tensor transpose(const Tensor& x, const std::vector<std::int64_t>& permutation);

// Repeats x along new leading axes and along its size-1 axes (any dtype); throws
// ShapeError naming `op` unless `shape` is a broadcast of x's shape.
Tensor broadcast_to(const Tensor& x, const Shape& shape, const char* op = "broadcast_to");

// A Python slice start:stop:step resolved against an axis of a given size.
struct SliceRange {
  std::int64_t start = 0, step = 1, length = 0;
};
// Clamps as Python's slice.indices does; throws ValueError for step 0.
SliceRange resolve_slice(std::int64_t size, std::int64_t start, std::int64_t stop, std::int64_t step);

// x[..., range, ...] along (normalised) `axis`.
Tensor slice(const Tensor& x, std::int64_t axis, const SliceRange& range);
// The transpose of slice: zeros of `shape` with `g` written at the sliced positions.
Tensor slice_scatter(const Tensor& g, const Shape& shape, std::int64_t axis, const SliceRange& range);

// Joins tensors of equal shapes (except along `axis`) in their promoted dtype.
Tensor concat(const std::vector<Tensor>& xs, std::int64_t axis);

}  // namespace xgrad::kernels
