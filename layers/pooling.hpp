// Pooling functions, as flax.linen.pooling: inputs are [batch..., spatial...,
// channels] with as many spatial dims as the window has; no batch dim, one, or
// several (flattened and restored), channels last.
//
//   Tensor y = nn::max_pool(x, {2, 2}, {2, 2});                  // VALID by default
//   Tensor z = nn::avg_pool(x, {3, 3}, {1, 1}, "SAME", false);   // padding not counted
//   Tensor w = nn::avg_pool(x, {3, 3}, {}, {{1, 1}, {1, 1}});     // explicit (lo, hi) pairs
//
// padding (core/padding.hpp): "VALID", "SAME" or "SAME_LOWER" (lax.padtype_to_pads,
// any case), one (lo, hi) pair or int per spatial dim, or one int for every dim.
#pragma once

#include "core/padding.hpp"
#include "core/tensor.hpp"

namespace xgrad::nn {

// Empty strides mean 1 along every spatial dim. Padded positions never win a max
// (or min); the gradient goes to the first extreme element of each window.
Tensor max_pool(const Tensor& x, const Shape& window_shape, const Shape& strides = {},
                const Padding& padding = "VALID");
// As max_pool, with the minimum of each window.
Tensor min_pool(const Tensor& x, const Shape& window_shape, const Shape& strides = {},
                const Padding& padding = "VALID");
// count_include_pad: divide by the window size (true) or by the number of
// non-padding elements in each window (false).
Tensor avg_pool(const Tensor& x, const Shape& window_shape, const Shape& strides = {},
                const Padding& padding = "VALID", bool count_include_pad = true);

}  // namespace xgrad::nn
