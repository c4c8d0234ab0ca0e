// Direct AVX2/FMA locally connected convolution. Every output position p owns a
// small GEMM (forward: [N × C·kh·kw]·[C·kh·kw × F]); instead of materialising patches,
// the micro-kernel broadcasts input values straight from x against vector loads of
// the other operand and keeps an R×(8·V) tile of accumulators in registers
// (6 rows × 16 columns = 12 ymm, or 8 × 8). The same micro-kernel serves three products:
//
//   forward   rows = samples n,        columns = features f, contraction over patch i
//   d_kernel  rows = patch elements i, columns = features f, contraction over samples n
//   d_x       rows = samples n,        columns = patch elements, contraction over f
//
// The backward of one position does all three from one contiguous copy of its
// cotangent block dy[:, p, :] (which also yields d_bias). For d_x the kernel block is
// transposed into a per-thread buffer laid out in "runs": stretches of the patch that
// are contiguous in x (a kernel row of kw·C values when dw = 1, else one tap of C
// values), each padded to a multiple of 8, so the tile adds whole vectors into d_x.
//
// AVX2 and AVX-512 code is confined to the regions between the GCC target pragmas
// and uses raw pointers only, so no inline library function is ever compiled for
// them and the library still runs (and reports "unsupported") on older CPUs. The
// AVX-512 tiles run only where the CPU has AVX-512F (chosen at run time).
#include "core/kernels/conv_local_fast.hpp"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <vector>

#include "core/threading.hpp"

namespace xgrad::kernels {
namespace {

using Index = std::ptrdiff_t;

// Everything the per-position routines need, as plain values and pointers.
struct Plan {
  Index batch, channels, features, out_width, positions, patch;
  Index sample_stride;       // Hp·Wp·C: distance between samples in x
  Index row_stride;          // Wp·C
  const Index* patch_offset;  // natural patch index i -> x offset from the patch origin
  // Run order j (runs one after another, unpadded): x offset and natural index.
  const Index* order_offset;
  const Index* order_kernel_offset;  // natural index · F: the row in a kernel block
  Index run_count, run_length, run_padded;  // run_padded = run_length rounded up to 8
  const Index* run_offset;                  // run -> x offset from the patch origin
  Index taps, kernel_width, dilation_width;
  bool avx512;  // 16-column blocks run as AVX-512 tiles (run_tiles_avx512)
  const float *x, *kernel, *bias, *dy;
  float *y, *d_x, *d_kernel, *d_bias;
};

// The three products, which fix how a tile finds its rows and what it does with the
// result (compile-time, so the per-tile work is a handful of instructions).
enum class Product {
  Forward,     // strided rows, a indexed through a table, init = bias, store, prefetch next rows
  KernelGrad,  // listed rows, a indexed s·a_step, store
  InputGrad,   // strided rows, a indexed s·a_step, accumulate (masked past `valid`)
};

// Where the rows of a tile live: row k at base + k·stride, or at base + offsets[k].
template <class T>
struct Rows {
  T* base;
  Index stride;
  const Index* offsets;
};

// A run of register tiles over consecutive rows: for each row k,
//   out(k)[0 .. 8V) (=|+=) init + Σ_s a(k)[index(s)] · b[s·b_step + 0 .. 8V),
// index(s) = a_table[s] or s·a_step.
struct TileJob {
  Index steps;
  Rows<const float> a;
  const Index* a_table;
  Index a_step;
  const float* b;
  Index b_step;
  const float* init;  // shared by all rows; null means zero
  Rows<float> out;
  int valid;                // columns to write when accumulating (the rest is padding)
  Index prefetch_distance;  // if non-zero, prefetch out(k) + distance (the next position's rows)
};

}  // namespace

// AVX-512 tiles: one zmm (16 columns) × up to 8 rows. A 16-column block then takes
// 8-row tiles of 8 FMAs per step instead of 6-row tiles of 12 half-width FMAs: fewer
// tiles (less set-up and store work per FLOP) and fewer loads per FMA. Zen 4 runs a
// zmm FMA as two 256-bit halves, so the peak is the same; the gain is the overhead.
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")

namespace {

constexpr int kMaxRowsAvx512 = 8;

template <int R, Product P>
__attribute__((noinline)) void run_tiles_avx512(const TileJob& job, Index count) {
  constexpr bool listed = P == Product::KernelGrad, table = P == Product::Forward;
  const Index steps = job.steps, a_step = job.a_step, b_step = job.b_step;
  const Index* a_table = job.a_table;
  for (Index tile = 0; tile < count; ++tile) {
    const float* a[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Index k = tile * R + r;
      a[r] = job.a.base + (listed ? job.a.offsets[k] : k * job.a.stride);
      asm("" : "+r"(a[r]));  // as in run_tiles: one pointer register per row
      if (P == Product::Forward && job.prefetch_distance)
        _mm_prefetch(reinterpret_cast<const char*>(job.out.base + k * job.out.stride + job.prefetch_distance),
                     _MM_HINT_T0);
    }
    __m512 acc[R];
    const __m512 start = P == Product::Forward && job.init ? _mm512_loadu_ps(job.init) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = start;
    const float* b = job.b;
    for (Index k = 0; k < steps; ++k) {
      const Index ai = table ? a_table[k] : k * a_step;
      const __m512 bv = _mm512_loadu_ps(b);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r][ai]), bv, acc[r]);
      b += b_step;
    }
    float* out[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Index k = tile * R + r;
      out[r] = job.out.base + (listed ? job.out.offsets[k] : k * job.out.stride);
    }
    if (P != Product::InputGrad) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) _mm512_storeu_ps(out[r], acc[r]);
      continue;
    }
    const __mmask16 mask = job.valid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << job.valid) - 1);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
      _mm512_mask_storeu_ps(out[r], mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out[r]), acc[r]));
  }
}

