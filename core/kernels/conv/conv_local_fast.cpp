// Direct locally connected convolution on the tile engine (conv_tiles.hpp). Every
// output position p owns a small GEMM (forward: [N × C·S]·[C·S × F]); instead of
// materialising patches, the tiles broadcast input values straight from x against
// vector loads of the other operand. The same tiles serve three products:
//
//   forward   rows = samples n,        columns = features f, contraction over patch i
//   d_kernel  rows = patch elements i, columns = features f, contraction over samples n
//   d_x       rows = samples n,        columns = patch elements, contraction over f
//
// The backward of one position does all three from one contiguous copy of its
// cotangent block dy[:, p, :] (which also yields d_bias). For d_x the kernel block is
// transposed into a per-thread buffer laid out in "runs": stretches of the patch that
// are contiguous in x (a kernel row of kw·C values when the last axis is undilated,
// else one tap of C values), each padded to a multiple of 8, so the tile adds whole
// vectors into d_x.
//
// Geometry: conv_fast_geometry.hpp turns 1-D/2-D into 3-D with unit axes and the
// padding into a padded copy of x (and a padded d_x that is cropped at the end; a
// 1-D layer computes d_x output-stationary instead, see input_gradient_1d);
// strides only move each position's patch origin.
//
// Conv + max pool (2-D, disjoint windows): the forward computes a pooled position's
// window of positions into per-thread scratch and pools them there, so y is never
// written; the backward builds each position's cotangent block straight from the
// pooled cotangent and the selection (gather_pooled_cotangent).
#include "core/kernels/conv/conv_local_fast.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/allocator.hpp"
#include "core/kernels/conv/conv_fast_geometry.hpp"
#include "core/kernels/conv/conv_scratch.hpp"
#include "core/kernels/conv/conv_tiles.hpp"
#include "core/kernels/select_extreme_avx2.hpp"
#include "core/threading.hpp"

namespace xgrad::kernels {
namespace {

using tiles::Index;
using tiles::TileJob;
using tiles::TileMode;

// Everything the per-position routines need, as plain values and pointers.
struct Plan {
  Index batch, channels, features, block_stride, positions, patch;
  Index sample_stride;          // distance between samples in the padded x
  const Index* position_origin;  // position -> x offset of its patch origin
  const Index* patch_offset;     // natural patch index i -> x offset from the patch origin
  // Run order j (runs one after another, unpadded): x offset and natural index · F.
  const Index* order_offset;
  const Index* order_kernel_offset;
  Index run_count, run_length, run_padded;  // run_padded = run_length rounded up to 8
  Index kt_stride;                          // ≥ run_count·run_padded + 8 (see Layout)
  const Index* run_offset;                  // run -> x offset from the patch origin
  Index taps, kernel_last;                  // S and k of the last axis
  bool merged;                              // a run is a whole kernel row (last axis undilated)
  // The forward writes y with streaming stores (see conv_local_forward_fast).
  bool stream_y;
  // The backward of a later sample group (see backward_positions): d_kernel and d_bias
  // get this group's share added; d_kernel streamed only where the batch is one group.
  bool accumulate = false, stream_d_kernel = true;
  // d_kernel's block of each position written into a staging block and streamed out as
  // whole lines (see backward_positions), where the tiles cannot stream it themselves.
  bool stage_d_kernel = false;
  Index first_sample = 0;  // of this group in the batch (for the pooled cotangent's indices)
  // d_kernel as [F × runs] (rows features, columns run elements; see
  // kernel_gradient_by_runs): feature_index[f] = f, feature_row[f] = f·kt_stride.
  bool d_kernel_by_runs = false;
  const Index *feature_index = nullptr, *feature_row = nullptr;
  const float *x, *kernel, *bias, *dy;
  float *d_x, *d_kernel, *d_bias;
  // The cotangent given pooled (conv_local_backward_max_pooled_fast) instead of dy:
  // pooled_of[position] is the pooled position whose window holds it (−1: none).
  const Index* pooled_of;
  Index pooled_positions;
  PooledCotangent pooled;
};

// The most samples a pass over the positions takes at once. A position's outputs (and
// cotangent rows) are one line per sample, P·F floats apart; position after position
// each sample's lines form a stream, and a core's L2 prefetcher follows only so many
// streams (32 on recent Intel cores). Over N = 64 samples at once it loses them and
// every store first waits for its line from memory (every read of dy for its line).
// Suite layer A (N = 64, 28×28×1 → F 16) with its data out of the caches (64 MB
// written between steps), 1 thread, Intel Xeon family 6 model 167:
// forward 0.68–0.80 ms over all 64 samples, 0.33–0.36 ms in two groups of 32 (16:
// 0.39–0.42, 24: 0.36–0.37); with its data in cache 0.25–0.30 ms either way.
// (Software prefetches cannot stand in: one, two or four positions ahead, or with
// PREFETCHW, measured the same or slower.)
constexpr Index kMaxStreams = 32;
// The largest d_kernel whose backward runs in sample groups (see backward_positions):
// half of a 1 MiB L2 (Zen 4; 2 MiB on recent Intel server cores).
constexpr Index kGroupedKernelBytes = Index{512} << 10;

// The size of the sample groups of a batch: at most kMaxStreams, as even as possible.
Index sample_group_size(Index batch) {
  const Index groups = (batch + kMaxStreams - 1) / kMaxStreams;
  return (batch + groups - 1) / groups;
}

// Whether the kernel gradient is computed by runs (kernel_gradient_by_runs: features
// as rows, a run's elements as columns) instead of by features (patch elements as rows,
// features as columns): where a run's elements fill the vector lanes at least 1.25×
// better than the features do, which pays for transposing the result. Suite layer B
// with F = 20 (C = 16: runs of 48 in three whole zmm, where 20 features take two zmm at
// full rate), Intel Xeon family 6 model 167, alternating: with B VALID alone 1 thread
// 2.84 → 2.74 ms, 2 threads 1.50 → 1.37 ms; in the whole suite (colder caches) only
// with d_kernel streamed out, which by runs allows (see kernel_gradient_by_runs).
// (In three ymm, as on AMD, 20 of 24 lanes work: by features.)
bool d_kernel_by_runs(Index features, Index run_length) {
  const double by_features = static_cast<double>(features) / static_cast<double>(tiles::row_lanes(features));
  const double by_runs = static_cast<double>(run_length) / static_cast<double>(tiles::row_lanes(run_length));
  return by_runs >= 1.25 * by_features;
}

// A 64-byte aligned float buffer, zero-filled, from the caching allocator (a step
// gets the previous step's pages back).
struct AlignedBuffer {
  float* data;
  std::size_t bytes;
  explicit AlignedBuffer(Index count) : bytes(static_cast<std::size_t>(count) * sizeof(float)) {
    data = static_cast<float*>(detail::allocate_bytes(bytes));
    std::fill(data, data + count, 0.0f);
  }
  ~AlignedBuffer() { detail::deallocate_bytes(data, bytes); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
};

}  // namespace

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace {

// d_bias of `position`: the cotangent block summed over its rows in sample order,
// stored, or added for a later sample group (p.accumulate). (vmaskmovps stores are
// microcoded on AMD: only for a partial block.)
void sum_block_into_bias(const Plan& p, Index position, const float* block) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (Index f0 = 0; f0 < p.features; f0 += 8) {
    __m256 sum = _mm256_setzero_ps();
    for (Index n = 0; n < p.batch; ++n) sum = _mm256_add_ps(sum, _mm256_loadu_ps(block + n * p.block_stride + f0));
    float* to = p.d_bias + position * p.features + f0;
    const int lanes = static_cast<int>(std::min<Index>(8, p.features - f0));
    if (lanes == 8) {
      _mm256_storeu_ps(to, p.accumulate ? _mm256_add_ps(_mm256_loadu_ps(to), sum) : sum);
      continue;
    }
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), iota);
    _mm256_maskstore_ps(to, mask, p.accumulate ? _mm256_add_ps(_mm256_maskload_ps(to, mask), sum) : sum);
  }
}

