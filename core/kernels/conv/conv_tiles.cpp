// The register tiles of conv_tiles.hpp: one loop skeleton (run_tiles in
// conv_tile_skeleton.hpp: R rows × V vectors of accumulators, a broadcast of each
// row's operand against V vector loads per step) over a vector policy, instantiated
// for three policies and chosen at run time:
//
//   avx2::Ymm          AVX2/FMA, 6 rows × 2 ymm or 8 rows × 1 ymm: 12 or 8
//                      accumulators, enough independent FMAs to hide their latency,
//                      with the b vectors and one broadcast within 16 ymm registers.
//                      Tail vectors under vmaskmovps masks.
//   avx512::Zmm        AVX-512F, up to 8 rows × 1, 2 or 3 zmm (16, 32 or 48 columns;
//                      up to 24 accumulators of the 32 zmm registers): fewer tiles per
//                      FLOP (less set-up and store work) and fewer loads per FMA than
//                      6 × 2 ymm. Zen 4 runs a zmm FMA as two halves, so its peak is
//                      the same; the gain is overhead.
//   avx512::YmmMasked  AVX-512VL, up to 8 rows × 1 or 3 ymm with k-register masks:
//                      partial blocks of at most 8 columns (AVX-512 masked stores are
//                      cheap, AVX2's are not) and, on AMD, blocks of 17–24 columns (24
//                      of the 32 ymm registers AVX-512VL gives hold accumulators; see
//                      zmm_full_rate).
//
// A policy is a struct of one-intrinsic functions (load, masked load/store, stream,
// broadcast, fma, add, the mask of the first n lanes; inlined, no call is left in a
// tile) and its lane count; Ymm and YmmMasked share their mask-free part (YmmOps).
// The skeleton is included once inside each GCC target region below, so the AVX2
// instantiations are compiled for avx2,fma only and the AVX-512 ones for
// avx512f,avx512vl.
//
// A tile never touches a column outside its block: the tail block of a feature count
// that is not a multiple of 8 reads and writes its last vector under a mask (the
// masked lanes of the accumulators hold zero and are never stored).
//
// Intrinsics appear only between the GCC target pragmas, in functions that take raw
// pointers, so no inline library function is ever compiled for AVX2/AVX-512 and the
// library still loads (and declines the fast path) on older CPUs.
#include "core/kernels/conv/conv_tiles.hpp"

#include <immintrin.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>

namespace xgrad::kernels::tiles {
namespace {

// Splits rows [0, row_count) into `tiles` tiles of `small` or `small + 1` rows and
// calls run(rows per tile, job for the first of them, tile count) for each size.
template <class Run>
void split_rows(const TileJob& job, Index row_count, Index max_rows, Run&& run) {
  const Index tiles = (row_count + max_rows - 1) / max_rows, small = row_count / tiles, big_tiles = row_count % tiles;
  if (big_tiles == 0) return run(small, job, tiles);
  run(small + 1, job, big_tiles);
  TileJob rest = job;  // the small tiles start after the big ones' rows
  const Index skip = big_tiles * (small + 1);
  if (job.a.offsets) rest.a.offsets = job.a.offsets + skip;
  else rest.a.base = job.a.base + skip * job.a.stride;
  if (job.out.offsets) rest.out.offsets = job.out.offsets + skip;
  else rest.out.base = job.out.base + skip * job.out.stride;
  run(small, rest, tiles - big_tiles);
}

// Whether `p` may take a streaming store of `lanes` floats (aligned to their size).
inline bool aligned(const float* p, int lanes) {
  return (reinterpret_cast<std::uintptr_t>(p) & static_cast<std::uintptr_t>(lanes * 4 - 1)) == 0;
}

// Row k's operand and output: Stride tiles always have listed rows, Add tiles strided
// ones (compile-time: no per-row test in the tiles that run most); Gather tiles either.
template <TileMode M, class T>
inline T* row_of(const Rows<T>& rows, Index k) {
  if constexpr (M == TileMode::Stride) return rows.base + rows.offsets[k];
  else if constexpr (M == TileMode::Add) return rows.base + k * rows.stride;
  else return rows.base + (rows.offsets ? rows.offsets[k] : k * rows.stride);
}

// The tiles of both families hold at most 8 rows; 6 when a row takes 2 ymm (12 AVX2
// accumulators, 2 b vectors and one broadcast within 16 ymm registers). A zmm tile of
// 8 rows × 3 keeps 24 accumulators, 3 b vectors and a broadcast in 32 registers.
template <class P>
constexpr int max_rows(int vectors) { return vectors == 2 && P::lanes == 8 ? 6 : 8; }

}  // namespace
}  // namespace xgrad::kernels::tiles

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace xgrad::kernels::tiles {
namespace {
namespace avx2 {

// The ymm operations that take no mask, shared by Ymm and avx512::YmmMasked (which
// inlines them into its AVX-512 tiles: a callee for a subset of the caller's ISA).
struct YmmOps {
  using Vector = __m256;
  static constexpr int lanes = 8;
  static Vector zero() { return _mm256_setzero_ps(); }
  static Vector load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Vector v) { _mm256_storeu_ps(p, v); }
  static void stream(float* p, Vector v) { _mm256_stream_ps(p, v); }
  static Vector broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static Vector fma(Vector a, Vector b, Vector c) { return _mm256_fmadd_ps(a, b, c); }
  static Vector add(Vector a, Vector b) { return _mm256_add_ps(a, b); }
};

// A ymm with AVX2 masks (a vector of lane-wide 0 / -1), for 1 or 2 vectors per row.
struct Ymm : YmmOps {
  using Mask = __m256i;
  static constexpr bool cheap_masks = false;  // vmaskmovps stores are microcoded on AMD
  static Mask first(int n) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
  using YmmOps::load, YmmOps::store;
  static Vector load(Mask m, const float* p) { return _mm256_maskload_ps(p, m); }
  static void store(Mask m, float* p, Vector v) { _mm256_maskstore_ps(p, m, v); }
};

#include "core/kernels/conv/conv_tile_skeleton.hpp"  // run_rows<P, V, M, Tail> for this region

}  // namespace avx2
}  // namespace
}  // namespace xgrad::kernels::tiles

