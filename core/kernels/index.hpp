// Indexing kernels (no tape): pad, take, take_along_axis, one_hot, and the
// scatter-adds that are their transposes (the VJPs of the gathers).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/pad_mode.hpp"
#include "core/tensor.hpp"

namespace xgrad::kernels {


// numpy.pad semantics for positive pads, any pad size; negative pads crop (the
// result is the window [-lo, M + hi) of x's infinite extension by `mode`).
Tensor pad(const Tensor& x, const PadPairs& pads, PadMode mode, double value);
// Adds every element of g (pad's output shape) into the x element it was read from.
Tensor pad_scatter_add(const Tensor& g, const Shape& x_shape, const PadPairs& pads, PadMode mode);

// numpy.take along `axis` with integer indices of any shape; negative indices
// count from the end once; out of range throws ShapeError.
Tensor take(const Tensor& x, const Tensor& indices, std::int64_t axis);
Tensor take_scatter_add(const Tensor& g, const Tensor& indices, const Shape& x_shape, std::int64_t axis);

// numpy.take_along_axis: indices has x's rank; other axes broadcast against x.
Tensor take_along_axis(const Tensor& x, const Tensor& indices, std::int64_t axis);
Tensor take_along_axis_scatter_add(const Tensor& g, const Tensor& indices, const Shape& x_shape, std::int64_t axis);

// labels.shape + [num_classes]; labels outside [0, num_classes) give all-zero rows.
Tensor one_hot(const Tensor& labels, std::int64_t num_classes, DType dtype);

}  // namespace xgrad::kernels