// gather_cotangent for a cotangent given pooled (F a multiple of 8): row n of the
// block is pooled.g[n, q, :] where the window's selection is this position's element
// (and, after a relu, its output is > 0, as relu_grad masks), zero elsewhere: the
// rows the pool's VJP (and the relu's) would have written into dy, without dy.
void gather_pooled_cotangent(const Plan& p, Index position, float* block) {
  const Index q = p.pooled_of[position];
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 zero = _mm256_setzero_ps();
  for (Index n = 0; n < p.batch; ++n) {  // row by row, as gather_cotangent
    const Index sample = p.first_sample + n;
    for (Index f0 = 0; f0 < p.features; f0 += 8) {
      __m256 v = zero;
      if (q >= 0) {
        const Index from = (sample * p.pooled_positions + q) * p.features + f0;
        const Index here = (sample * p.positions + position) * p.features + f0;  // < 2^31 (checked by the driver)
        const __m256i selected = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.pooled.index + from));
        __m256 keep = _mm256_castsi256_ps(
            _mm256_cmpeq_epi32(selected, _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int>(here)))));
        if (p.pooled.relu_out)
          keep = _mm256_and_ps(keep, _mm256_cmp_ps(_mm256_loadu_ps(p.pooled.relu_out + from), zero, _CMP_GT_OQ));
        v = _mm256_and_ps(_mm256_loadu_ps(p.pooled.g + from), keep);
      }
      _mm256_storeu_ps(block + n * p.block_stride + f0, v);
    }
  }
  if (p.d_bias) sum_block_into_bias(p, position, block);
}

// Copies dy[:, position, :] into `block` (N rows of block_stride ≥ F floats, zero past
// F) and sums it over N into d_bias. Row by row, so that each scattered row's lines are
// read once and in order, then the sums from the block (in L1): against a pass over
// the rows per 8 columns, suite layer A with its data out of the caches (a scratch
// program, 1 thread) backward 0.51–0.57 → 0.45–0.47 ms, and in the suite A SAME 0.99–1.06
// → 0.87–0.88 ms, A VALID 0.76–0.88 → 0.69–0.71 (the same sums in the same order: the
// same bits). Also prefetches the next position's block (N
// scattered rows, more streams than the hardware prefetcher follows) into L2, not L1:
// rows P·F·4 bytes apart fall into few L1 sets (A SAME: 50,176 bytes, 4 of a 48 KiB
// L1's 64 sets), where 32 prefetched rows evict this position's. Suite, 1 thread,
// 5 runs alternating with the L1 hint (Intel Xeon family 6 model 167): A VALID
// 1.00–1.06 → 0.92–0.94 ms, A SAME 1.05–1.10 → 1.02–1.05, B SAME 4.62–4.97 → 4.49–4.76.
void gather_cotangent(const Plan& p, Index position, float* block) {
  if (p.pooled_of) return gather_pooled_cotangent(p, position, block);
  const bool prefetch = position + 1 < p.positions;
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const float* src = p.dy + position * p.features;
  const Index whole = p.features - p.features % 8;  // columns before the partial vector
  const __m256i tail_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(p.features % 8)), iota);
  for (Index n = 0; n < p.batch; ++n) {
    const float* row = src + n * p.positions * p.features;
    float* to = block + n * p.block_stride;
    for (Index f0 = 0; f0 < p.features; f0 += 8) {
      if (prefetch && f0 % 16 == 0) _mm_prefetch(reinterpret_cast<const char*>(row + p.features + f0), _MM_HINT_T1);
      _mm256_storeu_ps(to + f0, f0 < whole ? _mm256_loadu_ps(row + f0) : _mm256_maskload_ps(row + f0, tail_mask));
    }
  }
  if (p.d_bias) sum_block_into_bias(p, position, block);
}

// In-place transpose of an 8×8 block held in eight registers (always inlined: with
// two callers GCC kept it out of line, and the eight registers went through memory).
__attribute__((always_inline)) inline void transpose8x8(__m256 (&m)[8]) {
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

// One block of transpose_kernel_to_runs: rows q < elements from kernel + offsets[q]
// (their first `features` floats, the rest under feature_mask zero; zero rows past
// `elements`), transposed, the first `features` stored to `to`, rows `row` apart; each
// row's line of `next` prefetched. Whole (8 × 8) blocks, the most common, compile to
// straight-line code.
template <bool Whole>
__attribute__((always_inline)) inline void transpose_block(const float* kernel, const float* next, const Index* offsets,
                                                           int elements, int features, __m256i feature_mask, float* to,
                                                           Index row) {
  __m256 m[8];
#pragma GCC unroll 8
  for (int q = 0; q < 8; ++q) {
    if (!Whole && q >= elements) {
      m[q] = _mm256_setzero_ps();
      continue;
    }
    if (next) _mm_prefetch(reinterpret_cast<const char*>(next + offsets[q]), _MM_HINT_T1);
    m[q] = Whole || features == 8 ? _mm256_loadu_ps(kernel + offsets[q]) : _mm256_maskload_ps(kernel + offsets[q], feature_mask);
  }
  transpose8x8(m);
#pragma GCC unroll 8
  for (int q = 0; q < 8; ++q)
    if (Whole || q < features) _mm256_storeu_ps(to + q * row, m[q]);
}

// kt[f][run·run_padded + e] = kernel[i(run, e)][f], rows kt_stride apart; padding
// columns stay zero. Each run is cut into blocks of 8 consecutive elements (a run
// lists its taps' channels in x order: order_kernel_offset) × 8 features, each through
// an 8×8 register transpose: the rows of a block are 8 kernel rows wherever they lie,
// so a block fills its 8 lanes whatever C is (8 channels of a tap; 8 taps of a 1-channel
// kernel row; 2 taps of the 3-D layer's 4 channels). A run's last block may be partial:
// its missing rows load as zero and land on run padding (run_padded is a multiple of 8).
// A partial feature block loads under a mask. No vmaskmovps store, which is microcoded
// on AMD. `next_kernel` (the next position's block, or null) is prefetched into L2
// meanwhile.
void transpose_kernel_to_runs(const Plan& p, const float* kernel, const float* next_kernel, float* kt) {
  const Index row = p.kt_stride;
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (Index run = 0; run < p.run_count; ++run) {
    const Index* offsets = p.order_kernel_offset + run * p.run_length;  // i·F of each element of the run
    for (Index e0 = 0; e0 < p.run_length; e0 += 8) {
      const int elements = static_cast<int>(std::min<Index>(8, p.run_length - e0));
      for (Index f0 = 0; f0 < p.features; f0 += 8) {
        const int features = static_cast<int>(std::min<Index>(8, p.features - f0));
        const __m256i feature_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(features), iota);
        const float* next = next_kernel && f0 % 16 == 0 ? next_kernel + f0 : nullptr;
        float* to = kt + f0 * row + run * p.run_padded + e0;
        if (elements == 8 && features == 8) transpose_block<true>(kernel + f0, next, offsets + e0, 8, 8, feature_mask, to, row);
        else transpose_block<false>(kernel + f0, next, offsets + e0, elements, features, feature_mask, to, row);
      }
    }
  }
}