#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx2,fma")

namespace xgrad::kernels::tiles {
namespace {
namespace avx512 {

// The k-register mask of the first n lanes (all for n ≥ lanes).
template <class Mask, int lanes>
Mask first_lanes(int n) {
  return n >= lanes ? Mask(~Mask(0)) : Mask((1u << n) - 1);
}

// Blocks of 16, 32 or 48 columns: one, two or three zmm per row.
struct Zmm {
  using Vector = __m512;
  using Mask = __mmask16;
  static constexpr int lanes = 16;
  static constexpr bool cheap_masks = true;
  static Mask first(int n) { return first_lanes<Mask, lanes>(n); }
  static Vector zero() { return _mm512_setzero_ps(); }
  static Vector load(const float* p) { return _mm512_loadu_ps(p); }
  static Vector load(Mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, Vector v) { _mm512_storeu_ps(p, v); }
  static void store(Mask m, float* p, Vector v) { _mm512_mask_storeu_ps(p, m, v); }
  static void stream(float* p, Vector v) { _mm512_stream_ps(p, v); }
  static Vector broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static Vector fma(Vector a, Vector b, Vector c) { return _mm512_fmadd_ps(a, b, c); }
  static Vector add(Vector a, Vector b) { return _mm512_add_ps(a, b); }
};

// Ymm vectors with AVX-512VL masks: a partial block of at most 8 columns (a C = 4 run
// of d_x) in one ymm per row, half the FMA lanes of a zmm tile for the same useful
// work and none of AVX2's slow vmaskmovps stores; or 17–24 columns (F = 20) in three.
struct YmmMasked : avx2::YmmOps {
  using Mask = __mmask8;
  static constexpr bool cheap_masks = true;
  static Mask first(int n) { return first_lanes<Mask, lanes>(n); }
  using YmmOps::load, YmmOps::store;
  static Vector load(Mask m, const float* p) { return _mm256_maskz_loadu_ps(m, p); }
  static void store(Mask m, float* p, Vector v) { _mm256_mask_storeu_ps(p, m, v); }
};

#include "core/kernels/conv/conv_tile_skeleton.hpp"  // run_rows<P, V, M, Tail> for this region

}  // namespace avx512
}  // namespace
}  // namespace xgrad::kernels::tiles

#pragma GCC pop_options

