// The register tiles of conv_tiles.hpp. Two families, chosen at run time:
//
//   AVX2/FMA   6 rows × 2 ymm or 8 rows × 1 ymm: 12 or 8 accumulators, enough
//              independent FMAs to hide their latency, with the b vectors and one
//              broadcast within 16 ymm registers.
//   AVX-512    up to 8 rows × 1 zmm (16 columns): fewer tiles per FLOP (less set-up
//              and store work) and fewer loads per FMA than 6 × 2 ymm. Zen 4 runs a
//              zmm FMA as two halves, so its peak is the same; the gain is overhead.
//              Partial blocks of at most 8 columns run as ymm tiles with AVX-512VL masks
//              (one template over the vector type: Zmm, YmmMasked).
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
  if (big_tiles > 0) run(small + 1, job, big_tiles);
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

}  // namespace
}  // namespace xgrad::kernels::tiles

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx2,fma")

namespace xgrad::kernels::tiles {
namespace {

constexpr int kMaxRowsAvx512 = 8;

// The two AVX-512 tile widths as one set of operations: a full block of 16 columns
// in a zmm, and a partial block of at most 8 columns (the tail of F = 20, a C = 4 run
// of d_x) in a ymm with AVX-512VL masks: half the FMA lanes of a zmm tile for the
// same useful work, and none of AVX2's slow vmaskmovps stores.
struct Zmm {
  using Vector = __m512;
  using Mask = __mmask16;
  static constexpr int lanes = 16;
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

struct YmmMasked {
  using Vector = __m256;
  using Mask = __mmask8;
  static constexpr int lanes = 8;
  static Vector zero() { return _mm256_setzero_ps(); }
  static Vector load(const float* p) { return _mm256_loadu_ps(p); }
  static Vector load(Mask m, const float* p) { return _mm256_maskz_loadu_ps(m, p); }
  static void store(float* p, Vector v) { _mm256_storeu_ps(p, v); }
  static void store(Mask m, float* p, Vector v) { _mm256_mask_storeu_ps(p, m, v); }
  static void stream(float* p, Vector v) { _mm256_stream_ps(p, v); }
  static Vector broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static Vector fma(Vector a, Vector b, Vector c) { return _mm256_fmadd_ps(a, b, c); }
  static Vector add(Vector a, Vector b) { return _mm256_add_ps(a, b); }
};

// R rows × one vector of W (Zmm or YmmMasked). Masked loads and stores where Tail
// (the block has fewer columns than the vector); Add mode always masks its
// read-modify-write by `columns`.
template <class W, int R, TileMode M, bool Tail>
__attribute__((noinline)) void run_tiles_avx512(const TileJob& job, Index count) {
  using V = typename W::Vector;
  using Mask = typename W::Mask;
  constexpr bool table = M == TileMode::Gather;
  const Index steps = job.steps, a_step = job.a_step, b_step = job.b_step;
  const Index* a_table = job.a_table;
  const Mask mask = job.columns >= W::lanes ? Mask(~Mask(0)) : Mask((1u << job.columns) - 1);
  for (Index tile = 0; tile < count; ++tile) {
    const float* a[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Index k = tile * R + r;
      a[r] = row_of<M>(job.a, k);
      // Opaque to the optimiser, so each row keeps its own pointer register and the
      // broadcasts use plain base + index addressing.
      asm("" : "+r"(a[r]));
      if (M == TileMode::Gather && job.prefetch_distance)
        _mm_prefetch(reinterpret_cast<const char*>(job.out.base + k * job.out.stride + job.prefetch_distance),
                     _MM_HINT_T0);
    }
    V acc[R];
    V start = W::zero();
    if (M == TileMode::Gather && job.init) start = Tail ? W::load(mask, job.init) : W::load(job.init);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = start;
    const float* b = job.b;
    for (Index s = 0; s < steps; ++s) {
      const Index ai = table ? a_table[s] : s * a_step;
      const V bv = Tail ? W::load(mask, b) : W::load(b);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r] = W::fma(W::broadcast(a[r] + ai), bv, acc[r]);
      b += b_step;
    }
    float* out[R];  // computed only now, to keep general registers free in the loop
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Index k = tile * R + r;
      out[r] = row_of<M>(job.out, k);
    }
    if constexpr (M != TileMode::Add) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        if (Tail) W::store(mask, out[r], acc[r]);
        else if (M == TileMode::Stride && job.stream_out && aligned(out[r], W::lanes)) W::stream(out[r], acc[r]);
        else W::store(out[r], acc[r]);
      }
    } else {
      // Rows in order: neighbouring rows' footprints may overlap.
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) W::store(mask, out[r], W::add(W::load(mask, out[r]), acc[r]));
    }
  }
}

// `count` tiles of exactly `rows` rows (1 ≤ rows ≤ kMaxRowsAvx512).
template <class W, TileMode M, bool Tail, int R = 1>
void run_tiles_avx512_of(Index rows, const TileJob& job, Index count) {
  if constexpr (R <= kMaxRowsAvx512) {
    if (rows == R) run_tiles_avx512<W, R, M, Tail>(job, count);
    else run_tiles_avx512_of<W, M, Tail, R + 1>(rows, job, count);
  }
}

template <class W, TileMode M, bool Tail>
void run_avx512(const TileJob& job, Index row_count) {
  split_rows(job, row_count, kMaxRowsAvx512,
             [](Index rows, const TileJob& j, Index count) { run_tiles_avx512_of<W, M, Tail>(rows, j, count); });
}

}  // namespace
}  // namespace xgrad::kernels::tiles