// The inverse of transpose_kernel_to_runs: kernel[i(run, e)][f] (=, or += with
// `accumulate`) dkt[f][run·run_padded + e].
void runs_to_kernel(const Plan& p, const float* dkt, float* kernel, bool accumulate) {
  const Index row = p.kt_stride;
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (Index run = 0; run < p.run_count; ++run) {
    const Index* offsets = p.order_kernel_offset + run * p.run_length;
    for (Index e0 = 0; e0 < p.run_length; e0 += 8) {
      const int elements = static_cast<int>(std::min<Index>(8, p.run_length - e0));
      for (Index f0 = 0; f0 < p.features; f0 += 8) {
        const int features = static_cast<int>(std::min<Index>(8, p.features - f0));
        const __m256i feature_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(features), iota);
        __m256 m[8];
        for (int q = 0; q < 8; ++q)
          m[q] = q < features ? _mm256_loadu_ps(dkt + (f0 + q) * row + run * p.run_padded + e0) : _mm256_setzero_ps();
        transpose8x8(m);
        for (int e = 0; e < elements; ++e) {
          float* to = kernel + offsets[e0 + e] + f0;
          if (features == 8) _mm256_storeu_ps(to, accumulate ? _mm256_add_ps(_mm256_loadu_ps(to), m[e]) : m[e]);
          else _mm256_maskstore_ps(to, feature_mask, accumulate ? _mm256_add_ps(_mm256_maskload_ps(to, feature_mask), m[e]) : m[e]);
        }
      }
    }
  }
}

// Copies `count` floats (a multiple of 8; both 32-byte aligned) with streaming stores.
void stream_copy(const float* from, float* to, Index count) {
  for (Index i = 0; i < count; i += 8) _mm256_stream_ps(to + i, _mm256_load_ps(from + i));
}

// Max pool over the `window` positions of one pooled position q (F a multiple of 8):
// blocks[k] holds position positions[k]'s N × F outputs; out and index get pooled
// position q of every sample (pooled positions per sample: pooled_positions), index
// the flat index into y (N, P, F) of the selected element. The selection is
// max_pool's: the window's taps in row-major order through select_extreme; with
// `relu`, relu of the result (as Unary::Relu: NaN passes).
void max_pool_positions(const Plan& p, const float* blocks, const Index* positions, Index window, Index q,
                        bool relu, float* out, std::int32_t* index) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const Index block = p.batch * p.features;
  for (Index n = 0; n < p.batch; ++n) {
    const Index to = (n * p.pooled_positions + q) * p.features;
    for (Index f0 = 0; f0 < p.features; f0 += 8) {
      const auto flat = [&](Index k) {
        return _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int>((n * p.positions + positions[k]) * p.features + f0)));
      };
      __m256 best = _mm256_loadu_ps(blocks + n * p.features + f0);
      __m256i arg = flat(0);
      for (Index k = 1; k < window; ++k)
        select_extreme<true>(_mm256_loadu_ps(blocks + k * block + n * p.features + f0), flat(k), best, arg);
      if (relu) best = relu_as_unary(best);
      _mm256_storeu_ps(out + to + f0, best);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(index + to + f0), arg);
    }
  }
}

}  // namespace

#pragma GCC pop_options

