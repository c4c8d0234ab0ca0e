// Direct AVX2/FMA shared-weight convolution. The three products are GEMM-shaped and
// run on one micro-kernel that keeps an R×(8·V) tile of accumulators in registers
// (6 rows × 16 columns = 12 ymm, or 8 × 8) and, per contraction step, broadcasts one
// value of each row's operand against V vector loads of the other:
//
//   forward   rows = the output positions of one output row (ox), columns = features f,
//             contraction over the patch i = (ky·kw + kx)·C + c (= the HWIO kernel row)
//   d_kernel  rows = patch elements i, columns = f, contraction over all positions of a
//             block of samples (the accumulators stay in registers across them)
//   d_x       rows = the output positions of one output row, columns = a "run" of d_x
//             (a kernel row's kw·C consecutive values when dw = 1, else one tap's C),
//             contraction over f; the tile adds its result into d_x (scatter form: no
//             multiply-adds are spent on the zero border a gather form would need)
//
// Padding is materialised: x is copied into a zero-bordered buffer (forward, d_kernel)
// and d_x is accumulated into one and cropped, so the tiles only see VALID convolutions.
// Work is split over output rows (forward), samples (d_x: a sample's rows overlap in
// d_x) and fixed sample blocks (d_kernel, reduced in block order), so every result is
// the same for any thread count.
//
// AVX2 code is confined to the region between the GCC target pragmas and uses raw
// pointers only, so no inline library function is ever compiled for AVX2 and the
// library still runs (and declines) on older CPUs.
#include "core/kernels/conv_shared_fast.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/kernels/conv_scratch.hpp"
#include "core/tensor_impl.hpp"
#include "core/threading.hpp"

namespace xgrad::kernels {
namespace {

using Index = std::ptrdiff_t;

// The three products fix at compile time how a tile finds its rows and operands.
enum class Product {
  Forward,     // strided rows, a indexed through a table, store
  KernelGrad,  // listed rows, a indexed through a table, store
  InputGrad,   // strided rows, a indexed s·a_step, add into out (masked past `valid`)
};

// `count` tiles over consecutive rows k; for each,
//   out + k·out_stride [0 .. 8V)  (= or +=)  Σ_s a(k)[index(s)] · b[s·b_step + 0 .. 8V)
// with a(k) = a + k·a_stride (or a + a_rows[k]) and index(s) = a_table[s] (or s·a_step).
struct TileJob {
  Index steps;
  const float* a;
  Index a_stride;
  const Index* a_rows;
  const Index* a_table;
  Index a_step;
  const float* b;
  Index b_step;
  const float* init;  // Forward: the starting value of every row (the bias), or null for zero
  float* out;
  Index out_stride;
  int valid;
};

// The sizes and offset tables of one convolution (x already padded).
struct Plan {
  Index batch, channels, features, width, out_height, out_width, patch;
  Index sample_stride;              // Hp·Wp·C
  std::vector<Index> patch_offset;  // i = tap·C + c -> xp offset from the patch origin
  Index run_count, run_length, run_padded;  // d_x runs; run_padded: run_length rounded up to 8
  std::vector<Index> run_offset;            // run -> xp offset from the patch origin

