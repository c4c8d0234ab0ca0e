// float32 products with a right-hand matrix packed once and used many times: the
// recurrent kernel of an LSTM, multiplied by the hidden state at every time step
// forward (h W_h) and by the gates' cotangent at every step backward (dz W_h^T).
// OpenBLAS repacks both operands at each call, which took ~13 % of an LSTM training
// step (batch 64, 128 units); here the kernel is packed once per sequence and each
// step runs an AVX-512 register tile over it. Internal; AVX-512F CPUs only
// (packed_gemm_available), callers fall back to kernels::gemm elsewhere.
#pragma once

#include <cstdint>

namespace xgrad::kernels {

// Whether this CPU runs gemm_packed (AVX-512F).
bool packed_gemm_available();

// The floats a packed op(B) [k, n] takes: panels of 32 columns (the last zero-padded),
// each k rows of 32.
std::int64_t packed_b_size(std::int64_t k, std::int64_t n);

// Packs op(B) [k, n] (B row-major with leading dimension ldb, transposed when asked)
// into `packed` (packed_b_size(k, n) floats).
void pack_b(bool transpose_b, std::int64_t k, std::int64_t n, const float* b, std::int64_t ldb, float* packed);

// C [m, n] (leading dimension ldc) = start + A [m, k] (row-major, lda) * packed B,
// where start is C itself with `accumulate`, else zero, or, when `addend` is given,
// addend [m, n] (leading dimension ld_addend; may be C); a `bias` [n] row, when given,
// is added to the start first. Each element of C is (start + bias) + one sum over the
// whole of k in a fixed order, and the work is cut into column blocks fixed by the
// shape: the result has the same bits at any thread count. Only when
// packed_gemm_available().
void gemm_packed(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda, const float* packed,
                 float* c, std::int64_t ldc, bool accumulate, const float* addend = nullptr,
                 std::int64_t ld_addend = 0, const float* bias = nullptr);

}  // namespace xgrad::kernels
