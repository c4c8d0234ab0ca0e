#include "core/kernels/gemm.hpp"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "core/allocator.hpp"
#include "core/error.hpp"
#include "core/threading.hpp"

namespace xgrad::kernels {

namespace {

blasint blas_int(std::int64_t v) {
  if (v > INT_MAX)
    throw ValueError("gemm: a matrix dimension of " + std::to_string(v) +
                     " exceeds the BLAS integer range; use a smaller batch");
  return static_cast<blasint>(v);
}

// One cblas call; OpenBLAS is single-threaded (core/threading.cpp).
template <class T>
void blas_gemm(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
               std::int64_t lda, const T* b, std::int64_t ldb, T* c, std::int64_t ldc, bool accumulate) {
  const auto ta = transpose_a ? CblasTrans : CblasNoTrans;
  const auto tb = transpose_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, blas_int(m), blas_int(n), blas_int(k), 1.0f, a, blas_int(lda), b,
                blas_int(ldb), accumulate ? 1.0f : 0.0f, c, blas_int(ldc));
  else
    cblas_dgemm(CblasRowMajor, ta, tb, blas_int(m), blas_int(n), blas_int(k), 1.0, a, blas_int(lda), b,
                blas_int(ldb), accumulate ? 1.0 : 0.0, c, blas_int(ldc));
}

// How a product is cut into pieces for the pool: along the longer of C's two sides,
// into blocks of at least kMinBlock rows or columns (a multiple of 16, the widest
// register tile), one per kMacsPerPiece multiply-adds, at most kMaxPieces. The cut
// depends on the shape alone, never on the thread count, and each element of C is
// computed by one piece over the whole of k: the result has the same bits at any
// thread count.
struct GemmSplit {
  bool along_rows = false;
  std::int64_t pieces = 1, block = 0;
};

// Why half a million multiply-adds per piece: OpenBLAS (0.3.21, the SkylakeX /
// Cooperlake kernels it runs on AVX-512 CPUs) multiplies a product of at most 100³
// multiply-adds in place with its "small matrix" kernels; a larger one is packed into
// buffers taken from a pool that one global mutex guards, so two threads calling it
// at once queue on that mutex (a futex sleep now and then) and its cache line moves
// between their cores at every call. Measured here (one thread, float32): pieces of
// 256 × 64 × 64 (2^20) ran at 94-96 GFLOP/s through the buffers, 128 × 64 × 64 at
// 115 through the small kernels. The small kernels take a product with op(B)
// transposed (OpenBLAS's column-major "TN") only when C has at most 1200 elements,
// so a cut product with a small transposed B gets B transposed first (transposed_b).
constexpr std::int64_t kMacsPerPiece = std::int64_t{1} << 19;  // ~5 us on one core
constexpr std::int64_t kMaxPieces = 8;
constexpr std::int64_t kMinBlock = 64;

// Products whose C is too small to cut into kMinBlock-wide pieces but whose k is long
// (weight gradients such as [in × batch]·[batch × out] with in, out < 128) are cut
// along k instead, into pieces of at least kMinDepth: each piece multiplies its
// k-range into a buffer of its own, and the buffers are added into C in piece order.
// The cut is fixed by the shape too: the same bits at any thread count (not the bits
// of the uncut product).
constexpr std::int64_t kMinDepth = 128;

std::int64_t depth_pieces(std::int64_t m, std::int64_t n, std::int64_t k) {
  const std::int64_t by_work = (m * n * k) / kMacsPerPiece;
  return std::clamp<std::int64_t>(std::min(by_work, k / kMinDepth), 1, kMaxPieces);
}

GemmSplit split_gemm(std::int64_t m, std::int64_t n, std::int64_t k) {
  GemmSplit s;
  s.along_rows = m > n;
  const std::int64_t side = s.along_rows ? m : n;
  const std::int64_t by_work = (m * n * k) / kMacsPerPiece;  // m, n, k < 2^31 (blas_int)
  s.pieces = std::clamp<std::int64_t>(std::min(by_work, side / kMinBlock), 1, kMaxPieces);
  s.block = ((side + s.pieces - 1) / s.pieces + 15) / 16 * 16;
  s.pieces = (side + s.block - 1) / s.block;
  return s;
}

// A B of at most this many elements is transposed before a cut product with op(B)
// transposed (see kMacsPerPiece): 16 K floats take ~2 us to transpose, and every
// piece then runs on the small kernels.
constexpr std::int64_t kMaxTransposedB = std::int64_t{1} << 14;

// op(B) = Bᵀ (B is n × k, leading dimension ldb) written out as a k × n row-major matrix.
template <class T>
std::vector<T, CachingAllocator<T>> transposed_b(std::int64_t n, std::int64_t k, const T* b, std::int64_t ldb) {
  std::vector<T, CachingAllocator<T>> out(static_cast<std::size_t>(k * n));
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t p = 0; p < k; ++p) out[static_cast<std::size_t>(p * n + j)] = b[j * ldb + p];
  return out;
}