#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace xgrad::kernels::tiles {
namespace {

constexpr int max_rows(int vectors) { return vectors == 2 ? 6 : 8; }

// Kept out of line: inlined into its callers, the 15 live ymm registers spill.
template <int R, int V, TileMode M, bool Tail>
__attribute__((noinline)) void run_tiles(const TileJob& job, Index count) {
  constexpr bool table = M == TileMode::Gather;
  const Index steps = job.steps, a_step = job.a_step, b_step = job.b_step;
  const Index* a_table = job.a_table;
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  // The mask of the last vector (all lanes when the block is full).
  const __m256i tail_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(job.columns - 8 * (V - 1)), iota);
  for (Index tile = 0; tile < count; ++tile) {
    const float* a[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Index k = tile * R + r;
      a[r] = row_of<M>(job.a, k);
      asm("" : "+r"(a[r]));  // see run_tiles_avx512
      if (M == TileMode::Gather && job.prefetch_distance)
        _mm_prefetch(reinterpret_cast<const char*>(job.out.base + k * job.out.stride + job.prefetch_distance),
                     _MM_HINT_T0);
    }
    // Every loop over the tile is unrolled so that acc[][] lives in registers only.
    __m256 acc[R][V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      __m256 start = _mm256_setzero_ps();
      if (M == TileMode::Gather && job.init)
        start = Tail && v == V - 1 ? _mm256_maskload_ps(job.init + 8 * v, tail_mask) : _mm256_loadu_ps(job.init + 8 * v);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][v] = start;
    }
    const float* b = job.b;
    for (Index s = 0; s < steps; ++s) {
      const Index ai = table ? a_table[s] : s * a_step;
      __m256 bv[V];
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v)
        bv[v] = Tail && v == V - 1 ? _mm256_maskload_ps(b + 8 * v, tail_mask) : _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m256 av = _mm256_broadcast_ss(a[r] + ai);
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
      }
      b += b_step;
    }
    float* out[R];  // computed only now, to keep general registers free in the loop
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Index k = tile * R + r;
      out[r] = row_of<M>(job.out, k);
    }
    if constexpr (M != TileMode::Add) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) {
          if (Tail && v == V - 1) _mm256_maskstore_ps(out[r] + 8 * v, tail_mask, acc[r][v]);
          else if (M == TileMode::Stride && job.stream_out && aligned(out[r] + 8 * v, 8)) _mm256_stream_ps(out[r] + 8 * v, acc[r][v]);
          else _mm256_storeu_ps(out[r] + 8 * v, acc[r][v]);
        }
      }
    } else {
      // Rows in order: neighbouring rows' footprints may overlap.
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) {
        const int lanes = job.columns - 8 * v;
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), iota);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          float* o = out[r] + 8 * v;
          if (lanes >= 8) _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), acc[r][v]));
          else if (lanes > 0) _mm256_maskstore_ps(o, mask, _mm256_add_ps(_mm256_maskload_ps(o, mask), acc[r][v]));
        }
      }
    }
  }
}

// `count` tiles of exactly `rows` rows (1 ≤ rows ≤ max_rows(V)).
template <int V, TileMode M, bool Tail, int R = 1>
void run_tiles_of(Index rows, const TileJob& job, Index count) {
  if constexpr (R <= max_rows(V)) {
    if (rows == R) run_tiles<R, V, M, Tail>(job, count);
    else run_tiles_of<V, M, Tail, R + 1>(rows, job, count);
  }
}

template <int V, TileMode M, bool Tail>
void run_avx2(const TileJob& job, Index row_count) {
  split_rows(job, row_count, max_rows(V),
             [](Index rows, const TileJob& j, Index count) { run_tiles_of<V, M, Tail>(rows, j, count); });
}

}  // namespace
}  // namespace xgrad::kernels::tiles

#pragma GCC pop_options

namespace xgrad::kernels::tiles {
namespace {

std::atomic<bool> avx512_allowed{std::getenv("XGRAD_CONV_LOCAL_AVX2") == nullptr};
std::atomic<std::int64_t> fast_dispatches{0};
std::atomic<bool> fast_path_enabled{std::getenv("XGRAD_CONV_GENERAL_PATH") == nullptr};

template <TileMode M, bool Tail>
void run_mode(const TileJob& job, Index row_count) {
  const int vectors = job.columns > 8 ? 2 : 1;
  // A 16-column block as one zmm, except for short contractions: the 3×3×1 image
  // layer's forward (9 steps) measured ~20 % slower with AVX-512 tiles. A partial
  // block always goes to the zmm tiles where it can: AVX-512 masked stores are cheap,
  // AVX2's vmaskmovps stores are microcoded on AMD (the 3-D layer's d_x spent more in
  // them than in its FMAs).
  const bool partial = job.columns % 8 != 0;  // (so Tail, except in Add mode)
  if (partial && vectors == 1 && avx512_active()) run_avx512<YmmMasked, M, true>(job, row_count);
  else if ((partial || (vectors == 2 && job.steps >= 16)) && avx512_active()) run_avx512<Zmm, M, Tail>(job, row_count);
  else if (vectors == 2) run_avx2<2, M, Tail>(job, row_count);
  else run_avx2<1, M, Tail>(job, row_count);
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

void set_fast_enabled(bool enabled) { fast_path_enabled.store(enabled, std::memory_order_relaxed); }
bool fast_enabled() { return fast_path_enabled.load(std::memory_order_relaxed); }

void finish_streaming() { _mm_sfence(); }

void count_fast_dispatch() { fast_dispatches.fetch_add(1, std::memory_order_relaxed); }

}  // namespace xgrad::kernels::tiles

namespace xgrad::kernels {
std::int64_t conv_fast_dispatch_count() { return tiles::fast_dispatches.load(std::memory_order_relaxed); }
}  // namespace xgrad::kernels
