// Elementwise kernels (no tape): dtype promotion, broadcasting, tight loops.
#pragma once

#include "core/tensor.hpp"

namespace xgrad::kernels {

Tensor cast(const Tensor& x, DType dtype);  // returns x itself when the dtype already matches

enum class Binary { Add, Sub, Mul, Div };

// Promotes a and b to their common dtype, broadcasts, and applies op.
Tensor binary(Binary op, const Tensor& a, const Tensor& b);

}  // namespace xgrad::kernels