// `count` tiles of exactly `rows` rows (1 ≤ rows ≤ kMaxRowsAvx512).
template <Product P, int R = 1>
void run_tiles_avx512_of(Index rows, const TileJob& job, Index count) {
  if constexpr (R <= kMaxRowsAvx512) {
    if (rows == R) run_tiles_avx512<R, P>(job, count);
    else run_tiles_avx512_of<P, R + 1>(rows, job, count);
  }
}

}  // namespace

#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace {

// 6 rows × 2 vectors or 8 rows × 1 vector: 12 or 8 accumulators, enough independent
// FMAs to hide their latency, and with the b vectors and a broadcast within 16 ymm.
constexpr int max_rows(int vectors) { return vectors == 2 ? 6 : 8; }

// Tiles [first, first + count) of R rows each. Kept out of line: inlined into its
// callers, the 15 live ymm registers spill.
template <int R, int V, Product P>
__attribute__((noinline)) void run_tiles(const TileJob& job, Index count) {
  constexpr bool listed = P == Product::KernelGrad, table = P == Product::Forward;
  const Index steps = job.steps, a_step = job.a_step, b_step = job.b_step;
  const Index* a_table = job.a_table;
  for (Index tile = 0; tile < count; ++tile) {
    const float* a[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Index k = tile * R + r;
      a[r] = job.a.base + (listed ? job.a.offsets[k] : k * job.a.stride);
      // Opaque to the optimiser, so each row keeps its own pointer register and the
      // broadcasts use plain base + index addressing instead of recomputing addresses.
      asm("" : "+r"(a[r]));
      if (P == Product::Forward && job.prefetch_distance)
        _mm_prefetch(reinterpret_cast<const char*>(job.out.base + k * job.out.stride + job.prefetch_distance),
                     _MM_HINT_T0);
    }
    // Every loop over the tile is unrolled so that acc[][] lives in registers only.
    __m256 acc[R][V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      const __m256 start = P == Product::Forward && job.init ? _mm256_loadu_ps(job.init + 8 * v) : _mm256_setzero_ps();
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][v] = start;
    }
    const float* b = job.b;
    for (Index k = 0; k < steps; ++k) {
      const Index ai = table ? a_table[k] : k * a_step;
      __m256 bv[V];
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) bv[v] = _mm256_loadu_ps(b + 8 * v);
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
      out[r] = job.out.base + (listed ? job.out.offsets[k] : k * job.out.stride);
    }
    if (P != Product::InputGrad) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) _mm256_storeu_ps(out[r] + 8 * v, acc[r][v]);
      }
      continue;
    }
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      const int lanes = job.valid - 8 * v;
      const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        float* o = out[r] + 8 * v;
        if (lanes >= 8) _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), acc[r][v]));
        else if (lanes > 0) _mm256_maskstore_ps(o, mask, _mm256_add_ps(_mm256_maskload_ps(o, mask), acc[r][v]));
      }
    }
  }
}

