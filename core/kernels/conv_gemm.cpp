#include "core/kernels/conv_gemm.hpp"

#include <cblas.h>

#include <climits>
#include <string>

#include "core/error.hpp"
#include "core/threading.hpp"

namespace xgrad::kernels {

namespace {

blasint blas_int(std::int64_t v) {
  if (v > INT_MAX)
    throw ValueError("conv: a GEMM dimension of " + std::to_string(v) +
                     " exceeds the BLAS integer range; use a smaller batch");
  return static_cast<blasint>(v);
}

}  // namespace

template <class T>
void conv_gemm(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
               std::int64_t lda, const T* b, std::int64_t ldb, T* c, std::int64_t ldc, bool accumulate) {
  if (m == 0 || n == 0 || (k == 0 && accumulate)) return;
  if (k == 0) {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = T(0);
    return;
  }
  const auto ta = transpose_a ? CblasTrans : CblasNoTrans;
  const auto tb = transpose_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, blas_int(m), blas_int(n), blas_int(k), 1.0f, a, blas_int(lda), b,
                blas_int(ldb), accumulate ? 1.0f : 0.0f, c, blas_int(ldc));
  else
    cblas_dgemm(CblasRowMajor, ta, tb, blas_int(m), blas_int(n), blas_int(k), 1.0, a, blas_int(lda), b,
                blas_int(ldb), accumulate ? 1.0 : 0.0, c, blas_int(ldc));
}

SerialBlasScope::SerialBlasScope() { openblas_set_num_threads(1); }

SerialBlasScope::~SerialBlasScope() { openblas_set_num_threads(num_threads()); }

template void conv_gemm<float>(bool, bool, std::int64_t, std::int64_t, std::int64_t, const float*, std::int64_t,
                               const float*, std::int64_t, float*, std::int64_t, bool);
template void conv_gemm<double>(bool, bool, std::int64_t, std::int64_t, std::int64_t, const double*, std::int64_t,
                                const double*, std::int64_t, double*, std::int64_t, bool);

}  // namespace xgrad::kernels
