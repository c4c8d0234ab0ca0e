// Matrix product kernel (no tape).
#pragma once

#include "core/tensor.hpp"

namespace xgrad::kernels {

// Batched matrix product of operands of rank >= 2: a[..., m, k] . b[..., k, n] gives
// [broadcast(...), m, n] in the promoted dtype. transpose_a / transpose_b read an
// operand's last two axes swapped (BLAS's transpose flags), without copying it.
// float32/float64 run on cblas_sgemm/dgemm, float16/bfloat16 through sgemm in
// float32 (rounded once on store), integers and bool in a plain loop.
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);

}  // namespace xgrad::kernels