namespace {

// How far ahead the forward prefetches a kernel larger than kPrefetchKernelBytes.
constexpr Index kKernelPrefetchAhead = 4096;  // floats
constexpr Index kPrefetchKernelBytes = Index{8} << 20;

// The tile jobs of the per-position routines are built once per pass over the
// positions (per thread and sample group), and each position sets only the pointers
// and widths that change: default-constructing a TileJob compiles to a zeroing rep
// stos (~35 cycles, microcoded), and one per run of every position cost the 3-D
// suite layer (4,096 positions of 9 runs) 16 % of its backward.

// The forward's job for outputs whose rows are out_stride floats apart: into y (to_y),
// whose rows are scattered lines (see below), or into a scratch block.
TileJob forward_job(const Plan& p, Index out_stride, bool to_y) {
  TileJob job;
  job.steps = p.patch;
  job.a.stride = p.sample_stride;  // rows: samples
  job.a_table = p.patch_offset;
  job.b_step = p.features;
  job.out.stride = out_stride;
  // y's rows are N scattered lines per position: fetch the next position's while
  // computing this one (forward_position); or, for an output far larger than L2
  // (stream_y), write them with streaming stores and fetch nothing (see
  // conv_local_forward_fast).
  job.stream_out = to_y && p.stream_y;
  job.scattered_rows = to_y;
  // The kernel is read once per step, position after position; one larger than the
  // caches comes from memory (each line used by ⌈N/8⌉ tiles): fetch 16 KiB ahead
  // into L2, into the next positions' blocks. 1 thread: DeepFace's 7×7 stride-2
  // layer (31 MB kernel, N = 8) −19 %, the 1-D suite layer (19 MB) −4 %. Only for
  // such kernels: B SAME's 3.6 MB one stays in L3 from step to step, and its 8
  // tiles per position each prefetching cost it 2–3 %.
  const bool kernel_from_memory = p.positions * p.patch * p.features * Index{sizeof(float)} >= kPrefetchKernelBytes;
  job.prefetch_b = kernel_from_memory ? kKernelPrefetchAhead : 0;
  return job;
}

// Position `position`'s outputs of every sample, row n at out + n·out_stride, with
// `job` from forward_job.
void forward_position(const Plan& p, TileJob& job, Index position, float* out) {
  const float* kernel = p.kernel + position * p.patch * p.features;
  const bool fetch_next_rows = job.scattered_rows && !job.stream_out && position + 1 < p.positions;
  job.a.base = p.x + p.position_origin[position];
  job.prefetch_distance = fetch_next_rows ? p.features : 0;
  tiles::for_each_column_block(p.features, [&](Index f0, int columns) {
    job.b = kernel + f0;
    job.init = p.bias ? p.bias + position * p.features + f0 : nullptr;
    job.out.base = out + f0;
    job.columns = columns;
    tiles::run_tile_job(TileMode::Gather, job, p.batch);
  });
}

// The job of add_input_gradient.
TileJob input_gradient_job(const Plan& p) {
  TileJob job;
  job.steps = p.features;
  job.a_step = 1;
  job.b_step = p.kt_stride;
  job.out.stride = p.sample_stride;
  return job;
}

// Adds position `position`'s share of d_x for `rows` samples: row k of `cotangent`
// (a sample's F cotangent values, consecutive) times the position's kernel, transposed
// into `kt` (F × kt_stride floats, zero in the padding columns) by the caller, into the
// sample's patch in d_x (`d_x` is the first row's padded sample). `job` from
// input_gradient_job.
void add_input_gradient(const Plan& p, TileJob& job, Index position, tiles::Rows<const float> cotangent, Index rows,
                        float* d_x, const float* kt) {
  const Index origin = p.position_origin[position];
  job.a = cotangent;  // rows: samples
  for (Index run = 0; run < p.run_count; ++run) {
    tiles::for_each_column_block(p.run_padded, [&](Index e0, int columns) {
      job.b = kt + run * p.run_padded + e0;
      job.out.base = d_x + origin + p.run_offset[run] + e0;
      job.columns = static_cast<int>(std::min<Index>(p.run_length - e0, columns));
      tiles::run_tile_job(TileMode::Add, job, rows);
    });
  }
}

// The kernel block of `position`, transposed into runs (the next one prefetched).
void transpose_position_kernel(const Plan& p, Index position, float* kt) {
  const float* kernel = p.kernel + position * p.patch * p.features;
  transpose_kernel_to_runs(p, kernel, position + 1 < p.positions ? kernel + p.patch * p.features : nullptr, kt);
}

// d_kernel of one position by runs (Plan::d_kernel_by_runs): the product
// dkt[f][run·run_padded + e] = Σ_n dy[n, f] · x[n, i(run, e)] with the features as
// rows and each run's elements as columns (for B with F = 20: 20 rows × 48 columns,
// three whole zmm per row, where 144 patch rows × 20 feature columns fill 20 of the 32
// lanes of two), then runs_to_kernel into d_kernel. Each sum takes the same products
// in the same order as the tiles by features: the same bits.
// `job` from kernel_gradient_job; `staged` (patch·F floats) for stage_d_kernel.
void kernel_gradient_by_runs(const Plan& p, TileJob& job, Index position, float* dkt, float* staged) {
  const Index origin = p.position_origin[position];
  for (Index run = 0; run < p.run_count; ++run)
    tiles::for_each_column_block(p.run_length, [&](Index e0, int columns) {
      job.b = p.x + origin + p.run_offset[run] + e0;
      job.out.base = dkt + run * p.run_padded + e0;
      job.columns = columns;
      tiles::run_tile_job(TileMode::Stride, job, p.features);
    });
  float* d_kernel = p.d_kernel + position * p.patch * p.features;
  if (!p.stage_d_kernel) return runs_to_kernel(p, dkt, d_kernel, p.accumulate);
  runs_to_kernel(p, dkt, staged, false);
  stream_copy(staged, d_kernel, p.patch * p.features);
}

// d_kernel is as large as the kernel (0.4–19 MB in the ConvLocal suite), written once
// and next read by the optimizer: streaming stores skip reading every line before
// writing it (3-D layer −17 % of its step, B −11 to −14 %). The tiles by features
// stream its rows themselves where every vector of every row is aligned (F a multiple
// of 16, or F = 8): with F = 20 half the rows would mix streaming and cached stores in
// one line (+7 %). Elsewhere a position's block is staged (Plan::stage_d_kernel).
bool tiles_stream_d_kernel(const Plan& p) {
  return !p.d_kernel_by_runs && (p.features % 16 == 0 || p.features == 8);
}

// The kernel gradient's job for a cotangent block of block_stride-float rows: by runs
// (kernel_gradient_by_runs: rows features, b the x run of each sample) or by features
// (backward_position: rows the patch elements in run order, neighbours in x, so each
// sample's reads stay within a few cache lines, written to their natural kernel rows;
// b the cotangent row of each sample).
TileJob kernel_gradient_job(const Plan& p, const float* block) {
  TileJob job;
  job.steps = p.batch;
  if (p.d_kernel_by_runs) {
    job.a = {block, 0, p.feature_index};
    job.a_step = p.block_stride;
    job.b_step = p.sample_stride;
    job.out.offsets = p.feature_row;
    return job;
  }
  job.a.offsets = p.order_offset;
  job.a_step = p.sample_stride;
  job.b_step = p.block_stride;
  job.out.offsets = p.order_kernel_offset;
  job.stream_out = p.stream_d_kernel && tiles_stream_d_kernel(p);
  job.accumulate = p.accumulate;
  return job;
}

// The jobs of backward_position.
struct BackwardJobs {
  TileJob d_kernel, d_x;
};

// The buffers of backward_position: the cotangent block (N × block_stride floats),
// kt (F × kt_stride, zero in the padding columns; for d_x), dkt (F × kt_stride; for
// d_kernel_by_runs) and staged (patch·F; for stage_d_kernel).
struct PositionBuffers {
  float *block, *kt, *dkt, *staged;
};

// d_bias, d_kernel and d_x of one position; `jobs` from kernel_gradient_job(p,
// buffers.block) and input_gradient_job(p).
void backward_position(const Plan& p, BackwardJobs& jobs, Index position, const PositionBuffers& buffers) {
  const Index origin = p.position_origin[position];
  float* const block = buffers.block;
  gather_cotangent(p, position, block);
  if (p.d_kernel && p.d_kernel_by_runs) {
    kernel_gradient_by_runs(p, jobs.d_kernel, position, buffers.dkt, buffers.staged);
  } else if (p.d_kernel) {
    float* const d_kernel = p.d_kernel + position * p.patch * p.features;
    float* const to = p.stage_d_kernel ? buffers.staged : d_kernel;
    TileJob& job = jobs.d_kernel;
    job.a.base = p.x + origin;
    tiles::for_each_column_block(p.features, [&](Index f0, int columns) {
      job.b = block + f0;
      job.out.base = to + f0;
      job.columns = columns;
      tiles::run_tile_job(TileMode::Stride, job, p.patch);
    });
    if (p.stage_d_kernel) stream_copy(buffers.staged, d_kernel, p.patch * p.features);
  }
  if (p.d_x) {
    transpose_position_kernel(p, position, buffers.kt);
    add_input_gradient(p, jobs.d_x, position, {block, p.block_stride, nullptr}, p.batch, p.d_x, buffers.kt);
  }
}

// backward_position for positions [first, last); where it pays, once per sample group
// (see kMaxStreams), each group reading its rows of dy, adding its samples' terms into
// d_x and its share into d_kernel and d_bias. It pays where d_kernel stays in L2 between
// the groups, next to everything else a position reads: suite layer A (0.4 MB),
// 1 thread, backward 0.55 → 0.43 ms with its data out of the caches and 0.41 → 0.31 ms
// in them (Intel Xeon family 6 model 167). B with stride 2 (0.9 MB, with d_x) was 12 %
// slower in groups, B (2.65 MB) 10–20 %: d_kernel comes back from L3 for the second
// group (and is no longer streamed out), and each group transposes every kernel block
// again for d_x. The choice depends on the shape alone, so d_kernel has the same bits
// with or without d_x and at any thread count. `block` holds N × block_stride floats.
void backward_positions(const Plan& p, Index first, Index last, float* block, float* kt) {
  const bool grouped = p.positions * p.patch * p.features * Index{sizeof(float)} <= kGroupedKernelBytes;
  const Index group = grouped ? sample_group_size(p.batch) : p.batch;
  Plan samples = p;
  samples.stream_d_kernel = group == p.batch;
  // Where the tiles cannot stream d_kernel out (tiles_stream_d_kernel), a position's
  // block, whole 64-byte lines when patch·F is a multiple of 16, is staged in L1 and
  // streamed out from there. Suite layer B with F = 20, alternating, 1 thread: by runs
  // 75–77 → 82–85 % of B VALID's GFLOP/s; by features (AVX2 tiles) 5.48–5.57 →
  // 5.31–5.45 ms.
  const Index count = p.patch * p.features;
  samples.stage_d_kernel = p.d_kernel && samples.stream_d_kernel && !tiles_stream_d_kernel(p) && count % 16 == 0 &&
                           reinterpret_cast<std::uintptr_t>(p.d_kernel) % 64 == 0;
  const Index dkt_size = p.d_kernel_by_runs ? p.features * p.kt_stride : 0;
  AlignedBuffer scratch(dkt_size + (samples.stage_d_kernel ? count : 0));
  const PositionBuffers buffers{block, kt, scratch.data, scratch.data + dkt_size};
  for (Index n0 = 0; n0 < p.batch; n0 += group) {
    samples.batch = std::min(group, p.batch - n0);
    samples.accumulate = n0 > 0;
    samples.first_sample = n0;
    if (p.dy) samples.dy = p.dy + n0 * p.positions * p.features;
    if (p.x) samples.x = p.x + n0 * p.sample_stride;
    if (p.d_x) samples.d_x = p.d_x + n0 * p.sample_stride;
    BackwardJobs jobs{kernel_gradient_job(samples, block), input_gradient_job(samples)};
    for (Index position = first; position < last; ++position) backward_position(samples, jobs, position, buffers);
  }
}

// d_x of samples [first, last), every position in order, the cotangent read from dy
// in place. Each element of d_x receives the same terms in the same order as from
// backward_position over the positions in order: the same bits.
void input_gradient_of_samples(const Plan& p, Index first, Index last, float* kt) {
  const Index row_stride = p.positions * p.features;
  TileJob job = input_gradient_job(p);
  for (Index position = 0; position < p.positions; ++position) {
    transpose_position_kernel(p, position, kt);
    add_input_gradient(p, job, position, {p.dy + first * row_stride + position * p.features, row_stride, nullptr},
                       last - first, p.d_x + first * p.sample_stride, kt);
  }
}

// d_x of a 1-D layer (one spatial axis, undilated kernel), output-stationary: each
// block of 16 consecutive floats of a sample's d_x (16/C input positions × C channels)
// is one sum over the (position, feature) pairs whose patch covers it, computed in
// registers and stored once, straight into the caller's unpadded d_x:
//
//   d_x[n, u .. u+16) = Σ_p Σ_f dy[n, p, f] · kernel[p][u + pad − origin(p) .. +16)[f]
//
// (the kernel row read at an offset, zero outside the patch). Rows are samples; the
// cotangent of a sample is contiguous over (p, f), so the contraction reads it with
// a unit step. The kernels of consecutive positions are transposed into one buffer
// (F rows of W = patch + 16 floats each, the patch followed by 16 zeros, positions
// F·W + s·C floats apart, s the stride), so that stepping from (p, F−1) to (p+1, 0)
// moves by W as every other step does: one tile job per block, b_step = W. Against
// adding each position's 32 × 72 product into a padded d_x (4 column blocks + 8, 16
// steps each, then a read-modify-write of the 8 output rows): 10 × 16 = 160 steps
// per stored vector, no zeroing, no crop, no read of d_x. A block meets the patches of
// up to ⌈(16 + patch − 1)/(s·C)⌉ positions, each float of it fewer (the rest of the
// contraction reads zeros): on the 1-D suite layer (k 9, C 8) 10 positions, 9 per float.
// Each element's terms are summed in (position, feature) order whatever the thread
// split (threads take ranges of blocks): the same bits at any thread count.
struct Direct1d {
  Index width;           // W: a transposed kernel row, patch + 16 zeros
  Index position_pitch;  // F·W + s·C: where the next position's rows start
  Index lead = 16;       // zeros before the first row (reads start up to 15 floats early)
  Index origin_step;     // s·C: patch origins of consecutive positions
  Index pad;             // padded float index = input float index + pad
  Index sample;          // floats per input sample (L·C)
  Index blocks;          // 16-float blocks per sample
  Index chunk_blocks;    // blocks per transposed chunk of positions
  Index chunk_positions; // the most positions a chunk of blocks needs
};

// The 1-D d_x (above) applies: one spatial axis with more than one position (the
// leading unit axes of fast_geometry), an undilated kernel, and patch origins at least
// 8 floats apart (a block of 16 then meets ≤ k + 1 positions: C = 1 with a long kernel
// would compute mostly zeros).
bool direct_1d_applies(const tiles::FastGeometry& g) {
  return g.padded[0] == 1 && g.padded[1] == 1 && g.kernel[0] == 1 && g.kernel[1] == 1 && g.dilation[2] == 1 &&
         g.stride[2] * g.channels >= 8;
}

Direct1d direct_1d_layout(const tiles::FastGeometry& g, const Plan& p) {
  Direct1d d;
  d.width = p.patch + 16;
  d.origin_step = g.stride[2] * g.channels;
  d.position_pitch = p.features * d.width + d.origin_step;
  d.pad = g.pad_lo[2] * g.channels;
  d.sample = g.input[2] * g.channels;
  d.blocks = (d.sample + 15) / 16;
  // Chunks of 32 blocks (512 floats of d_x): the transposed kernels of a chunk
  // (≤ 512/(s·C) + k + 1 positions of F·W floats; ~400 KB on the 1-D suite layer)
  // stay in L2. 16 and 64 measured the same.
  d.chunk_blocks = 32;
  d.chunk_positions = (d.chunk_blocks * 16 + p.patch + d.origin_step - 1) / d.origin_step + 2;
  return d;
}

// Positions [first, last) whose patch covers padded floats [v, v + 16), clipped to
// the layer's positions (empty for floats outside the padded input: a crop).
void covering_positions(const Plan& p, const Direct1d& d, Index v, Index& first, Index& last) {
  first = std::max<Index>(0, floor_div(v - p.patch, d.origin_step) + 1);
  last = std::min<Index>(p.positions, floor_div(v + 15, d.origin_step) + 1);
  if (last < first) last = first;
}

// d_x blocks [block_begin, block_end) of every sample. `kt` holds chunk_positions ·
// position_pitch + 2·lead floats, zero outside the transposed kernels.
void input_gradient_1d(const Plan& p, const Direct1d& d, Index block_begin, Index block_end, float* d_x,
                       const Index* dy_rows, const Index* dx_rows, float* kt) {
  Plan rows = p;
  rows.kt_stride = d.width;
  TileJob job;  // (built once, see forward_job)
  job.a = {nullptr, 0, dy_rows};  // rows: samples; (p, f) contiguous
  job.a_step = 1;
  job.b_step = d.width;
  job.out = {nullptr, 0, dx_rows};
  for (Index chunk = block_begin; chunk < block_end; chunk += d.chunk_blocks) {
    const Index chunk_end = std::min(block_end, chunk + d.chunk_blocks);
    Index first = 0, last = 0, unused = 0;
    covering_positions(p, d, chunk * 16 + d.pad, first, unused);
    covering_positions(p, d, (chunk_end - 1) * 16 + d.pad, unused, last);
    for (Index position = first; position < last; ++position) {
      const float* kernel = p.kernel + position * p.patch * p.features;
      transpose_kernel_to_runs(rows, kernel, position + 1 < last ? kernel + p.patch * p.features : nullptr,
                               kt + d.lead + (position - first) * d.position_pitch);
    }
    for (Index block = chunk; block < chunk_end; ++block) {
      const Index u = block * 16, v = u + d.pad;
      Index lo = 0, hi = 0;
      covering_positions(p, d, v, lo, hi);
      job.steps = (hi - lo) * p.features;
      job.a.base = p.dy + lo * p.features;
      job.b = kt + d.lead + (lo - first) * d.position_pitch + (v - p.position_origin[lo < hi ? lo : 0]);
      job.out.base = d_x + u;
      job.columns = static_cast<int>(std::min<Index>(16, d.sample - u));
      tiles::run_tile_job(TileMode::Stride, job, p.batch);
    }
  }
}

// Offset tables behind a Plan.
struct Layout {
  std::vector<Index> position_origin, patch_offset, order_offset, order_kernel_offset, run_offset, feature_index,
      feature_row;
  Plan plan{};

