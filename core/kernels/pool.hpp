// Pooling kernels (no tape) over [batch, spatial..., channels] tensors, the
// layout flax.linen.pooling uses after flattening batch dims.
#pragma once

#include <optional>

#include <cstdint>
#include <utility>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad::kernels {

// Where each output position reads: for output position o (row-major over the
// output spatial dims), the input spatial positions of its window that are not
// padding, in window row-major order.
struct PoolGeometry {
  std::int64_t batch = 0, channels = 0;
  Shape in_spatial, out_spatial;
  std::int64_t window_size = 0;                 // product of the window shape
  std::vector<std::int64_t> tap_start;          // taps of o are taps[tap_start[o] .. tap_start[o + 1])
  std::vector<std::int64_t> taps;               // flat input spatial positions
  bool disjoint = false;                        // no input position is in two windows (stride >= window)
  std::vector<std::int64_t> uncovered;          // if disjoint: the input positions in no window
  std::int64_t in_positions() const { return numel(in_spatial); }
  std::int64_t out_positions() const { return numel(out_spatial); }
};

// `x_shape` is [batch, spatial..., channels]; pads are (lo, hi) per spatial dim.
// Output size per dim: max(0, floor((in + lo + hi - window) / stride) + 1).
PoolGeometry pool_geometry(const Shape& x_shape, const Shape& window, const Shape& strides,
                           const PadPairs& pads);

// Max (or min) over each window; also the flat index into x of the first extreme
// element of each output (Int32 when x has at most 2^31 - 1 elements, else Int64;
// -1 for a window made only of padding, whose value is -inf for max, +inf for min,
// as reduce_window's init value).
std::pair<Tensor, Tensor> pool_select(const Tensor& x, const PoolGeometry& g, bool take_max);

// pool_select plus, for forward mode, the tangent t (shaped like x) at each window's
// selected element, from the same pass: out_tangent = gather_flat(t, index).
// std::nullopt where no such kernel exists (only float32 with 8 to 64 channels, a
// multiple of 8, on AVX2 CPUs): the caller then gathers. With `mask_positive` the
// tangent is zero where the selected value is not > 0 (relu's rule, for x = relu(z)
// and t the tangent of z: the selected element's mask is its value > 0).
struct PoolSelection {
  Tensor out, index, out_tangent;
};
std::optional<PoolSelection> pool_select_with_tangent(const Tensor& x, const Tensor& t, const PoolGeometry& g,
                                                      bool take_max, bool mask_positive = false);

// Window sums divided by the window size (count_include_pad) or by the number of
// non-padding elements; and its transpose, which spreads each output's cotangent
// back over its window (the VJP of avg_pool).
Tensor avg_pool(const Tensor& x, const PoolGeometry& g, bool count_include_pad);
Tensor avg_pool_transpose(const Tensor& grad_out, const PoolGeometry& g, bool count_include_pad);

// The transpose of pool_select's selection: zeros shaped like x with each output's
// value added at its index. With disjoint windows every element of x is written once
// (no zero fill, no read-modify-write); otherwise it is scatter_add_flat.
Tensor pool_select_transpose(const Tensor& values, const Tensor& indices, const PoolGeometry& g);

// out[i] = x.flat[indices[i]] (0 where the index is -1; Int32 or Int64 indices),
// shaped like indices; and its transpose: out = zeros(shape), out.flat[indices[i]] += values[i].
Tensor gather_flat(const Tensor& x, const Tensor& indices);
Tensor scatter_add_flat(const Tensor& values, const Tensor& indices, const Shape& shape);

}  // namespace xgrad::kernels