// `count` tiles of exactly `rows` rows (1 ≤ rows ≤ max_rows(V)).
template <int V, Product P, int R = 1>
void run_tiles_of(Index rows, const TileJob& job, Index count) {
  if constexpr (R <= max_rows(V)) {
    if (rows == R) run_tiles<R, V, P>(job, count);
    else run_tiles_of<V, P, R + 1>(rows, job, count);
  }
}

// Covers rows [0, row_count) with the fewest tiles, as even as possible (64 rows by
// 6 -> 9×6 + 2×5: no latency-bound tail tile of 1 row).
template <Product P>
void run_job(const TileJob& job, int vectors, Index row_count, bool avx512) {
  // A 16-column block as one zmm, except for short contractions: the 3×3×1 image
  // layer's forward (9 steps) measured ~20 % slower with AVX-512 tiles.
  const bool wide = avx512 && vectors == 2 && job.steps >= 16;
  const Index limit = wide ? kMaxRowsAvx512 : max_rows(vectors);
  const Index tiles = (row_count + limit - 1) / limit, small = row_count / tiles, big_tiles = row_count % tiles;
  const auto run = [&](Index rows, const TileJob& j, Index count) {
    if (wide) run_tiles_avx512_of<P>(rows, j, count);
    else if (vectors == 2) run_tiles_of<2, P>(rows, j, count);
    else run_tiles_of<1, P>(rows, j, count);
  };
  if (big_tiles > 0) run(small + 1, job, big_tiles);
  TileJob rest = job;  // the small tiles start after the big ones' rows
  const Index skip = big_tiles * (small + 1);
  rest.a.base = job.a.offsets ? job.a.base : job.a.base + skip * job.a.stride;
  rest.a.offsets = job.a.offsets ? job.a.offsets + skip : nullptr;
  rest.out.base = job.out.offsets ? job.out.base : job.out.base + skip * job.out.stride;
  rest.out.offsets = job.out.offsets ? job.out.offsets + skip : nullptr;
  run(small, rest, tiles - big_tiles);
}

// Column blocks of 16 (two vectors), then one of 8 if `count` is an odd number of vectors.
template <class Body>
void for_each_column_block(Index count, Body&& body) {
  for (Index start = 0; start < count; start += 16) body(start, count - start >= 16 ? 2 : 1);
}

Index patch_origin(const Plan& p, Index position) {
  return (position / p.out_width) * p.row_stride + (position % p.out_width) * p.channels;
}

void forward_position(const Plan& p, Index position) {
  const float* kernel = p.kernel + position * p.patch * p.features;
  for_each_column_block(p.features, [&](Index f0, int vectors) {
    TileJob job;
    job.steps = p.patch;
    job.a = {p.x + patch_origin(p, position), p.sample_stride, nullptr};  // rows: samples
    job.a_table = p.patch_offset;
    job.a_step = 0;
    job.b = kernel + f0;
    job.b_step = p.features;
    job.init = p.bias ? p.bias + position * p.features + f0 : nullptr;
    job.out = {p.y + position * p.features + f0, p.positions * p.features, nullptr};
    job.valid = 8 * vectors;
    // The output rows are N scattered lines per position, more streams than the
    // hardware prefetcher follows: fetch the next position's while computing this one.
    job.prefetch_distance = position + 1 < p.positions ? p.features : 0;
    run_job<Product::Forward>(job, vectors, p.batch, p.avx512);
  });
}

