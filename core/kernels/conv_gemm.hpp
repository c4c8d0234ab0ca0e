// Row-major C = op(A) * op(B) on raw float/double buffers through cblas (the only
// place the conv kernels touch <cblas.h>; keep it out of TUs that include xtensor-blas).
#pragma once

#include <cstdint>

namespace xgrad::kernels {

// C (m x n, leading dimension ldc) = op(A) (m x k) * op(B) (k x n), where op
// transposes when asked; with `accumulate`, C += op(A) * op(B). T is float or double.
template <class T>
void conv_gemm(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
               std::int64_t lda, const T* b, std::int64_t ldb, T* c, std::int64_t ldc, bool accumulate = false);

// While alive, OpenBLAS runs single-threaded, for GEMMs issued from a parallel
// region of the caller's own (its pool would oversubscribe the cores); restores
// xgrad::num_threads() after.
class SerialBlasScope {
 public:
  SerialBlasScope();
  ~SerialBlasScope();
  SerialBlasScope(const SerialBlasScope&) = delete;
  SerialBlasScope& operator=(const SerialBlasScope&) = delete;
};

}  // namespace xgrad::kernels