  explicit Plan(const ConvShared2dFastShape& s)
      : batch(s.batch), channels(s.in_features), features(s.features), width(s.padded_width()),
        out_height(s.out_height()), out_width(s.out_width()),
        patch(s.kernel_height * s.kernel_width * s.in_features),
        sample_stride(s.padded_height() * s.padded_width() * s.in_features) {
    const Index taps = s.kernel_height * s.kernel_width;
    auto tap_offset = [&](Index tap) {
      return ((tap / s.kernel_width) * s.dilation_height * width + (tap % s.kernel_width) * s.dilation_width) *
             channels;
    };
    for (Index i = 0; i < patch; ++i) patch_offset.push_back(tap_offset(i / channels) + i % channels);
    const bool merged = s.dilation_width == 1;  // a kernel row's taps are adjacent in x
    run_count = merged ? s.kernel_height : taps;
    run_length = merged ? s.kernel_width * channels : channels;
    run_padded = (run_length + 7) / 8 * 8;
    for (Index run = 0; run < run_count; ++run) run_offset.push_back(tap_offset(merged ? run * s.kernel_width : run));
  }
  Index positions() const { return out_height * out_width; }
};

}  // namespace

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace {

// 6 rows × 2 vectors or 8 rows × 1 vector: 12 or 8 accumulators, enough independent
// FMAs to hide their latency, with the b vectors and a broadcast within 16 ymm.
constexpr int max_rows(int vectors) { return vectors == 2 ? 6 : 8; }

// Kept out of line: inlined into its callers, the live ymm registers spill.
template <int R, int V, Product P>
__attribute__((noinline)) void run_tiles(const TileJob& job, Index count) {
  constexpr bool listed = P == Product::KernelGrad, tabled = P != Product::InputGrad;
  const Index steps = job.steps, a_step = job.a_step, b_step = job.b_step;
  const Index* a_table = job.a_table;
  for (Index tile = 0; tile < count; ++tile) {
    const float* a[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Index k = tile * R + r;
      a[r] = job.a + (listed ? job.a_rows[k] : k * job.a_stride);
      // Opaque to the optimiser, so each row keeps its own pointer register and the
      // broadcasts use plain base + index addressing.
      asm("" : "+r"(a[r]));
    }
    __m256 acc[R][V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      const __m256 start = P == Product::Forward && job.init ? _mm256_loadu_ps(job.init + 8 * v) : _mm256_setzero_ps();
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][v] = start;
    }
    const float* b = job.b;
    for (Index s = 0; s < steps; ++s) {
      const Index ai = tabled ? a_table[s] : s * a_step;
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
    float* out = job.out + tile * R * job.out_stride;
    if (P != Product::InputGrad) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) _mm256_storeu_ps(out + r * job.out_stride + 8 * v, acc[r][v]);
      }
      continue;
    }
    // Rows in order: neighbouring rows' d_x footprints overlap.
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      const int lanes = job.valid - 8 * v;
      const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        float* o = out + r * job.out_stride + 8 * v;
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

// Covers rows [0, row_count) with the fewest tiles, as even as possible (26 rows by 6
// -> 1×6 + 4×5: no latency-bound tail tile of 1 or 2 rows).
template <Product P>
void run_job(const TileJob& job, int vectors, Index row_count) {
  const Index limit = max_rows(vectors);
  const Index tiles = (row_count + limit - 1) / limit, small = row_count / tiles, big_tiles = row_count % tiles;
  const auto run = [&](Index rows, const TileJob& j, Index count) {
    if (vectors == 2) run_tiles_of<2, P>(rows, j, count);
    else run_tiles_of<1, P>(rows, j, count);
  };
  if (big_tiles > 0) run(small + 1, job, big_tiles);
  TileJob rest = job;  // the small tiles start after the big ones' rows
  const Index skip = big_tiles * (small + 1);
  if (job.a_rows) rest.a_rows = job.a_rows + skip;
  else rest.a = job.a + skip * job.a_stride;
  rest.out = job.out + skip * job.out_stride;
  run(small, rest, tiles - big_tiles);
}

// Column blocks of 16 (two vectors), then one of 8 if `count` is an odd number of vectors.
template <class Body>
void for_each_column_block(Index count, Body&& body) {
  for (Index start = 0; start < count; start += 16) body(start, count - start >= 16 ? 2 : 1);
}

// y rows (n, oy) for row = n·OH + oy.
void forward_row(const Plan& p, const float* xp, const float* kernel, const float* bias, float* y, Index row) {
  const Index n = row / p.out_height, oy = row % p.out_height;
  for_each_column_block(p.features, [&](Index f0, int vectors) {
    TileJob job{};
    job.steps = p.patch;
    job.a = xp + n * p.sample_stride + oy * p.width * p.channels;  // rows: ox, C apart
    job.a_stride = p.channels;
    job.a_table = p.patch_offset.data();
    job.b = kernel + f0;
    job.b_step = p.features;
    job.init = bias ? bias + f0 : nullptr;
    job.out = y + row * p.out_width * p.features + f0;
    job.out_stride = p.features;
    run_job<Product::Forward>(job, vectors, p.out_width);
  });
}

// Adds sample n's share of d_x into dxp (padded, zeroed). `kt` is the kernel as
// kt[f][run·run_padded + e], zero in each run's padding columns.
void input_vjp_sample(const Plan& p, const float* dy, const float* kt, float* dxp, Index n) {
  const Index kt_row = p.run_count * p.run_padded;
  for (Index oy = 0; oy < p.out_height; ++oy) {
    for (Index run = 0; run < p.run_count; ++run) {
      for_each_column_block(p.run_padded, [&](Index e0, int vectors) {
        TileJob job{};
        job.steps = p.features;
        job.a = dy + (n * p.out_height + oy) * p.out_width * p.features;  // rows: ox, F apart
        job.a_stride = p.features;
        job.a_step = 1;
        job.b = kt + run * p.run_padded + e0;
        job.b_step = kt_row;
        job.out = dxp + n * p.sample_stride + oy * p.width * p.channels + p.run_offset[run] + e0;
        job.out_stride = p.channels;
        job.valid = static_cast<int>(p.run_length - e0 < 8 * vectors ? p.run_length - e0 : 8 * vectors);
        run_job<Product::InputGrad>(job, vectors, p.out_width);
      });
    }
  }
}

// partial (patch × F) = the kernel gradient of samples [first, first + count).
// position_offset lists the patch origins of every position of `count` samples.
void kernel_vjp_block(const Plan& p, const float* xp, const float* dy, const Index* position_offset, Index first,
                      Index count, float* partial) {
  for_each_column_block(p.features, [&](Index f0, int vectors) {
    TileJob job{};
    job.steps = count * p.positions();
    job.a = xp + first * p.sample_stride;
    job.a_rows = p.patch_offset.data();
    job.a_table = position_offset;
    job.b = dy + first * p.positions() * p.features + f0;
    job.b_step = p.features;
    job.out = partial + f0;
    job.out_stride = p.features;
    run_job<Product::KernelGrad>(job, vectors, p.patch);
  });
}

// out[f] = Σ_q rows[q·F + f] over `count` rows of F values (F % 8 == 0): 16 columns
// at a time, two rows per step into separate accumulators.
void column_sums(const float* rows, Index count, Index features, float* out) {
  for_each_column_block(features, [&](Index f0, int vectors) {
    __m256 even[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, odd[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    const float* row = rows + f0;
    Index q = 0;
    for (; q + 1 < count; q += 2, row += 2 * features)
      for (int v = 0; v < vectors; ++v) {
        even[v] = _mm256_add_ps(even[v], _mm256_loadu_ps(row + 8 * v));
        odd[v] = _mm256_add_ps(odd[v], _mm256_loadu_ps(row + features + 8 * v));
      }
    for (int v = 0; v < vectors; ++v) {
      if (q < count) even[v] = _mm256_add_ps(even[v], _mm256_loadu_ps(row + 8 * v));
      _mm256_storeu_ps(out + f0 + 8 * v, _mm256_add_ps(even[v], odd[v]));
    }
  });
}

}  // namespace

#pragma GCC pop_options

namespace {

bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

bool has_padding(const ConvShared2dFastShape& s) {
  return s.pad_top != 0 || s.pad_bottom != 0 || s.pad_left != 0 || s.pad_right != 0;
}

// x with its zero border, in scratch; x itself when there is no padding.
const float* padded_input(const ConvShared2dFastShape& s, const float* x) {
  if (!has_padding(s)) return x;
  const Index hp = s.padded_height(), wp = s.padded_width(), c = s.in_features;
  float* xp = conv_scratch<float>(ConvScratch::Patches, static_cast<std::size_t>(s.batch * hp * wp * c));
  parallel_for_ranges(s.batch, num_threads(), [&](Index first, Index end) {
    for (Index n = first; n < end; ++n) {
      float* sample = xp + n * hp * wp * c;
      std::fill(sample, sample + hp * wp * c, 0.0f);
      for (Index iy = 0; iy < s.in_height; ++iy)
        std::copy_n(x + (n * s.in_height + iy) * s.in_width * c, s.in_width * c,
                    sample + ((iy + s.pad_top) * wp + s.pad_left) * c);
    }
  });
  return xp;
}

}  // namespace

bool conv_shared2d_fast_supported(const ConvShared2dFastShape& s) {
  const bool positive = s.batch > 0 && s.in_height > 0 && s.in_width > 0 && s.in_features > 0 &&
                        s.kernel_height > 0 && s.kernel_width > 0 && s.dilation_height > 0 &&
                        s.dilation_width > 0 && s.features > 0;
  const bool pads = s.pad_top >= 0 && s.pad_bottom >= 0 && s.pad_left >= 0 && s.pad_right >= 0;
  return positive && pads && s.out_height() > 0 && s.out_width() > 0 && s.features % 8 == 0 && cpu_has_avx2_fma();
}

void conv_shared2d_forward_fast(const ConvShared2dFastShape& shape, const float* x, const float* kernel,
                                const float* bias, float* y) {
  const Plan plan(shape);
  const float* xp = padded_input(shape, x);
  const Index rows = plan.batch * plan.out_height;
  // A few ranges per thread, so a thread the OS runs late leaves its share to the others.
  parallel_for_ranges(rows, 4 * num_threads(), [&](Index first, Index end) {
    for (Index row = first; row < end; ++row) forward_row(plan, xp, kernel, bias, y, row);
  });
}

void conv_shared2d_input_vjp_fast(const ConvShared2dFastShape& shape, const float* dy, const float* kernel,
                                  float* d_x) {
  const Plan plan(shape);
  const Index taps = shape.kernel_height * shape.kernel_width, c = plan.channels, f_count = plan.features;
  // kt[f][run·run_padded + e]: run r holds taps r·kw .. r·kw + kw − 1 (merged) or tap r,
  // e = (tap within the run)·C + c.
  const Index kt_row = plan.run_count * plan.run_padded;
  float* kt = conv_scratch<float>(ConvScratch::Kernel, static_cast<std::size_t>(f_count * kt_row));
  std::fill(kt, kt + f_count * kt_row, 0.0f);
  const Index taps_per_run = taps / plan.run_count;
  for (Index tap = 0; tap < taps; ++tap) {
    const Index column = (tap / taps_per_run) * plan.run_padded + (tap % taps_per_run) * c;
    for (Index ch = 0; ch < c; ++ch)
      for (Index f = 0; f < f_count; ++f) kt[f * kt_row + column + ch] = kernel[(tap * c + ch) * f_count + f];
  }
  // With padding, d_x of the padded input is accumulated in scratch and cropped.
  const bool padded = has_padding(shape);
  const auto padded_size = static_cast<std::size_t>(plan.batch * plan.sample_stride);
  float* dxp = padded ? conv_scratch<float>(ConvScratch::Patches, padded_size) : d_x;
  const Index wp = shape.padded_width();
  parallel_for(plan.batch, [&](Index n) {
    float* sample = dxp + n * plan.sample_stride;
    std::fill(sample, sample + plan.sample_stride, 0.0f);
    input_vjp_sample(plan, dy, kt, dxp, n);
    if (padded)
      for (Index iy = 0; iy < shape.in_height; ++iy)
        std::copy_n(sample + ((iy + shape.pad_top) * wp + shape.pad_left) * c, shape.in_width * c,
                    d_x + (n * shape.in_height + iy) * shape.in_width * c);
  });
}

void conv_shared2d_kernel_vjp_fast(const ConvShared2dFastShape& shape, const float* x, const float* dy,
                                   float* d_kernel, float* d_bias) {
  const Plan plan(shape);
  const float* xp = padded_input(shape, x);
  // Fixed blocks of samples (a function of N only), each reduced in registers.
  constexpr Index max_blocks = 8;
  const Index block_samples = (plan.batch + max_blocks - 1) / max_blocks;
  const Index blocks = (plan.batch + block_samples - 1) / block_samples;
  std::vector<Index> position_offset;
  position_offset.reserve(static_cast<std::size_t>(block_samples * plan.positions()));
  for (Index m = 0; m < block_samples; ++m)
    for (Index oy = 0; oy < plan.out_height; ++oy)
      for (Index ox = 0; ox < plan.out_width; ++ox)
        position_offset.push_back(m * plan.sample_stride + (oy * plan.width + ox) * plan.channels);
  // A block's partial sums: patch × F for the kernel, then F for the bias.
  const Index kernel_size = plan.patch * plan.features, size = kernel_size + plan.features;
  float* partial = conv_scratch<float>(ConvScratch::Result, static_cast<std::size_t>(blocks * size));
  parallel_for(blocks, [&](Index block) {
    const Index first = block * block_samples, count = std::min(block_samples, plan.batch - first);
    float* sums = partial + block * size;
    kernel_vjp_block(plan, xp, dy, position_offset.data(), first, count, sums);
    if (d_bias)
      column_sums(dy + first * plan.positions() * plan.features, count * plan.positions(), plan.features,
                  sums + kernel_size);
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

namespace {

// The fast kernels' shape for `c` when they handle it with operands `a` and `b`
// (all float32; the caller has ruled out empty operands), else nullopt.
std::optional<ConvShared2dFastShape> fast_shape(const Tensor& a, const Tensor& b, const ConvContraction& c) {
  static const bool general_only = std::getenv("XGRAD_CONV_GENERAL_PATH") != nullptr;
  const ConvGeometry& g = c.geometry;
  if (general_only || c.weights != ConvWeights::Shared || a.dtype() != DType::Float32 ||
      b.dtype() != DType::Float32 || g.rank() != 2 || c.groups != 1 || c.precision == Precision::Highest)
    return std::nullopt;
  for (std::size_t d = 0; d < 2; ++d)
    if (g.strides[d] != 1 || g.lhs_dilation[d] != 1) return std::nullopt;
  const ConvShared2dFastShape shape{.batch = g.batch, .in_height = g.in_spatial[0], .in_width = g.in_spatial[1],
                                    .in_features = g.channels, .kernel_height = g.window[0],
                                    .kernel_width = g.window[1], .dilation_height = g.rhs_dilation[0],
                                    .dilation_width = g.rhs_dilation[1], .pad_top = g.pads[0].first,
                                    .pad_bottom = g.pads[0].second, .pad_left = g.pads[1].first,
                                    .pad_right = g.pads[1].second, .features = c.features};
  if (!conv_shared2d_fast_supported(shape)) return std::nullopt;
  return shape;
}

bool has_elements(const Tensor& a, const Tensor& b) { return a.numel() > 0 && b.numel() > 0; }

}  // namespace

std::optional<Tensor> conv_shared_fast_biased(const Tensor& x, const Tensor& kernel, const Tensor& bias,
                                              const ConvContraction& c) {
  if (!has_elements(x, kernel) || bias.dtype() != DType::Float32) return std::nullopt;
  const auto shape = fast_shape(x, kernel, c);
  if (!shape) return std::nullopt;
  Tensor y = empty(c.output_shape(), DType::Float32);
  conv_shared2d_forward_fast(*shape, x.data<float>(), kernel.data<float>(), bias.data<float>(), y.data<float>());
  return y;
}

std::optional<SharedConvParamGrads> conv_shared_fast_param_vjp(const Tensor& x, const Tensor& g,
                                                               const ConvContraction& c) {
  if (!has_elements(x, g)) return std::nullopt;
  const auto shape = fast_shape(x, g, c);
  if (!shape) return std::nullopt;
  SharedConvParamGrads grads{empty(c.kernel_shape(), DType::Float32), empty({c.features}, DType::Float32)};
  conv_shared2d_kernel_vjp_fast(*shape, x.data<float>(), g.data<float>(), grads.dkernel.data<float>(),
                                grads.dbias.data<float>());
  return grads;
}

std::optional<Tensor> conv_shared_fast(ConvPass pass, const Tensor& a, const Tensor& b, const ConvContraction& c) {
  const auto fast = fast_shape(a, b, c);
  if (!fast) return std::nullopt;
  const ConvShared2dFastShape& shape = *fast;
  switch (pass) {
    case ConvPass::Forward: {  // a = x, b = kernel
      Tensor y = empty(c.output_shape(), DType::Float32);
      conv_shared2d_forward_fast(shape, a.data<float>(), b.data<float>(), nullptr, y.data<float>());
      return y;
    }
    case ConvPass::InputVJP: {  // a = g, b = kernel
      Tensor dx = empty(c.input_shape(), DType::Float32);
      conv_shared2d_input_vjp_fast(shape, a.data<float>(), b.data<float>(), dx.data<float>());
      return dx;
    }
    case ConvPass::KernelVJP: {  // a = x, b = g
      Tensor dk = empty(c.kernel_shape(), DType::Float32);
      conv_shared2d_kernel_vjp_fast(shape, a.data<float>(), b.data<float>(), dk.data<float>(), nullptr);
      return dk;
    }
  }
  return std::nullopt;
}

}  // namespace xgrad::kernels
