// Direct shared-weight convolution on the tile engine (conv_tiles.hpp). The three
// products are GEMM-shaped:
//
//   forward   rows = the output positions of one output line (o along the last axis,
//             s·C apart in x), columns = features f, contraction over the patch
//             i = tap·C + c (= the HWIO kernel row)
//   d_kernel  rows = patch elements i, columns = f, contraction over all positions of a
//             block of samples (the accumulators stay in registers across them)
//   d_x       rows = the output positions of one output line, columns = a "run" of d_x
//             (a kernel row's kw·C consecutive values when the last axis is undilated,
//             else one tap's C), contraction over f; the tile adds its result into d_x
//             (scatter form: no multiply-adds are spent on the zero border a gather
//             form would need)
//
// Geometry: conv_fast_geometry.hpp turns 1-D/2-D into 3-D with unit axes and the
// padding into a padded copy of x (and a padded d_x that is cropped at the end).
// Work is split over output lines (forward), samples (d_x: a sample's lines overlap
// in d_x) and fixed sample blocks (d_kernel, reduced in block order), so every result
// is the same for any thread count.
//
// Conv + max pool (2-D, disjoint windows): the forward computes a pooled row's conv
// lines into per-thread scratch and pools them there (max_pool_rows), and the kernel
// gradient builds each sample block's cotangent from the pooled one in scratch, so
// neither pass touches a whole conv-sized tensor.
#include "core/kernels/conv/conv_shared_fast.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

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

// The sizes and offset tables of one convolution (x already padded).
struct Plan {
  tiles::FastGeometry g;
  Index channels, features, patch, sample_stride, positions;
  Index line_length, lines_per_sample;  // a line: the outputs along the last axis
  Index row_step;                       // x distance between neighbours on a line: s·C
  std::vector<Index> patch_offset;      // i = tap·C + c -> xp offset from the patch origin
  Index run_count, run_length, run_padded;  // d_x runs; run_padded: run_length rounded up to 8
  std::vector<Index> run_offset;            // run -> xp offset from the patch origin
  Index taps, kernel_last;
  bool merged;  // a run is a whole kernel row (last axis undilated)

  explicit Plan(const tiles::FastGeometry& geometry)
      : g(geometry), channels(g.channels), features(g.features), patch(g.taps() * g.channels),
        sample_stride(g.sample_stride()), positions(g.positions()), line_length(g.out[2]),
        lines_per_sample(g.out[0] * g.out[1]), row_step(g.stride[2] * g.channels), taps(g.taps()),
        kernel_last(g.kernel[2]), merged(g.dilation[2] == 1) {
    for (Index i = 0; i < patch; ++i) patch_offset.push_back(g.tap_offset(i / channels) + i % channels);
    run_count = merged ? taps / kernel_last : taps;
    run_length = merged ? kernel_last * channels : channels;
    run_padded = (run_length + 7) / 8 * 8;
    for (Index run = 0; run < run_count; ++run) run_offset.push_back(g.tap_offset(merged ? run * kernel_last : run));
  }
  // The patch origin of a line's first output within its sample.
  Index line_origin(Index line_in_sample) const {
    const Index o0 = line_in_sample / g.out[1], o1 = line_in_sample % g.out[1];
    return o0 * g.stride[0] * g.axis_stride(0) + o1 * g.stride[1] * g.axis_stride(1);
  }
};

}  // namespace

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace {

// out[f] = Σ_q rows[q·F + f] over `count` rows of F values: 8 columns at a time, two
// rows per step into separate accumulators.
void column_sums(const float* rows, Index count, Index features, float* out) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (Index f0 = 0; f0 < features; f0 += 8) {
    const int lanes = static_cast<int>(std::min<Index>(8, features - f0));
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), iota);
    __m256 even = _mm256_setzero_ps(), odd = _mm256_setzero_ps();
    const float* row = rows + f0;
    Index q = 0;
    for (; q + 1 < count; q += 2, row += 2 * features) {
      even = _mm256_add_ps(even, _mm256_maskload_ps(row, mask));
      odd = _mm256_add_ps(odd, _mm256_maskload_ps(row + features, mask));
    }
    if (q < count) even = _mm256_add_ps(even, _mm256_maskload_ps(row, mask));
    _mm256_maskstore_ps(out + f0, mask, _mm256_add_ps(even, odd));
  }
}