// A product below this many multiply-adds (~150 µs on one core) runs on the caller
// while the threads' cores share no cache (core/thread_placement.hpp): the
// self-attention block's 4 M-MAC projections and the MLP's 12.8 M-MAC layers do, an
// LSTM's 26 M-MAC input products do not.
constexpr std::int64_t kFarApartMinMacs = std::int64_t{1} << 24;

// Runs piece(0) … piece(pieces − 1) of a product of `macs` multiply-adds over the
// pool, or on the caller when it is below kFarApartMinMacs while the threads are far
// apart. The pieces are the same either way, and so are the bits.
template <class Piece>
void for_each_piece(std::int64_t pieces, std::int64_t macs, Piece&& piece) {
  if (macs < kFarApartMinMacs && detail::threads_far_apart()) {
    for (std::int64_t p = 0; p < pieces; ++p) piece(p);
    return;
  }
  parallel_for(pieces, piece);
}

// C (+)= op(A)·op(B) as `pieces` products over consecutive ranges of k, summed in order.
template <class T>
void gemm_split_depth(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k,
                      const T* a, std::int64_t lda, const T* b, std::int64_t ldb, T* c, std::int64_t ldc,
                      bool accumulate, std::int64_t pieces) {
  const std::int64_t size = m * n;
  std::vector<T, CachingAllocator<T>> partial(static_cast<std::size_t>(pieces * size));
  for_each_piece(pieces, m * n * k, [&](std::int64_t piece) {
    const std::int64_t k0 = k * piece / pieces, k1 = k * (piece + 1) / pieces;
    const T* a_piece = a + (transpose_a ? k0 * lda : k0);  // op(A)[:, k0:k1]
    const T* b_piece = b + (transpose_b ? k0 : k0 * ldb);  // op(B)[k0:k1, :]
    blas_gemm(transpose_a, transpose_b, m, n, k1 - k0, a_piece, lda, b_piece, ldb, partial.data() + piece * size, n,
              false);
  });
  for (std::int64_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    for (std::int64_t j = 0; j < n; ++j) {
      T total = accumulate ? row[j] : T(0);
      for (std::int64_t piece = 0; piece < pieces; ++piece) total += partial[static_cast<std::size_t>(piece * size + i * n + j)];
      row[j] = total;
    }
  }
}

}  // namespace

template <class T>
void gemm(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
               std::int64_t lda, const T* b, std::int64_t ldb, T* c, std::int64_t ldc, bool accumulate) {
  if (m == 0 || n == 0 || (k == 0 && accumulate)) return;
  if (k == 0) {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = T(0);
    return;
  }
  (void)num_threads();  // sets OpenBLAS single-threaded before its first call
  const GemmSplit s = split_gemm(m, n, k);
  if (s.pieces == 1) {
    if (const std::int64_t depth = depth_pieces(m, n, k); depth > 1) {
      gemm_split_depth(transpose_a, transpose_b, m, n, k, a, lda, b, ldb, c, ldc, accumulate, depth);
      return;
    }
    blas_gemm(transpose_a, transpose_b, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
    return;
  }
  std::vector<T, CachingAllocator<T>> b_copy;
  if (transpose_b && n * k <= kMaxTransposedB) {  // see kMacsPerPiece
    b_copy = transposed_b(n, k, b, ldb);
    transpose_b = false;
    b = b_copy.data();
    ldb = n;
  }
  for_each_piece(s.pieces, m * n * k, [&](std::int64_t piece) {
    const std::int64_t begin = piece * s.block;
    if (s.along_rows) {  // rows [begin, end) of op(A) and C
      const std::int64_t rows = std::min(m, begin + s.block) - begin;
      blas_gemm(transpose_a, transpose_b, rows, n, k, a + (transpose_a ? begin : begin * lda), lda, b, ldb,
                c + begin * ldc, ldc, accumulate);
    } else {  // columns [begin, end) of op(B) and C
      const std::int64_t cols = std::min(n, begin + s.block) - begin;
      blas_gemm(transpose_a, transpose_b, m, cols, k, a, lda, b + (transpose_b ? begin * ldb : begin), ldb, c + begin,
                ldc, accumulate);
    }
  });
}

template void gemm<float>(bool, bool, std::int64_t, std::int64_t, std::int64_t, const float*, std::int64_t,
                               const float*, std::int64_t, float*, std::int64_t, bool);
template void gemm<double>(bool, bool, std::int64_t, std::int64_t, std::int64_t, const double*, std::int64_t,
                                const double*, std::int64_t, double*, std::int64_t, bool);

}  // namespace xgrad::kernels