  explicit Layout(const tiles::FastGeometry& g) {
    const Index taps = g.taps(), c = g.channels, k_last = g.kernel[2];
    const bool merged = g.dilation[2] == 1;
    position_origin = g.position_origins();
    for (Index i = 0; i < c * taps; ++i) patch_offset.push_back(g.tap_offset(i % taps) + i / taps);
    // Run order: kernel rows (merged) or taps, then within a run (kx,) c.
    const Index run_count = merged ? taps / k_last : taps;
    for (Index run = 0; run < run_count; ++run) {
      run_offset.push_back(g.tap_offset(merged ? run * k_last : run));
      for (Index kx = 0; kx < (merged ? k_last : 1); ++kx) {
        const Index tap = merged ? run * k_last + kx : run;
        for (Index ch = 0; ch < c; ++ch) {
          order_offset.push_back(g.tap_offset(tap) + ch);
          order_kernel_offset.push_back((ch * taps + tap) * g.features);
        }
      }
    }
    const Index run_length = merged ? k_last * c : c;
    plan.batch = g.batch;
    plan.channels = c;
    plan.features = g.features;
    plan.block_stride = (g.features + 7) / 8 * 8;
    plan.positions = g.positions();
    plan.patch = c * taps;
    plan.sample_stride = g.sample_stride();
    plan.position_origin = position_origin.data();
    plan.patch_offset = patch_offset.data();
    plan.order_offset = order_offset.data();
    plan.order_kernel_offset = order_kernel_offset.data();
    plan.run_count = run_count;
    plan.run_length = run_length;
    plan.run_padded = (run_length + 7) / 8 * 8;
    // ≥ 8 spare columns (a d_x tile loads whole vectors of kt: two zmm over a last block
    // of 17–24 columns read up to 8 past the runs), rounded up to 16 floats so every row
    // starts on a 64-byte line: zmm loads of kt then never straddle two lines.
    plan.kt_stride = (run_count * plan.run_padded + 8 + 15) / 16 * 16;
    for (Index f = 0; f < g.features; ++f) {
      feature_index.push_back(f);
      feature_row.push_back(f * plan.kt_stride);
    }
    plan.feature_index = feature_index.data();
    plan.feature_row = feature_row.data();
    plan.d_kernel_by_runs = d_kernel_by_runs(g.features, run_length);
    plan.run_offset = run_offset.data();
    plan.taps = taps;
    plan.kernel_last = k_last;
    plan.merged = merged;
  }
};

// The forward output size from which y is written with streaming stores: 4× a
// 1 MiB L2 (Zen 4; 2 MiB on recent Intel server cores).
constexpr Index kStreamOutputBytes = Index{4} << 20;

// The most bands the d_x pass is cut into (threads beyond it idle there), and the
// fewest worth it: below, d_x is split by samples instead (see conv_local_backward_fast).
// Two bands, even uneven ones, beat the sample split, which takes two passes over the
// positions: the main job's ConvLocal (12 rows, two bands) trained 6 % slower per
// epoch with the split (24.6-25.7k vs 23.0-23.8k samples/s, interleaved, 2 threads).
constexpr Index kMaxBands = 16, kMinBands = 2;
// The fewest output rows a band of overlapping footprints takes (besides 2·h, below):
// with fewer, two bands split the rows too unevenly for the sample split to lose. B SAME
// with stride 2 (7 rows, h = 1: bands of 3 and 4 rows, one thread doing 4 of 7), 2
// threads, alternating: 0.60–0.62 ms in two bands, 0.55–0.58 split by samples (in the
// whole suite 0.75–0.80 → 0.73–0.77; 1 thread the same either way).
constexpr Index kMinBandRows = 4;

// d_kernel and d_bias only (whatever p.d_x says): positions are independent, so they
// are split evenly over the threads.
void kernel_gradients(Plan p) {
  p.d_x = nullptr;
  const Index slots = std::min<Index>(num_threads(), p.positions);
  parallel_for(slots, [&](Index slot) {
    AlignedBuffer block(p.batch * p.block_stride);
    const SlotRange range = static_slot_range(p.positions, slots, slot);
    backward_positions(p, range.begin, range.end, block.data, nullptr);
    tiles::finish_streaming();
  });
}

// How the d_x pass is split: along the outermost axis a with more than one output
// "row" (the axes before it have one). Row o reads input rows [o·s, o·s + K) along a,
// K = (k − 1)·d + 1, so rows less than h + 1 = ⌈K/s⌉ apart overlap in d_x. Bands of at
// least 2·h rows (and kMinBandRows), a power of two of them (≤ kMaxBands), so that 2, 4,
// 8 or 16 threads get even shares of each phase (see conv_local_backward_fast).
struct Bands {
  Index count, rows_total, per_row, h;
};

Bands d_x_bands(const tiles::FastGeometry& g) {
  int axis = 0;
  while (axis < 2 && g.out[static_cast<std::size_t>(axis)] == 1) ++axis;
  const auto a = static_cast<std::size_t>(axis);
  const Index rows_total = g.out[a], per_row = g.positions() / rows_total;
  const Index extent = (g.kernel[a] - 1) * g.dilation[a] + 1, h = (extent + g.stride[a] - 1) / g.stride[a] - 1;
  const Index max_bands = h > 0 ? std::max<Index>(1, rows_total / std::max(2 * h, kMinBandRows)) : rows_total;
  Index bands = 1;
  while (2 * bands <= std::min<Index>(kMaxBands, max_bands)) bands *= 2;
  return {bands, rows_total, per_row, h};
}

}  // namespace

