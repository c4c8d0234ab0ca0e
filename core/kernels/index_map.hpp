// Gathers through per-axis index maps, and the adjoint scatter-add. The map of
// axis a sends output index i to input index map_a[i], or -1 for "no source"
// (pad, fill and crop are all such maps).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad::kernels {

using AxisMaps = std::vector<std::vector<std::int64_t>>;  // one map per axis of x

// out[i...] = x[map_0[i_0], ..., map_{r-1}[i_{r-1}]], or `fill` where any map
// entry is -1. out's shape is the maps' lengths.
Tensor gather_axes(const Tensor& x, const AxisMaps& maps, double fill);

// The adjoint of gather_axes: dx (shape x_shape, zeros first) gets
// dx[map_0[i_0], ...] += g[i...] for every entry with a source. Floating dtypes;
// 16-bit floats accumulate in float32.
Tensor scatter_add_axes(const Tensor& g, const AxisMaps& maps, const Shape& x_shape);

}  // namespace xgrad::kernels
