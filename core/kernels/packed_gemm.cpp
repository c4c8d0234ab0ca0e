// The packed-B products of packed_gemm.hpp.
//
// A tile is up to 8 rows of C by one 32-column panel: 16 zmm accumulators (two per
// row), enough independent FMAs to hide their latency, plus the two b vectors of the
// current k and one broadcast of A. The panel (k x 32 floats: 16 KiB for k = 128)
// stays in L1 while the tiles of every row block pass over it. Columns past n in
// the last panel are zero in the packing and masked off in the stores.
//
// Intrinsics appear only between the GCC target pragmas, in functions on raw
// pointers that call no inline library function (which could be emitted there with
// AVX-512 and shared with other code), so the library still loads (and declines
// this path) on older CPUs.
#include "core/kernels/packed_gemm.hpp"

#include <immintrin.h>

#include <algorithm>

#include "core/threading.hpp"

namespace xgrad::kernels {

namespace {

constexpr std::int64_t kPanel = 32;  // columns per panel: two zmm
constexpr std::int64_t kRows = 8;    // rows per tile

#pragma GCC push_options
#pragma GCC target("avx512f")

// What the products are added to: C itself (accumulate), or `addend` rows plus a
// `bias` row (either may be null), offset to the tile's first row and column.
struct Start {
  bool accumulate;
  const float* addend;
  std::int64_t ld_addend;
  const float* bias;
};

template <int Rows>
void tile(std::int64_t k, const float* a, std::int64_t lda, const float* panel, float* c, std::int64_t ldc,
          const Start& start, __mmask16 mask0, __mmask16 mask1) {
  // Every loop over the rows unrolled, so lo[] and hi[] live in registers only (a
  // loop left rolled kept them on the stack, zeroed there by a microcoded rep stos per
  // tile): models_bench lstm_b64, 1 thread, alternating, 10.6–11.6 → 9.7–10.1 ms.
  __m512 lo[Rows], hi[Rows];
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r) lo[r] = hi[r] = _mm512_setzero_ps();
  for (std::int64_t p = 0; p < k; ++p) {
    const __m512 b0 = _mm512_loadu_ps(panel + p * kPanel), b1 = _mm512_loadu_ps(panel + p * kPanel + 16);
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * lda + p]);
      lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
      hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
    }
  }
  __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
  if (start.bias) {
    bias0 = _mm512_maskz_loadu_ps(mask0, start.bias);
    bias1 = _mm512_maskz_loadu_ps(mask1, start.bias + 16);
  }
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r) {
    float* cr = c + r * ldc;
    // (start + bias) + sum, in this order whichever operands are present.
    const float* from = start.addend ? start.addend + r * start.ld_addend : start.accumulate ? cr : nullptr;
    if (from) {
      lo[r] = _mm512_add_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(mask0, from), bias0), lo[r]);
      hi[r] = _mm512_add_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(mask1, from + 16), bias1), hi[r]);
    } else if (start.bias) {
      lo[r] = _mm512_add_ps(bias0, lo[r]);
      hi[r] = _mm512_add_ps(bias1, hi[r]);
    }
    _mm512_mask_storeu_ps(cr, mask0, lo[r]);
    _mm512_mask_storeu_ps(cr + 16, mask1, hi[r]);
  }
}

// Panels [p0, p1) of C: for each panel, every row block over it.
void panels(std::int64_t p0, std::int64_t p1, std::int64_t m, std::int64_t n, std::int64_t k, const float* a,
            std::int64_t lda, const float* packed, float* c, std::int64_t ldc, const Start& start) {
  for (std::int64_t p = p0; p < p1; ++p) {
    const std::int64_t col = p * kPanel, cols = n - col < kPanel ? n - col : kPanel;  // no std:: here (see top)
    const __mmask16 mask0 = static_cast<__mmask16>(cols >= 16 ? 0xFFFF : (1u << cols) - 1);
    const __mmask16 mask1 = static_cast<__mmask16>(cols >= 32 ? 0xFFFF : cols <= 16 ? 0 : (1u << (cols - 16)) - 1);
    const float* panel = packed + p * k * kPanel;
    const auto at = [&](std::int64_t row) {  // the start operands of a tile from `row`
      return Start{start.accumulate, start.addend ? start.addend + row * start.ld_addend + col : nullptr,
                   start.ld_addend, start.bias ? start.bias + col : nullptr};
    };
    std::int64_t row = 0;
    for (; row + kRows <= m; row += kRows)
      tile<kRows>(k, a + row * lda, lda, panel, c + row * ldc + col, ldc, at(row), mask0, mask1);
    const float* ar = a + row * lda;
    float* cr = c + row * ldc + col;
    const Start s = at(row);
    switch (m - row) {  // the last rows, as one narrower tile
      case 7: tile<7>(k, ar, lda, panel, cr, ldc, s, mask0, mask1); break;
      case 6: tile<6>(k, ar, lda, panel, cr, ldc, s, mask0, mask1); break;
      case 5: tile<5>(k, ar, lda, panel, cr, ldc, s, mask0, mask1); break;
      case 4: tile<4>(k, ar, lda, panel, cr, ldc, s, mask0, mask1); break;
      case 3: tile<3>(k, ar, lda, panel, cr, ldc, s, mask0, mask1); break;
      case 2: tile<2>(k, ar, lda, panel, cr, ldc, s, mask0, mask1); break;
      case 1: tile<1>(k, ar, lda, panel, cr, ldc, s, mask0, mask1); break;
      default: break;
    }
  }
}

#pragma GCC pop_options

}  // namespace

bool packed_gemm_available() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

std::int64_t packed_b_size(std::int64_t k, std::int64_t n) { return k * ((n + kPanel - 1) / kPanel) * kPanel; }

void pack_b(bool transpose_b, std::int64_t k, std::int64_t n, const float* b, std::int64_t ldb, float* packed) {
  const std::int64_t count = (n + kPanel - 1) / kPanel;
  for (std::int64_t p = 0; p < count; ++p) {
    float* panel = packed + p * k * kPanel;
    for (std::int64_t i = 0; i < k; ++i)
      for (std::int64_t j = 0; j < kPanel; ++j) {
        const std::int64_t col = p * kPanel + j;
        panel[i * kPanel + j] = col >= n ? 0.0f : transpose_b ? b[col * ldb + i] : b[i * ldb + col];
      }
  }
}

void gemm_packed(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda, const float* packed,
                 float* c, std::int64_t ldc, bool accumulate, const float* addend, std::int64_t ld_addend,
                 const float* bias) {
  if (m == 0 || n == 0) return;
  const Start start{accumulate && !addend, addend, ld_addend, bias};
  if (k == 0) {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        const float from = addend ? addend[i * ld_addend + j] : accumulate ? c[i * ldc + j] : 0.0f;
        c[i * ldc + j] = bias ? from + bias[j] : from;
      }
    return;
  }
  // Column blocks of whole panels, one per ~2^20 multiply-adds, at most 8: fixed by
  // the shape, so the bits do not depend on the thread count.
  const std::int64_t count = (n + kPanel - 1) / kPanel;
  const std::int64_t pieces = std::clamp<std::int64_t>(std::min((m * n * k) >> 20, count), 1, 8);
  const std::int64_t per_piece = (count + pieces - 1) / pieces;
  parallel_for((count + per_piece - 1) / per_piece, [&](std::int64_t piece) {
    const std::int64_t p0 = piece * per_piece, p1 = std::min(count, p0 + per_piece);
    panels(p0, p1, m, n, k, a, lda, packed, c, ldc, start);
  });
}

}  // namespace xgrad::kernels