bool conv_local_fast_supported(const ConvGeometry& g, std::int64_t features) {
  return tiles::fast_geometry_supported(g, features) && tiles::cpu_supported();
}

void conv_local_forward_fast(const ConvGeometry& geometry, std::int64_t features, const float* x,
                             const float* kernel, const float* bias, float* y) {
  const tiles::FastGeometry g = tiles::fast_geometry(geometry, features);
  Layout layout(g);
  Plan& plan = layout.plan;
  plan.x = tiles::padded_input(g, x);
  plan.kernel = kernel;
  plan.bias = bias;
  // y's rows of one position are N single lines P·F floats apart: with P·F·4 bytes a
  // multiple of the L2's set span (the 1-D layer: 256 KiB) all N fall into one set of
  // L1 and of L2, so the prefetched lines evict each other and every store becomes a
  // read of the line from L3 or memory first. Where y is far larger than an L2 (so the
  // next layer finds little of it there anyway), streaming stores skip that read: on
  // the 1-D suite layer (y 8.4 MB) the step takes 14.2 instead of 15.3–15.7 ms; B VALID
  // (1.2 MB, not streamed) was neutral either way. Only where a row is whole 64-byte
  // lines (F a multiple of 16): unlike d_kernel's rows, consecutive rows of a tile here
  // are other samples, so an F = 8 row would leave half-written lines behind.
  const Index y_bytes = plan.batch * plan.positions * plan.features * static_cast<Index>(sizeof(float));
  plan.stream_y = y_bytes >= kStreamOutputBytes && plan.features % 16 == 0;
  const Index positions = plan.positions;
  // Contiguous ranges, not one chunk per position: forward_position prefetches the
  // next position's operands (measured on B at 2 threads: 0.48 vs 0.50 ms).
  const Index slots = std::min<Index>(num_threads(), positions);
  // Each thread takes its positions once per sample group (see kMaxStreams).
  const Index group = sample_group_size(plan.batch), row_stride = positions * plan.features;
  parallel_for(slots, [&](Index slot) {
    const SlotRange range = static_slot_range(positions, slots, slot);
    Plan samples = plan;
    TileJob job = forward_job(plan, row_stride, true);
    for (Index n0 = 0; n0 < plan.batch; n0 += group) {
      samples.batch = std::min(group, plan.batch - n0);
      samples.x = plan.x + n0 * plan.sample_stride;
      for (Index position = range.begin; position < range.end; ++position)
        forward_position(samples, job, position, y + n0 * row_stride + position * plan.features);
    }
    tiles::finish_streaming();
  });
}

