// Matrix products at a layer's `precision` (core/precision.hpp).
#pragma once

#include "core/precision.hpp"
#include "core/tensor.hpp"

namespace xgrad::nn {

// a @ b (NumPy matmul rules). Highest computes 16/32-bit floats in float64 and
// rounds the result once to the promoted dtype; Default and High are plain matmul.
Tensor matmul(const Tensor& a, const Tensor& b, Precision precision);

}  // namespace xgrad::nn
