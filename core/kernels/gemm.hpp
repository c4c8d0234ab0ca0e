// Row-major C = op(A) * op(B) on raw float/double buffers through cblas (the only
// place the kernels touch <cblas.h>; keep it out of TUs that include xtensor-blas).
// Large products are cut into pieces fixed by the shape and run on xgrad's pool
// (OpenBLAS single-threaded inside each), so the result is the same at any thread
// count; called from inside a parallel_for it runs on its caller.
#pragma once

#include <cstdint>

namespace xgrad::kernels {

// C (m x n, leading dimension ldc) = op(A) (m x k) * op(B) (k x n), where op
// transposes when asked; with `accumulate`, C += op(A) * op(B). T is float or double.
template <class T>
void gemm(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
               std::int64_t lda, const T* b, std::int64_t ldb, T* c, std::int64_t ldc, bool accumulate = false);


}  // namespace xgrad::kernels