namespace {

// A 2-D layer's positions grouped into disjoint pooling windows (row-major pooled
// positions, each window's positions row-major); rows and columns past the last whole
// window belong to none.
struct PoolWindows {
  Index window, pooled;
  std::vector<Index> positions;  // pooled · window: the positions of each window
  std::vector<Index> pooled_of;  // position -> its window, −1 for none
  PoolWindows(const tiles::FastGeometry& g, Index window_h, Index window_w) {
    const Index height = g.out[1], width = g.out[2], pooled_w = width / window_w;  // (out[0] = 1: 2-D)
    window = window_h * window_w;
    pooled = height / window_h * pooled_w;
    pooled_of.assign(static_cast<std::size_t>(height * width), -1);
    for (Index q = 0; q < pooled; ++q)
      for (Index k = 0; k < window; ++k) {
        const Index position = (q / pooled_w * window_h + k / window_w) * width + q % pooled_w * window_w + k % window_w;
        positions.push_back(position);
        pooled_of[static_cast<std::size_t>(position)] = q;
      }
  }
};

}  // namespace

void conv_local_forward_max_pool_fast(const ConvGeometry& geometry, std::int64_t features, const float* x,
                                      const float* kernel, const float* bias, std::int64_t window_h,
                                      std::int64_t window_w, bool relu, float* out, std::int32_t* index) {
  const tiles::FastGeometry g = tiles::fast_geometry(geometry, features);
  Layout layout(g);
  Plan& plan = layout.plan;
  plan.x = tiles::padded_input(g, x);
  plan.kernel = kernel;
  plan.bias = bias;
  const PoolWindows windows(g, window_h, window_w);
  plan.pooled_positions = windows.pooled;
  // Pooled positions split as the unpooled forward splits positions (contiguous
  // ranges), so each thread reads the kernel rows of about the same positions.
  const Index slots = std::min<Index>(num_threads(), windows.pooled);
  parallel_for(slots, [&](Index slot) {
    const Index block = plan.batch * plan.features;  // one position's outputs, samples F apart
    float* blocks = conv_scratch<float>(ConvScratch::PooledRows, static_cast<std::size_t>(windows.window * block));
    const SlotRange range = static_slot_range(windows.pooled, slots, slot);
    TileJob job = forward_job(plan, plan.features, false);
    for (Index q = range.begin; q < range.end; ++q) {
      const Index* positions = windows.positions.data() + q * windows.window;
      for (Index k = 0; k < windows.window; ++k) forward_position(plan, job, positions[k], blocks + k * block);
      max_pool_positions(plan, blocks, positions, windows.window, q, relu, out, index);
    }
  });
}

