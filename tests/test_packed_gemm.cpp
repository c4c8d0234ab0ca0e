// kernels::gemm_packed (core/kernels/packed_gemm.hpp), the AVX-512 product with a
// packed right-hand matrix that the LSTM sequence uses for its recurrent products:
// against the straightforward double loop at full and tail shapes, both layouts of
// B, overwrite, accumulate, an addend and a bias row, and the same bits at 1 and 2
// threads.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "core/kernels/packed_gemm.hpp"
#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

std::vector<float> values(std::int64_t count, double phase) {
  std::vector<float> v(static_cast<std::size_t>(count));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i) + phase));
  return v;
}

}  // namespace

TEST_CASE("gemm_packed matches the straightforward product at full and tail shapes") {
  if (!kernels::packed_gemm_available()) {
    MESSAGE("this CPU has no AVX-512F: gemm_packed is not used here (lstm_sequence calls kernels::gemm)");
    return;
  }
  struct Case {
    std::int64_t m, n, k;
  };
  for (const Case s : {Case{64, 512, 128}, Case{64, 128, 512}, Case{13, 45, 7}, Case{1, 1, 1}, Case{9, 33, 3},
                       Case{8, 32, 16}, Case{17, 16, 5}, Case{3, 70, 40}}) {
    for (const bool transpose_b : {false, true}) {
      for (const int start : {0, 1, 2, 3}) {  // zero, accumulate, addend + bias, bias alone
        const bool accumulate = start == 1;
        CAPTURE(s.m);
        CAPTURE(s.n);
        CAPTURE(s.k);
        CAPTURE(transpose_b);
        CAPTURE(start);
        // A with a leading dimension wider than k, C with one wider than n: the
        // kernel must touch neither the padding of A nor that of C.
        const std::int64_t lda = s.k + 3, ldc = s.n + 5, ldb = transpose_b ? s.k : s.n;
        const std::vector<float> a = values(s.m * lda, 0.1), b = values(s.k * s.n, 0.7), c0 = values(s.m * ldc, 1.3);
        std::vector<float> packed(static_cast<std::size_t>(kernels::packed_b_size(s.k, s.n)));
        kernels::pack_b(transpose_b, s.k, s.n, b.data(), ldb, packed.data());
        const std::int64_t ld_addend = s.n + 2;
        const std::vector<float> addend = values(s.m * ld_addend, 2.1), bias = values(s.n, 2.9);
        std::vector<float> c = c0;
        kernels::gemm_packed(s.m, s.n, s.k, a.data(), lda, packed.data(), c.data(), ldc, accumulate,
                             start == 2 ? addend.data() : nullptr, ld_addend, start >= 2 ? bias.data() : nullptr);
        double worst = 0;
        bool padding_untouched = true;
        for (std::int64_t i = 0; i < s.m; ++i) {
          for (std::int64_t j = 0; j < s.n; ++j) {
            double expected = accumulate ? c0[static_cast<std::size_t>(i * ldc + j)]
                              : start == 2 ? addend[static_cast<std::size_t>(i * ld_addend + j)]
                                           : 0.0;
            if (start >= 2) expected += bias[static_cast<std::size_t>(j)];
            for (std::int64_t p = 0; p < s.k; ++p) {
              const float bv = transpose_b ? b[static_cast<std::size_t>(j * ldb + p)] : b[static_cast<std::size_t>(p * ldb + j)];
              expected += static_cast<double>(a[static_cast<std::size_t>(i * lda + p)]) * bv;
            }
            worst = std::max(worst, std::abs(c[static_cast<std::size_t>(i * ldc + j)] - expected));
          }
          for (std::int64_t j = s.n; j < ldc; ++j)
            padding_untouched &= c[static_cast<std::size_t>(i * ldc + j)] == c0[static_cast<std::size_t>(i * ldc + j)];
        }
        CHECK(worst < 2e-5 * static_cast<double>(s.k));
        CHECK(padding_untouched);
      }
    }
  }
}

TEST_CASE("gemm_packed gives the same bits at 1 and 2 threads") {
  if (!kernels::packed_gemm_available()) {
    MESSAGE("this CPU has no AVX-512F: gemm_packed is not used here");
    return;
  }
  const std::int64_t m = 64, n = 512, k = 128;
  const std::vector<float> a = values(m * k, 0.2), b = values(k * n, 0.9);
  std::vector<float> packed(static_cast<std::size_t>(kernels::packed_b_size(k, n)));
  kernels::pack_b(false, k, n, b.data(), n, packed.data());
  std::vector<float> one(static_cast<std::size_t>(m * n)), two(one.size());
  {
    test_support::ThreadCountGuard threads(1);
    kernels::gemm_packed(m, n, k, a.data(), k, packed.data(), one.data(), n, false);
  }
  {
    test_support::ThreadCountGuard threads(2);
    kernels::gemm_packed(m, n, k, a.data(), k, packed.data(), two.data(), n, false);
  }
  CHECK(one == two);
}