// The max pool of `window_h` conv output rows held in `rows` (each `width` outputs of
// F floats) over disjoint windows of window_h × window_w: pooled row of `pooled_width`
// outputs into `out`, and into `index` the flat index in the conv output of each
// window's selected element (`base`: the flat index of rows[0]). The selection is
// max_pool's: the window's taps in row-major order through select_extreme. With
// `stream_index` (index 32-byte aligned) the index is written with streaming stores
// (see conv_shared_forward_max_pool_fast).
void max_pool_rows(const float* rows, Index width, Index features, Index window_h, Index window_w,
                   Index pooled_width, std::int64_t base, bool relu, bool stream_index, float* out,
                   std::int32_t* index) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (Index c = 0; c < pooled_width; ++c) {
    for (Index f0 = 0; f0 < features; f0 += 8) {
      const Index first = c * window_w * features + f0;
      __m256 best = _mm256_loadu_ps(rows + first);
      __m256i arg = _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int>(base + first)));
      for (Index dr = 0; dr < window_h; ++dr) {
        for (Index dc = dr == 0 ? 1 : 0; dc < window_w; ++dc) {
          const Index at = (dr * width + c * window_w + dc) * features + f0;
          const __m256i here = _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int>(base + at)));
          select_extreme<true>(_mm256_loadu_ps(rows + at), here, best, arg);
        }
      }
      if (relu) best = relu_as_unary(best);
      _mm256_storeu_ps(out + c * features + f0, best);
      auto* to = reinterpret_cast<__m256i*>(index + c * features + f0);
      if (stream_index) _mm256_stream_si256(to, arg);
      else _mm256_storeu_si256(to, arg);
    }
  }
}

}  // namespace

#pragma GCC pop_options

namespace {

// The job of forward_line. (Built once per range of lines, each line setting only
// its pointers: default-constructing a TileJob compiles to a microcoded rep stos, as
// costly as a short line's tiles; see conv_local_fast.cpp.)
TileJob forward_line_job(const Plan& p) {
  TileJob job;
  job.steps = p.patch;
  job.a.stride = p.row_step;
  job.a_table = p.patch_offset.data();
  job.b_step = p.features;
  job.out.stride = p.features;
  return job;
}

// Output line `line` (= n·lines_per_sample + line within the sample) into `out`
// (line_length outputs of F floats, one after another); `job` from forward_line_job.
void forward_line(const Plan& p, TileJob& job, const float* xp, const float* kernel, const float* bias, float* out,
                  Index line) {
  const Index n = line / p.lines_per_sample;
  job.a.base = xp + n * p.sample_stride + p.line_origin(line % p.lines_per_sample);
  tiles::for_each_column_block(p.features, [&](Index f0, int columns) {
    job.b = kernel + f0;
    job.init = bias ? bias + f0 : nullptr;
    job.out.base = out + f0;
    job.columns = columns;
    tiles::run_tile_job(TileMode::Gather, job, p.line_length);
  });
}

// Adds sample n's share of d_x into dxp (padded, zeroed). `kt` is the kernel as
// kt[f][run·run_padded + e], zero in each run's padding columns.
void input_vjp_sample(const Plan& p, const float* dy, const float* kt, float* dxp, Index n) {
  TileJob job;  // (built once, see forward_line_job)
  job.steps = p.features;
  job.a.stride = p.features;  // rows: outputs on the line
  job.a_step = 1;
  job.b_step = p.run_count * p.run_padded;
  job.out.stride = p.row_step;
  for (Index l = 0; l < p.lines_per_sample; ++l) {
    const Index line = n * p.lines_per_sample + l;
    const Index origin = n * p.sample_stride + p.line_origin(l);
    job.a.base = dy + line * p.line_length * p.features;
    for (Index run = 0; run < p.run_count; ++run) {
      tiles::for_each_column_block(p.run_padded, [&](Index e0, int columns) {
        job.b = kt + run * p.run_padded + e0;
        job.out.base = dxp + origin + p.run_offset[run] + e0;
        job.columns = static_cast<int>(std::min<Index>(p.run_length - e0, columns));
        tiles::run_tile_job(TileMode::Add, job, p.line_length);
      });
    }
  }
}

// partial (patch × F) = the kernel gradient of samples [first, first + count), whose
// cotangents start at block_dy. position_offset lists the patch origins of every
// position of `count` samples.
void kernel_vjp_block(const Plan& p, const float* xp, const float* block_dy, const Index* position_offset,
                      Index first, Index count, float* partial) {
  tiles::for_each_column_block(p.features, [&](Index f0, int columns) {
    TileJob job;
    job.steps = count * p.positions;
    job.a = {xp + first * p.sample_stride, 0, p.patch_offset.data()};
    job.a_table = position_offset;
    job.b = block_dy + f0;
    job.b_step = p.features;
    job.out = {partial + f0, p.features, nullptr};
    job.columns = columns;
    tiles::run_tile_job(TileMode::Gather, job, p.patch);
  });
}

}  // namespace

