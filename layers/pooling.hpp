// Pooling functions, as flax.linen.pooling: inputs are [batch..., spatial...,
// channels] with as many spatial dims as the window has; no batch dim, one, or
// several (flattened and restored), channels last.
//
//   Tensor y = nn::max_pool(x, {2, 2}, {2, 2});                  // VALID by default
//   Tensor z = nn::avg_pool(x, {3, 3}, {1, 1}, "SAME", false);   // padding not counted
//   Tensor w = nn::avg_pool(x, {3, 3}, {}, {{1, 1}, {1, 1}});     // explicit (lo, hi) pairs
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad::nn {

// "VALID", "SAME" (lax.padtype_to_pads: out = ceil(in / stride), the odd unit of
// padding at the end) or one (lo, hi) pair per spatial dim.
struct PoolPadding {
  std::string name;
  std::vector<std::pair<std::int64_t, std::int64_t>> pairs;
  PoolPadding(const char* padding) : name(padding) {}
  PoolPadding(std::string padding) : name(std::move(padding)) {}
  PoolPadding(std::vector<std::pair<std::int64_t, std::int64_t>> explicit_pairs) : pairs(std::move(explicit_pairs)) {}
  PoolPadding(std::initializer_list<std::pair<std::int64_t, std::int64_t>> explicit_pairs) : pairs(explicit_pairs) {}
};

// Empty strides mean 1 along every spatial dim. Padded positions never win a max
// (or min); the gradient goes to the first extreme element of each window.
Tensor max_pool(const Tensor& x, const Shape& window_shape, const Shape& strides = {},
                const PoolPadding& padding = "VALID");
Tensor min_pool(const Tensor& x, const Shape& window_shape, const Shape& strides = {},
                const PoolPadding& padding = "VALID");
// count_include_pad: divide by the window size (true) or by the number of
// non-padding elements in each window (false).
Tensor avg_pool(const Tensor& x, const Shape& window_shape, const Shape& strides = {},
                const PoolPadding& padding = "VALID", bool count_include_pad = true);

}  // namespace xgrad::nn
