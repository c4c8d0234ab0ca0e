// Reduction kernels (no tape).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad::kernels {

// Sum over `axes` (normalised, sorted, non-empty-or-all). Accumulates in the
// compute type; bool and integer inputs sum in Int64 / their own dtype.
Tensor sum(const Tensor& x, const std::vector<std::int64_t>& axes, bool keepdims);

// The shape a reduction over `axes` produces.
Shape reduced_shape(const Shape& shape, const std::vector<std::int64_t>& axes, bool keepdims);

}  // namespace xgrad::kernels