bool conv_shared_fast_supported(const ConvGeometry& g, std::int64_t features) {
  return tiles::fast_geometry_supported(g, features) && tiles::cpu_supported();
}

void conv_shared_forward_fast(const ConvGeometry& geometry, std::int64_t features, const float* x,
                              const float* kernel, const float* bias, float* y) {
  const Plan plan(tiles::fast_geometry(geometry, features));
  const float* xp = tiles::padded_input(plan.g, x);
  const Index lines = plan.g.batch * plan.lines_per_sample;
  // A few ranges per thread, so a thread the OS runs late leaves its share to the others.
  parallel_for_ranges(lines, 4 * num_threads(), [&](Index first, Index end) {
    TileJob job = forward_line_job(plan);
    for (Index line = first; line < end; ++line)
      forward_line(plan, job, xp, kernel, bias, y + line * plan.line_length * plan.features, line);
  });
}

void conv_shared_forward_max_pool_fast(const ConvGeometry& geometry, std::int64_t features, const float* x,
                                       const float* kernel, const float* bias, std::int64_t window_h,
                                       std::int64_t window_w, bool relu, float* out, std::int32_t* index) {
  const Plan plan(tiles::fast_geometry(geometry, features));
  const float* xp = tiles::padded_input(plan.g, x);
  // 2-D: a sample's lines are its output rows (fast_geometry's leading axis is a unit one).
  const Index height = plan.lines_per_sample, width = plan.line_length, f = plan.features;
  const Index pooled_height = height / window_h, pooled_width = width / window_w;
  const Index pooled_rows = plan.g.batch * pooled_height;
  // The index is next read by the backward, the whole forward and most of the
  // backward later, some of it by the other thread. Where two vCPUs share no L3, a
  // cached store to a line the other one read last step waits for that copy to be
  // invalidated: the main job's first conv + pool at 2 threads took 0.45 ms that way,
  // 0.21 ms with streaming stores (0.19-0.20 ms either way in a shared L3).
  const bool stream_index = reinterpret_cast<std::uintptr_t>(index) % 32 == 0;
  // As the unpooled forward: a few ranges per thread; each thread computes a pooled
  // row's window_h conv rows into its scratch (in L1), then pools them.
  parallel_for_ranges(pooled_rows, 4 * num_threads(), [&](Index first, Index end) {
    float* rows = conv_scratch<float>(ConvScratch::PooledRows, static_cast<std::size_t>(window_h * width * f));
    TileJob job = forward_line_job(plan);
    for (Index pooled_row = first; pooled_row < end; ++pooled_row) {
      const Index n = pooled_row / pooled_height, row = pooled_row % pooled_height * window_h;
      for (Index dr = 0; dr < window_h; ++dr)
        forward_line(plan, job, xp, kernel, bias, rows + dr * width * f, n * height + row + dr);
      max_pool_rows(rows, width, f, window_h, window_w, pooled_width, (n * height + row) * width * f, relu,
                    stream_index, out + pooled_row * pooled_width * f, index + pooled_row * pooled_width * f);
    }
    tiles::finish_streaming();
  });
}

void conv_shared_input_vjp_fast(const ConvGeometry& geometry, std::int64_t features, const float* dy,
                                const float* kernel, float* d_x) {
  const Plan plan(tiles::fast_geometry(geometry, features));
  const Index c = plan.channels, f_count = plan.features;
  // kt[f][run·run_padded + e]: run r holds taps r·kw .. r·kw + kw − 1 (merged) or tap r,
  // e = (tap within the run)·C + c.
  const Index kt_row = plan.run_count * plan.run_padded;
  float* kt = conv_scratch<float>(ConvScratch::Kernel, static_cast<std::size_t>(f_count * kt_row));
  std::fill(kt, kt + f_count * kt_row, 0.0f);
  for (Index tap = 0; tap < plan.taps; ++tap) {
    const Index column = plan.merged ? (tap / plan.kernel_last) * plan.run_padded + (tap % plan.kernel_last) * c
                                     : tap * plan.run_padded;
    for (Index ch = 0; ch < c; ++ch)
      for (Index f = 0; f < f_count; ++f) kt[f * kt_row + column + ch] = kernel[(tap * c + ch) * f_count + f];
  }
  // Each sample is zeroed, accumulated and cropped by one task, while it is in cache.
  float* dxp = tiles::padded_input_gradient_unzeroed(plan.g, d_x);
  parallel_for(plan.g.batch, [&](Index n) {
    std::fill_n(dxp + n * plan.sample_stride, plan.sample_stride, 0.0f);
    input_vjp_sample(plan, dy, kt, dxp, n);
    tiles::crop_input_gradient_sample(plan.g, dxp, d_x, n);
  });
}