namespace xgrad::kernels::tiles {
namespace {

std::atomic<bool> avx512_allowed{std::getenv("XGRAD_CONV_LOCAL_AVX2") == nullptr};
// Whether a zmm FMA runs at the rate of a ymm one, as on Intel's server cores, or as
// two ymm halves, as on Zen 4. It decides how blocks of 17–24 columns (F = 20) run
// (run_mode): as two zmm per row (32 lanes, 12 masked) or three ymm (24 lanes, 4
// masked). On Zen 4 the masked lanes cost real work: two zmm measured 9 % slower. At
// full rate the zmm tile does 1.33× the useful work per FMA: suite layer B with
// F = 20, 1 thread, Intel Xeon family 6 model 167, 3.35–3.46 → 2.97–3.22 ms.
// (Short contractions stay on ymm tiles, but for ConvLocal's forward into y at full
// rate: on that Xeon zmm tiles for them made the local layer A 6–8 % faster but the
// CNN step's 3×3×1 shared conv 3 % slower. See run_mode.)
// Unmeasured elsewhere (Zen 5 has full-width zmm too): full rate on Intel only.
// (__builtin_cpu_init first: this runs among the library's static initialisers.)
std::atomic<bool> zmm_full_rate{[] {
  __builtin_cpu_init();
  return __builtin_cpu_is("intel") != 0;
}()};
std::atomic<std::int64_t> fast_dispatches{0};
std::atomic<bool> fast_path_enabled{std::getenv("XGRAD_CONV_GENERAL_PATH") == nullptr};

// The vector lanes of one row of a block of `columns` columns (≤ 48): three zmm, two
// zmm (17–24 columns only where zmm FMAs run at full rate), three ymm, or for at most
// 16 columns two ymm / one zmm, or one ymm. (Blocks wider than 16 columns come only
// with AVX-512: for_each_column_block.)
int block_lanes(Index columns) {
  if (columns > 32) return 48;
  if (columns > 24 || (columns > 16 && zmm_at_full_rate())) return 32;
  if (columns > 16) return 24;
  return columns > 8 ? 16 : 8;
}

template <TileMode M, bool Tail>
void run_mode(const TileJob& job, Index row_count) {
  // Blocks wider than 16 columns come only with AVX-512 (for_each_column_block). A zmm
  // tile's last vector is partial when the width is not a multiple of 16 (Tail is
  // about 8, the ymm tiles' lane count).
  const bool zmm_tail = M != TileMode::Add && job.columns % 16 != 0;
  switch (block_lanes(job.columns)) {
    case 48: return zmm_tail ? avx512::run_rows<avx512::Zmm, 3, M, true>(job, row_count)
                             : avx512::run_rows<avx512::Zmm, 3, M, Tail>(job, row_count);
    case 32: return zmm_tail ? avx512::run_rows<avx512::Zmm, 2, M, true>(job, row_count)
                             : avx512::run_rows<avx512::Zmm, 2, M, Tail>(job, row_count);
    case 24: return avx512::run_rows<avx512::YmmMasked, 3, M, Tail>(job, row_count);
    default: break;
  }
  const int vectors = job.columns > 8 ? 2 : 1;
  // A 16-column block as one zmm, except for short contractions: the 3×3×1 image
  // layer's forward (9 steps) measured ~20 % slower with AVX-512 tiles. Where each row
  // is a line of its own (scattered_rows) and zmm FMAs run at full rate, one zmm store
  // writes a whole line: ConvLocal layer A (9 steps, F = 16), forward + backward with
  // its data in cache, 1 thread, Intel Xeon family 6 model 167: VALID 0.56–0.61 →
  // 0.53–0.54 ms, SAME 0.68–0.72 → 0.64–0.65. A partial block always goes to the zmm
  // tiles where it can: AVX-512 masked stores are cheap, AVX2's vmaskmovps stores are
  // microcoded on AMD (the 3-D layer's d_x spent more in them than in its FMAs).
  const bool partial = job.columns % 8 != 0;  // (so Tail, except in Add mode)
  const bool long_or_scattered = job.steps >= 16 || (job.scattered_rows && zmm_at_full_rate());
  if (partial && vectors == 1 && avx512_active()) avx512::run_rows<avx512::YmmMasked, 1, M, true>(job, row_count);
  else if ((partial || (vectors == 2 && long_or_scattered)) && avx512_active())
    avx512::run_rows<avx512::Zmm, 1, M, Tail>(job, row_count);
  else if (vectors == 2) avx2::run_rows<avx2::Ymm, 2, M, Tail>(job, row_count);
  else avx2::run_rows<avx2::Ymm, 1, M, Tail>(job, row_count);
}

}  // namespace

void run_tile_job(TileMode mode, const TileJob& job, Index row_count) {
  if (row_count <= 0) return;
  const bool tail = job.columns % 8 != 0;  // Add masks its stores by `columns` anyway
  switch (mode) {
    case TileMode::Gather: return tail ? run_mode<TileMode::Gather, true>(job, row_count)
                                       : run_mode<TileMode::Gather, false>(job, row_count);
    case TileMode::Stride: return tail ? run_mode<TileMode::Stride, true>(job, row_count)
                                       : run_mode<TileMode::Stride, false>(job, row_count);
    case TileMode::Add: return run_mode<TileMode::Add, false>(job, row_count);
  }
}

Index row_lanes(Index columns) {
  Index lanes = 0;
  for_each_column_block(columns, [&](Index, int width) { lanes += block_lanes(width); });
  return lanes;
}

bool cpu_has_avx512() {
  // VL for the narrow (ymm) tiles; every AVX-512 CPU since Skylake-SP has it.
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  return has;
}

bool cpu_supported() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

void set_avx512_allowed(bool allowed) { avx512_allowed.store(allowed, std::memory_order_relaxed); }
bool avx512_active() { return cpu_has_avx512() && avx512_allowed.load(std::memory_order_relaxed); }

void set_zmm_at_full_rate(bool full_rate) { zmm_full_rate.store(full_rate, std::memory_order_relaxed); }
bool zmm_at_full_rate() { return zmm_full_rate.load(std::memory_order_relaxed); }

void set_fast_enabled(bool enabled) { fast_path_enabled.store(enabled, std::memory_order_relaxed); }
bool fast_enabled() { return fast_path_enabled.load(std::memory_order_relaxed); }

void finish_streaming() { _mm_sfence(); }

void count_fast_dispatch() { fast_dispatches.fetch_add(1, std::memory_order_relaxed); }

}  // namespace xgrad::kernels::tiles

namespace xgrad::kernels {
std::int64_t conv_fast_dispatch_count() { return tiles::fast_dispatches.load(std::memory_order_relaxed); }
}  // namespace xgrad::kernels