// Copies dy[:, position, :] into `block` (N × F) and sums it over N into d_bias.
// Also prefetches the next position's block (N scattered rows, like the output's).
void gather_cotangent(const Plan& p, Index position, float* block) {
  const bool prefetch = position + 1 < p.positions;
  for (Index f0 = 0; f0 < p.features; f0 += 8) {
    __m256 sum = _mm256_setzero_ps();
    const float* src = p.dy + position * p.features + f0;
    for (Index n = 0; n < p.batch; ++n) {
      const float* row = src + n * p.positions * p.features;
      if (prefetch && f0 % 16 == 0) _mm_prefetch(reinterpret_cast<const char*>(row + p.features), _MM_HINT_T0);
      const __m256 v = _mm256_loadu_ps(row);
      _mm256_storeu_ps(block + n * p.features + f0, v);
      sum = _mm256_add_ps(sum, v);
    }
    if (p.d_bias) _mm256_storeu_ps(p.d_bias + position * p.features + f0, sum);
  }
}

// In-place transpose of an 8×8 block held in eight registers.
void transpose8x8(__m256 (&m)[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(m[2 * i], m[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(m[2 * i], m[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    s[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    m[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
    m[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
  }
}

// kt[f][run·run_padded + e] = kernel[i(run, e)][f]; padding columns stay zero.
// `next_kernel` (the next position's block, or null) is prefetched into L2 meanwhile.
void transpose_kernel_to_runs(const Plan& p, const float* kernel, const float* next_kernel, float* kt) {
  const Index row = p.run_count * p.run_padded;
  for (Index tap = 0; tap < p.taps; ++tap) {
    const Index ky = tap / p.kernel_width, kx = tap % p.kernel_width;
    const bool merged = p.dilation_width == 1;  // a run is a whole kernel row
    const Index column = (merged ? ky : tap) * p.run_padded + (merged ? kx * p.channels : 0);
    Index c0 = 0;
    for (; c0 + 8 <= p.channels; c0 += 8) {
      for (Index f0 = 0; f0 < p.features; f0 += 8) {
        __m256 m[8];
        for (int q = 0; q < 8; ++q) {
          const Index offset = ((c0 + q) * p.taps + tap) * p.features + f0;
          if (next_kernel && f0 % 16 == 0) _mm_prefetch(reinterpret_cast<const char*>(next_kernel + offset), _MM_HINT_T1);
          m[q] = _mm256_loadu_ps(kernel + offset);
        }
        transpose8x8(m);
        for (int q = 0; q < 8; ++q) _mm256_storeu_ps(kt + (f0 + q) * row + column + c0, m[q]);
      }
    }
    for (Index c = c0; c < p.channels; ++c)
      for (Index f = 0; f < p.features; ++f) kt[f * row + column + c] = kernel[(c * p.taps + tap) * p.features + f];
  }
}

// d_bias, d_kernel and d_x of one position. `block` holds N × F floats and `kt`
// F × run_count·run_padded floats (zero in the padding columns).
void backward_position(const Plan& p, Index position, float* block, float* kt) {
  const Index origin = patch_origin(p, position);
  gather_cotangent(p, position, block);
  if (p.d_kernel) {
    // Rows are patch elements in run order (neighbours in x, so each sample's reads
    // stay within a few cache lines), written to their natural kernel rows.
    for_each_column_block(p.features, [&](Index f0, int vectors) {
      TileJob job;
      job.steps = p.batch;
      job.a = {p.x + origin, 0, p.order_offset};
      job.a_table = nullptr;
      job.a_step = p.sample_stride;
      job.b = block + f0;
      job.b_step = p.features;
      job.init = nullptr;
      job.out = {p.d_kernel + position * p.patch * p.features + f0, 0, p.order_kernel_offset};
      job.valid = 8 * vectors;
      job.prefetch_distance = 0;
      run_job<Product::KernelGrad>(job, vectors, p.patch, p.avx512);
    });
  }
  if (p.d_x) {
    const float* kernel = p.kernel + position * p.patch * p.features;
    transpose_kernel_to_runs(p, kernel, position + 1 < p.positions ? kernel + p.patch * p.features : nullptr, kt);
    const Index row = p.run_count * p.run_padded;
    for (Index run = 0; run < p.run_count; ++run) {
      for_each_column_block(p.run_padded, [&](Index e0, int vectors) {
        TileJob job;
        job.steps = p.features;
        job.a = {block, p.features, nullptr};  // rows: samples
        job.a_table = nullptr;
        job.a_step = 1;
        job.b = kt + run * p.run_padded + e0;
        job.b_step = row;
        job.init = nullptr;
        job.out = {p.d_x + origin + p.run_offset[run] + e0, p.sample_stride, nullptr};
        job.valid = static_cast<int>(p.run_length - e0 < 8 * vectors ? p.run_length - e0 : 8 * vectors);
        job.prefetch_distance = 0;
        run_job<Product::InputGrad>(job, vectors, p.batch, p.avx512);
      });
    }
  }
}

}  // namespace

#pragma GCC pop_options

namespace {

// Offset tables behind a Plan.
struct Layout {
  std::vector<Index> patch_offset, order_offset, order_kernel_offset, run_offset;
  Plan plan{};

  explicit Layout(const ConvLocal2dFastShape& s) {
    const Index taps = s.kernel_height * s.kernel_width, c = s.in_features;
    const Index row_stride = s.in_width * c;
    const bool merged = s.dilation_width == 1;
    auto tap_offset = [&](Index tap) {
      return ((tap / s.kernel_width) * s.dilation_height * s.in_width + (tap % s.kernel_width) * s.dilation_width) * c;
    };
    for (Index i = 0; i < c * taps; ++i) patch_offset.push_back(tap_offset(i % taps) + i / taps);
    // Run order: kernel rows (merged) or taps, then within a run (kx,) c.
    const Index run_count = merged ? s.kernel_height : taps;
    for (Index run = 0; run < run_count; ++run) {
      run_offset.push_back(tap_offset(merged ? run * s.kernel_width : run));
      for (Index kx = 0; kx < (merged ? s.kernel_width : 1); ++kx) {
        const Index tap = merged ? run * s.kernel_width + kx : run;
        for (Index ch = 0; ch < c; ++ch) {
          order_offset.push_back(tap_offset(tap) + ch);
          order_kernel_offset.push_back((ch * taps + tap) * s.features);
        }
      }
    }
    const Index run_length = merged ? s.kernel_width * c : c;
    plan.batch = s.batch;
    plan.channels = c;
    plan.features = s.features;
    plan.out_width = s.out_width();
    plan.positions = s.out_height() * s.out_width();
    plan.patch = c * taps;
    plan.sample_stride = s.in_height * row_stride;
    plan.row_stride = row_stride;
    plan.patch_offset = patch_offset.data();
    plan.order_offset = order_offset.data();
    plan.order_kernel_offset = order_kernel_offset.data();
    plan.run_count = run_count;
    plan.run_length = run_length;
    plan.run_padded = (run_length + 7) / 8 * 8;
    plan.run_offset = run_offset.data();
    plan.taps = taps;
    plan.kernel_width = s.kernel_width;
    plan.dilation_width = s.dilation_width;
    plan.avx512 = conv_local_avx512_active();
  }
};

// A 64-byte aligned float buffer, zero-filled.
struct AlignedBuffer {
  float* data;
  explicit AlignedBuffer(Index count) {
    const std::size_t bytes = (static_cast<std::size_t>(count) * sizeof(float) + 63) / 64 * 64;
    data = static_cast<float*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes));
    std::fill(data, data + count, 0.0f);
  }
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
};

bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

std::atomic<bool> fast_enabled{std::getenv("XGRAD_CONV_GENERAL_PATH") == nullptr};
std::atomic<bool> avx512_allowed{std::getenv("XGRAD_CONV_LOCAL_AVX2") == nullptr};

}  // namespace

void set_conv_local_fast_enabled(bool enabled) { fast_enabled.store(enabled, std::memory_order_relaxed); }
bool conv_local_fast_enabled() { return fast_enabled.load(std::memory_order_relaxed); }

void set_conv_local_avx512_allowed(bool allowed) { avx512_allowed.store(allowed, std::memory_order_relaxed); }
bool conv_local_avx512_active() { return cpu_has_avx512() && avx512_allowed.load(std::memory_order_relaxed); }

bool conv_local2d_fast_supported(const ConvLocal2dFastShape& s) {
  const bool positive = s.batch > 0 && s.in_height > 0 && s.in_width > 0 && s.in_features > 0 &&
                        s.kernel_height > 0 && s.kernel_width > 0 && s.dilation_height > 0 &&
                        s.dilation_width > 0 && s.features > 0;
  return positive && s.out_height() > 0 && s.out_width() > 0 && s.features % 8 == 0 && cpu_has_avx2_fma();
}

void conv_local2d_forward_fast(const ConvLocal2dFastShape& shape, const float* x, const float* kernel,
                               const float* bias, float* y) {
  Layout layout(shape);
  Plan& plan = layout.plan;
  plan.x = x;
  plan.kernel = kernel;
  plan.bias = bias;
  plan.y = y;
  const Index positions = plan.positions;
  // Contiguous ranges, not one chunk per position: forward_position prefetches the
  // next position's operands (measured on B at 2 threads: 0.48 vs 0.50 ms).
  const Index slots = std::min<Index>(num_threads(), positions);
  parallel_for(slots, [&](Index slot) {
    const SlotRange range = static_slot_range(positions, slots, slot);
    for (Index position = range.begin; position < range.end; ++position) forward_position(plan, position);
  });
}

void conv_local2d_backward_fast(const ConvLocal2dFastShape& shape, const float* x, const float* kernel,
                                const float* dy, float* d_x, float* d_kernel, float* d_bias) {
  Layout layout(shape);
  Plan& plan = layout.plan;
  plan.x = x;
  plan.kernel = kernel;
  plan.dy = dy;
  plan.d_x = d_x;
  plan.d_kernel = d_kernel;
  plan.d_bias = d_bias;
  const Index block_size = plan.batch * plan.features;
  const Index kt_size = d_x ? plan.features * plan.run_count * plan.run_padded : 0;
  const Index out_height = shape.out_height(), out_width = shape.out_width();

  if (!d_x) {  // positions are independent: split them evenly
    const Index slots = std::min<Index>(num_threads(), plan.positions);
    parallel_for(slots, [&](Index slot) {
      AlignedBuffer block(block_size);
      const SlotRange range = static_slot_range(plan.positions, slots, slot);
      for (Index position = range.begin; position < range.end; ++position)
        backward_position(plan, position, block.data, nullptr);
    });
    return;
  }

  // d_x: output row oy scatters into input rows [oy, oy + halo]. Each band of output
  // rows first does the rows whose footprint stays inside its own input rows, then,
  // once every band has (the second parallel_for), its last `halo` rows. Bands of at
  // least 2·halo rows keep the second-phase footprints of neighbouring bands disjoint.
  const Index halo = (shape.kernel_height - 1) * shape.dilation_height;
  const Index max_bands = halo > 0 ? std::max<Index>(1, out_height / (2 * halo)) : out_height;
  const Index bands = std::min<Index>(num_threads(), max_bands);
  auto rows = [&](Index first, Index last) {
    AlignedBuffer block(block_size), kt(kt_size);
    for (Index position = first * out_width; position < last * out_width; ++position)
      backward_position(plan, position, block.data, kt.data);
  };
  auto band_begin = [&](Index band) { return band * out_height / bands; };
  auto band_split = [&](Index band) { return std::max(band_begin(band), band_begin(band + 1) - halo); };
  parallel_for(bands, [&](Index band) { rows(band_begin(band), band_split(band)); });
  parallel_for(bands, [&](Index band) { rows(band_split(band), band_begin(band + 1)); });
}

}  // namespace xgrad::kernels