namespace {

// d_kernel and d_bias (or null) of the conv, a block of samples at a time:
// block_cotangent(first, count) returns where the dy of samples [first, first + count)
// is. The sums are split into fixed blocks of samples whose partial sums are added in
// order: the same bits at any thread count.
template <class BlockCotangent>
void kernel_vjp_blocks(const ConvGeometry& geometry, std::int64_t features, const float* x, float* d_kernel,
                       float* d_bias, BlockCotangent&& block_cotangent) {
  const Plan plan(tiles::fast_geometry(geometry, features));
  const float* xp = tiles::padded_input(plan.g, x);
  const Index batch = plan.g.batch;
  // Fixed blocks of samples (a function of N only), each reduced in registers.
  constexpr Index max_blocks = 8;
  const Index block_samples = (batch + max_blocks - 1) / max_blocks;
  const Index blocks = (batch + block_samples - 1) / block_samples;
  const std::vector<Index> origins = plan.g.position_origins();
  // Per-thread scratch, not a fresh vector: a new block each call (50 KB for the main
  // job's first conv) made that conv's forward + backward 20 % slower at 2 threads
  // (0.35-0.41 vs 0.27-0.31 ms, interleaved; the same at 1 thread).
  Index* position_offset =
      conv_scratch<Index>(ConvScratch::PositionOffsets, static_cast<std::size_t>(block_samples * plan.positions));
  for (Index m = 0; m < block_samples; ++m)
    for (std::size_t i = 0; i < origins.size(); ++i)
      position_offset[m * plan.positions + static_cast<Index>(i)] = m * plan.sample_stride + origins[i];
  // A block's partial sums: patch × F for the kernel, then F for the bias.
  const Index kernel_size = plan.patch * plan.features, size = kernel_size + plan.features;
  float* partial = conv_scratch<float>(ConvScratch::Result, static_cast<std::size_t>(blocks * size));
  parallel_for(blocks, [&](Index block) {
    const Index first = block * block_samples, count = std::min(block_samples, batch - first);
    float* sums = partial + block * size;
    const float* block_dy = block_cotangent(first, count);
    kernel_vjp_block(plan, xp, block_dy, position_offset, first, count, sums);
    if (d_bias) column_sums(block_dy, count * plan.positions, plan.features, sums + kernel_size);
  });
  std::copy_n(partial, kernel_size, d_kernel);
  for (Index block = 1; block < blocks; ++block)
    for (Index j = 0; j < kernel_size; ++j) d_kernel[j] += partial[block * size + j];
  if (d_bias) {
    std::copy_n(partial + kernel_size, plan.features, d_bias);
    for (Index block = 1; block < blocks; ++block)
      for (Index f = 0; f < plan.features; ++f) d_bias[f] += partial[block * size + kernel_size + f];
  }
}

}  // namespace

void conv_shared_kernel_vjp_fast(const ConvGeometry& geometry, std::int64_t features, const float* x,
                                 const float* dy, float* d_kernel, float* d_bias) {
  const Index sample_floats = numel(Shape(geometry.out_spatial)) * features;
  kernel_vjp_blocks(geometry, features, x, d_kernel, d_bias,
                    [&](Index first, Index) { return dy + first * sample_floats; });
}

void conv_shared_kernel_vjp_max_pooled_fast(const ConvGeometry& geometry, std::int64_t features, const float* x,
                                            const PooledCotangent& pooled, std::int64_t pooled_per_sample,
                                            float* d_kernel, float* d_bias) {
  const Index sample_floats = numel(Shape(geometry.out_spatial)) * features;
  kernel_vjp_blocks(geometry, features, x, d_kernel, d_bias, [&](Index first, Index count) {
    // The block's dy, as the pool's VJP (pool_select_transpose) and the relu's write it,
    // in this thread's scratch (the main job's first conv: 8 samples, 400 KB, in L2),
    // not in a full-size dy.
    float* block_dy = conv_scratch<float>(ConvScratch::Cotangent, static_cast<std::size_t>(count * sample_floats));
    std::fill_n(block_dy, count * sample_floats, 0.0f);
    pooled.scatter(first * pooled_per_sample, (first + count) * pooled_per_sample, first * sample_floats, block_dy);
    return static_cast<const float*>(block_dy);
  });
}

}  // namespace xgrad::kernels
