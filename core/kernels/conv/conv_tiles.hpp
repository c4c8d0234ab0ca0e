// The register-tile engine behind the fast float32 convolutions (shared-weight and
// local): one micro-kernel that keeps an R×(8·V) block of accumulators in registers
// and, per contraction step s, broadcasts one value of each row's operand against
// vector loads of the other:
//
//   out(k)[0 .. columns)  (= or +=)  init + Σ_s a(k)[index(s)] · b[s·b_step + 0 .. columns)
//
// with a(k) = a.base + a.offsets[k] (listed rows) or a.base + k·a.stride, and
// index(s) = a_table[s] (Gather) or s·a_step. A block holds up to 16 columns (48 with
// AVX-512, see for_each_column_block); a block narrower than its vectors (the tail of a feature count that is not a multiple of 8)
// uses masked loads and stores, so no byte outside the block is read or written.
//
// Internal to core/kernels (not installed). Raw pointers only; the AVX2 and AVX-512
// code lives in conv_tiles.cpp between GCC target pragmas (one loop skeleton,
// conv_tile_skeleton.hpp, compiled in each region), chosen at run time.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace xgrad::kernels::tiles {

using Index = std::ptrdiff_t;

// How a tile reads its rows' operand and what it does with the result. Fixed per
// call so the inner loop is a handful of instructions.
enum class TileMode {
  Gather,  // a indexed through a_table, result stored (init = bias or zero; prefetch)
  Stride,  // a indexed s·a_step, result stored (added with `accumulate`); rows listed (a.offsets, out.offsets)
  Add,     // a indexed s·a_step, result added into out; rows strided
};

// Where the rows of a tile live: row k at base + offsets[k], or base + k·stride.
template <class T>
struct Rows {
  T* base = nullptr;
  Index stride = 0;
  const Index* offsets = nullptr;
};

struct TileJob {
  Index steps = 0;
  Rows<const float> a;
  const Index* a_table = nullptr;
  Index a_step = 0;
  const float* b = nullptr;
  Index b_step = 0;
  const float* init = nullptr;  // Gather: the starting value of every row (columns wide), or null for zero
  Rows<float> out;
  int columns = 16;             // 1..16: the width of this column block
  Index prefetch_distance = 0;  // if non-zero, prefetch out(k) + distance (the next block's rows)
  Index prefetch_b = 0;         // Gather: if non-zero, each step prefetches b + prefetch_b into L2 (a streamed operand)
  // Gather and Stride: store whole aligned vectors with non-temporal (streaming)
  // stores, for an output written once and read much later (see conv_local_fast.cpp:
  // the kernel gradient, and a forward output far larger than L2). The caller issues
  // an sfence (finish_streaming) before the results are handed to another thread.
  bool stream_out = false;
  // Stride: add the result into out instead of storing it (a later share of a sum).
  bool accumulate = false;
  // Gather: each output row is a cache line of its own, far from the others (ConvLocal's
  // y, a position's rows P·F floats apart), not one stretch of memory; see run_mode.
  bool scattered_rows = false;
};

// Orders this thread's streaming stores before its later stores (the hand-off to
// the thread that joins it).
void finish_streaming();

// Covers rows [0, row_count) of `job` with the fewest tiles, as even as possible
// (64 rows by 6 -> 9×6 + 2×5: no latency-bound tail tile of one row).
void run_tile_job(TileMode mode, const TileJob& job, Index row_count);

bool avx512_active();  // (declared again below, with the other CPU switches)

// Column blocks: body(first column, width), widths of at most 16, or with AVX-512
// tiles up to 48 taken as one block: 17–24 columns as three ymm per row (two zmm on
// Intel: zmm_at_full_rate), 25–32 as two zmm, 41–48 (the last remainder) as
// three zmm, so that each broadcast feeds two or three FMAs instead of one.
// ConvLocal, 1 thread, forward + backward, interleaved: B 3–5 % faster (F = 32, d_x
// runs of 3 × 16 columns), B with F = 20 1–6 % (against 16 + a ymm-wide 4; as one
// 32-wide zmm block it was 9 % slower: a zmm FMA costs two ymm ones on Zen 4, masked
// lanes included).
template <class Body>
void for_each_column_block(Index count, Body&& body) {
  const bool wide = avx512_active();
  for (Index start = 0; start < count;) {
    const Index rest = count - start;
    const Index width = !wide                     ? std::min<Index>(rest, 16)
                        : rest > 40 && rest <= 48 ? rest
                        : rest > 16               ? std::min<Index>(rest, 32)
                                                  : rest;
    body(start, static_cast<int>(width));
    start += width;
  }
}

// The vector lanes the tiles spend on each row of a product `columns` wide (its
// column blocks, each in the vectors the engine gives it): 20 columns take 32 lanes
// where zmm FMAs run at full rate, 24 elsewhere. Over `columns` it measures how much
// of the FMA work is useful.
Index row_lanes(Index columns);

// True when the CPU has AVX2 and FMA (the engine's minimum).
bool cpu_supported();
// AVX-512 tiles are used where the CPU has AVX-512F and VL unless disallowed
// (XGRAD_CONV_LOCAL_AVX2 set at start, or set_avx512_allowed(false)).
void set_avx512_allowed(bool allowed);
bool avx512_active();
bool cpu_has_avx512();  // AVX-512F and VL, whatever is allowed
// Whether zmm FMAs run at full rate (Intel) or as two halves (AMD Zen 4): with AVX-512
// tiles, full rate takes blocks of 17–24 columns as two zmm per row instead of three
// ymm (see conv_tiles.cpp). Set from the CPU vendor; tests set both.
void set_zmm_at_full_rate(bool full_rate);
bool zmm_at_full_rate();

// The fast kernels serve the conv driver unless disabled (XGRAD_CONV_GENERAL_PATH set
// at start, or set_fast_enabled(false)): to time or test the general path.
void set_fast_enabled(bool enabled);
bool fast_enabled();

// Counts the tensor-level convolution passes served by the fast kernels (tests
// assert that the public ops reach them).
void count_fast_dispatch();

}  // namespace xgrad::kernels::tiles

namespace xgrad::kernels {
// The number of tensor-level conv passes (forward, input VJP, kernel VJP, fused
// backward) that the fast kernels have served in this process.
std::int64_t conv_fast_dispatch_count();
}  // namespace xgrad::kernels