namespace {

// The passes of conv_local_backward_fast for plan's cotangent (plan.dy, or given
// pooled: plan.pooled_of), plan.kernel set.
void backward(const tiles::FastGeometry& g, Plan& plan, const float* x, float* d_x, float* d_kernel, float* d_bias) {
  plan.x = d_kernel ? tiles::padded_input(g, x) : nullptr;
  if (d_x && direct_1d_applies(g)) {
    // 1-D: d_x output-stationary, straight into the caller's d_x (input_gradient_1d),
    // after the kernel gradients (split by positions).
    plan.d_kernel = d_kernel;
    plan.d_bias = d_bias;
    if (d_kernel || d_bias) kernel_gradients(plan);
    const Direct1d direct = direct_1d_layout(g, plan);
    std::vector<Index> dy_rows(static_cast<std::size_t>(plan.batch)), dx_rows(dy_rows.size());
    for (Index n = 0; n < plan.batch; ++n) {
      dy_rows[static_cast<std::size_t>(n)] = n * plan.positions * plan.features;
      dx_rows[static_cast<std::size_t>(n)] = n * direct.sample;
    }
    const Index slots = std::min<Index>(num_threads(), direct.blocks);
    parallel_for(slots, [&](Index slot) {
      AlignedBuffer kt(2 * direct.lead + direct.chunk_positions * direct.position_pitch);
      const SlotRange range = static_slot_range(direct.blocks, slots, slot);
      input_gradient_1d(plan, direct, range.begin, range.end, d_x, dy_rows.data(), dx_rows.data(), kt.data);
    });
    return;
  }
  const Bands bands = d_x_bands(g);
  const Index threads = std::min<Index>(num_threads(), plan.batch);
  // Too few rows for bands that keep two threads busy (below): d_x by samples, each
  // thread zeroing, filling and cropping its own samples of the padded d_x.
  const bool by_samples = bands.count < kMinBands && threads > 1;
  plan.d_x = !d_x ? nullptr : by_samples ? tiles::padded_input_gradient_unzeroed(g, d_x) : tiles::padded_input_gradient(g, d_x);
  plan.d_kernel = d_kernel;
  plan.d_bias = d_bias;
  const Index block_size = plan.batch * plan.block_stride;
  const Index kt_size = d_x ? plan.features * plan.kt_stride : 0;

  if (!d_x) {
    kernel_gradients(plan);
    return;
  }

  // d_x in bands of output rows (d_x_bands). Each band of rows first does the rows
  // whose footprint stays clear of the next band, then, once every band has (the
  // second parallel_for), its last h rows. Bands of at least 2·h rows keep the
  // second-phase footprints of neighbouring bands disjoint.
  // The bands fix the order in which rows add into a shared d_x element (a band's
  // head before the previous band's tail), so their number depends on the shape
  // alone, never on the thread count: d_x has the same bits at any thread count.
  if (bands.count < kMinBands) {
    // Too few rows for bands that keep two threads busy (B SAME with kernel dilation 2:
    // 14 rows with footprints of 5; with stride 2: 7 rows, see kMinBandRows). d_x
    // takes the positions in order, as one band would, so the bits are those of one
    // band at any thread count: on one thread the fused pass, on more the kernel
    // gradients split by positions and then d_x split by samples, whose footprints
    // never overlap (each thread zeroes, fills and crops its samples while they are
    // in its cache: no separate passes, no hand-offs to the pool for them).
    if (!by_samples) {
      AlignedBuffer block(block_size), kt(kt_size);
      backward_positions(plan, 0, plan.positions, block.data, kt.data);
      tiles::finish_streaming();
      tiles::crop_input_gradient(g, plan.d_x, d_x);
      return;
    }
    if (d_kernel || d_bias) kernel_gradients(plan);
    parallel_for(threads, [&](Index slot) {
      AlignedBuffer kt(kt_size);
      const SlotRange range = static_slot_range(plan.batch, threads, slot);
      std::fill(plan.d_x + range.begin * plan.sample_stride, plan.d_x + range.end * plan.sample_stride, 0.0f);
      input_gradient_of_samples(plan, range.begin, range.end, kt.data);
      for (Index n = range.begin; n < range.end; ++n) tiles::crop_input_gradient_sample(g, plan.d_x, d_x, n);
    });
    return;
  }
  const Index h = bands.h, rows_total = bands.rows_total, per_row = bands.per_row, band_count = bands.count;
  auto rows = [&](Index first, Index last) {
    AlignedBuffer block(block_size), kt(kt_size);
    backward_positions(plan, first * per_row, last * per_row, block.data, kt.data);
    tiles::finish_streaming();
  };
  auto band_begin = [&](Index band) { return band * rows_total / band_count; };
  auto band_split = [&](Index band) { return std::max(band_begin(band), band_begin(band + 1) - h); };
  parallel_for(band_count, [&](Index band) { rows(band_begin(band), band_split(band)); });
  parallel_for(band_count, [&](Index band) { rows(band_split(band), band_begin(band + 1)); });
  tiles::crop_input_gradient(g, plan.d_x, d_x);
}

}  // namespace

void conv_local_backward_fast(const ConvGeometry& geometry, std::int64_t features, const float* x,
                              const float* kernel, const float* dy, float* d_x, float* d_kernel, float* d_bias) {
  const tiles::FastGeometry g = tiles::fast_geometry(geometry, features);
  Layout layout(g);
  layout.plan.kernel = kernel;
  layout.plan.dy = dy;
  backward(g, layout.plan, x, d_x, d_kernel, d_bias);
}

void conv_local_backward_max_pooled_fast(const ConvGeometry& geometry, std::int64_t features, const float* x,
                                         const float* kernel, const PooledCotangent& pooled, float* d_x,
                                         float* d_kernel, float* d_bias) {
  const tiles::FastGeometry g = tiles::fast_geometry(geometry, features);
  const PoolWindows windows(g, pooled.window_h, pooled.window_w);
  const Index threads = std::min<Index>(num_threads(), g.batch);
  if (d_x && (direct_1d_applies(g) || (d_x_bands(g).count < kMinBands && threads > 1))) {
    // These d_x passes read dy in place: write it out, zero but each selected element
    // (what the pool's and the relu's VJPs write), and take the plain backward.
    const Index positions = g.positions(), pooled_size = g.batch * windows.pooled * features;
    AlignedBuffer dy(g.batch * positions * features);
    pooled.scatter(0, pooled_size, 0, dy.data);
    conv_local_backward_fast(geometry, features, x, kernel, dy.data, d_x, d_kernel, d_bias);
    return;
  }
  Layout layout(g);
  Plan& plan = layout.plan;
  plan.kernel = kernel;
  plan.pooled_of = windows.pooled_of.data();
  plan.pooled_positions = windows.pooled;
  plan.pooled = pooled;
  backward(g, plan, x, d_x, d_kernel, d_bias);
}

bool conv_local_d_kernel_by_runs(const ConvGeometry& geometry, std::int64_t features) {
  return Layout(tiles::fast_geometry(geometry, features)).plan.d_kernel_by_runs;
}

void set_conv_local_fast_enabled(bool enabled) { tiles::set_fast_enabled(enabled); }
bool conv_local_fast_enabled() { return tiles::fast_enabled(); }
void set_conv_local_avx512_allowed(bool allowed) { tiles::set_avx512_allowed(allowed); }
bool conv_local_avx512_active() { return tiles::avx512_active(); }

}  // namespace xgrad::kernels
