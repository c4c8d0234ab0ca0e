#include "core/kernels/conv/conv_fast_geometry.hpp"

#include <xmmintrin.h>

#include <algorithm>

#include "core/kernels/conv/conv_scratch.hpp"
#include "core/threading.hpp"

namespace xgrad::kernels::tiles {

Index FastGeometry::axis_stride(int j) const {
  Index s = channels;
  for (int k = 2; k > j; --k) s *= padded[static_cast<std::size_t>(k)];
  return s;
}

Index FastGeometry::tap_offset(Index tap) const {
  const Index t0 = tap / (kernel[1] * kernel[2]), t1 = tap / kernel[2] % kernel[1], t2 = tap % kernel[2];
  return t0 * dilation[0] * axis_stride(0) + t1 * dilation[1] * axis_stride(1) + t2 * dilation[2] * axis_stride(2);
}

std::vector<Index> FastGeometry::position_origins() const {
  // (The steps hoisted: this runs per call, over every position: 4096 for the 1-D layer.)
  const Index step0 = stride[0] * axis_stride(0), step1 = stride[1] * axis_stride(1), step2 = stride[2] * axis_stride(2);
  std::vector<Index> origins(static_cast<std::size_t>(positions()));
  Index* origin = origins.data();
  for (Index o0 = 0; o0 < out[0]; ++o0)
    for (Index o1 = 0; o1 < out[1]; ++o1)
      for (Index o2 = 0; o2 < out[2]; ++o2) *origin++ = o0 * step0 + o1 * step1 + o2 * step2;
  return origins;
}

bool fast_geometry_supported(const ConvGeometry& g, std::int64_t features) {
  const auto rank = g.rank();
  if (rank < 1 || rank > 3 || g.batch <= 0 || g.channels <= 0 || features <= 0) return false;
  for (std::size_t j = 0; j < static_cast<std::size_t>(rank); ++j) {
    if (g.lhs_dilation[j] != 1 || g.strides[j] < 1 || g.rhs_dilation[j] < 1 || g.window[j] < 1) return false;
    if (g.in_spatial[j] <= 0 || g.out_spatial[j] <= 0) return false;
  }
  // The tiles read a padded copy of each sample. Padding as layers use it adds a border;
  // pads far larger than the input (legal in lax) would make that copy the whole cost,
  // or overflow its size, so those take the general path, which never builds it.
  Index padded = g.channels, input = g.channels, output = g.channels;
  for (std::size_t j = 0; j < static_cast<std::size_t>(rank); ++j) {
    Index extent = 0;
    if (__builtin_add_overflow(g.in_spatial[j], g.pads[j].first, &extent) ||
        __builtin_add_overflow(extent, g.pads[j].second, &extent) || extent <= 0 ||
        __builtin_mul_overflow(padded, extent, &padded) || __builtin_mul_overflow(input, g.in_spatial[j], &input) ||
        __builtin_mul_overflow(output, g.out_spatial[j], &output))
      return false;
  }
  Index bound = 0;
  if (__builtin_add_overflow(input, output, &bound) || __builtin_mul_overflow(bound, 4, &bound)) return false;
  return padded <= bound + (Index{1} << 16);
}

FastGeometry fast_geometry(const ConvGeometry& g, std::int64_t features) {
  FastGeometry f;
  f.batch = g.batch;
  f.channels = g.channels;
  f.features = features;
  const std::size_t rank = static_cast<std::size_t>(g.rank()), lead = 3 - rank;
  for (std::size_t j = 0; j < 3; ++j) {
    const bool unit = j < lead;
    const std::size_t s = j - lead;
    f.input[j] = unit ? 1 : g.in_spatial[s];
    f.pad_lo[j] = unit ? 0 : g.pads[s].first;
    f.padded[j] = unit ? 1 : g.in_spatial[s] + g.pads[s].first + g.pads[s].second;
    f.kernel[j] = unit ? 1 : g.window[s];
    // An axis with one output position takes no step along it: its stride may be any
    // size (lax allows it, up to INT64_MAX) and would only overflow the products of
    // the offsets (stride × row stride) computed from it. 1 is as good.
    f.stride[j] = unit || g.out_spatial[s] == 1 ? 1 : g.strides[s];
    f.dilation[j] = unit ? 1 : g.rhs_dilation[s];
    f.out[j] = unit ? 1 : g.out_spatial[s];
  }
  // The padded copy's samples start an odd number of 64-byte lines apart. The tiles
  // read one row per sample at the same offset, so with a sample size that is a
  // multiple of 4 KiB (B SAME: 16×16×16 floats = 16 KiB) all 64 rows would fall into
  // one L1 set; an odd line count spreads them over every set.
  const Index natural = f.padded[0] * f.padded[1] * f.padded[2] * f.channels;
  Index lines = (natural + 15) / 16;
  if (lines % 2 == 0) ++lines;
  f.padded_sample_stride = lines * 16;
  return f;
}

namespace {

// Short rows are copied and zeroed inline: on a 28×28×1 image padded to 30×30 (rows of
// 30 floats), one memmove and two memset calls per row cost more than the bytes they
// move (~25 % of the image layer's SAME step at 2 threads). SSE is the x86-64 baseline.
constexpr Index kShortRow = 128;

void zero_floats(float* dst, Index n) {
  if (n >= kShortRow) return void(std::fill(dst, dst + n, 0.0f));
  // (The empty asm keeps the compiler from turning the loop back into a memset call.)
  Index i = 0;
  for (; i + 4 <= n; i += 4) {
    _mm_storeu_ps(dst + i, _mm_setzero_ps());
    asm("" : "+r"(i));
  }
  for (; i < n; ++i) {
    dst[i] = 0.0f;
    asm("" : "+r"(i));
  }
}

void copy_floats(const float* src, float* dst, Index n) {
  if (n >= kShortRow) return void(std::copy(src, src + n, dst));
  Index i = 0;
  for (; i + 4 <= n; i += 4) {
    _mm_storeu_ps(dst + i, _mm_loadu_ps(src + i));
    asm("" : "+r"(i));
  }
  for (; i < n; ++i) {
    dst[i] = src[i];
    asm("" : "+r"(i));
  }
}

// Copies rows of the last spatial axis between two layouts of the same samples that
// differ by an offset `shift` per axis (dst index = src index + shift): dst rows with
// no source, and the parts of rows outside the source, become zero. Samples are
// src_sample / dst_sample floats apart.
void copy_shifted(const float* src, const std::array<Index, 3>& src_extent, Index src_sample, float* dst,
                  const std::array<Index, 3>& dst_extent, Index dst_sample, const std::array<Index, 3>& shift,
                  Index batch, Index channels) {
  const Index rows_per_sample = dst_extent[0] * dst_extent[1];
  const Index rows = batch * rows_per_sample;
  const Index row_len = dst_extent[2] * channels;
  // The part of a dst row that has a source: dst columns [first, last).
  const Index first = std::clamp<Index>(shift[2], 0, dst_extent[2]);
  const Index last = std::clamp<Index>(src_extent[2] + shift[2], first, dst_extent[2]);
  parallel_for_ranges(rows, num_threads(), [&](Index begin, Index end) {
    for (Index row = begin; row < end; ++row) {
      const Index n = row / rows_per_sample;
      const Index d0 = row / dst_extent[1] % dst_extent[0], d1 = row % dst_extent[1];
      const Index s0 = d0 - shift[0], s1 = d1 - shift[1];
      float* out = dst + n * dst_sample + (row % rows_per_sample) * row_len;
      if (s0 < 0 || s0 >= src_extent[0] || s1 < 0 || s1 >= src_extent[1] || first == last) {
        zero_floats(out, row_len);
        continue;
      }
      const float* in = src + n * src_sample + (s0 * src_extent[1] + s1) * src_extent[2] * channels;
      zero_floats(out, first * channels);
      copy_floats(in + (first - shift[2]) * channels, out + first * channels, (last - first) * channels);
      zero_floats(out + last * channels, row_len - last * channels);
    }
  });
}

Index input_sample(const FastGeometry& g) { return g.input[0] * g.input[1] * g.input[2] * g.channels; }

}  // namespace

const float* padded_input(const FastGeometry& g, const float* x) {
  if (!g.needs_padding()) return x;
  float* xp = conv_scratch<float>(ConvScratch::Patches, static_cast<std::size_t>(g.batch * g.sample_stride()));
  copy_shifted(x, g.input, input_sample(g), xp, g.padded, g.sample_stride(), g.pad_lo, g.batch, g.channels);
  return xp;
}

float* padded_input_gradient(const FastGeometry& g, float* d_x) {
  const auto size = static_cast<std::size_t>(g.batch * g.sample_stride());
  float* buffer = g.needs_padding() ? conv_scratch<float>(ConvScratch::PatchGradBlock, size) : d_x;
  parallel_for_ranges(static_cast<Index>(size), num_threads(),
                      [&](Index begin, Index end) { std::fill(buffer + begin, buffer + end, 0.0f); });
  return buffer;
}

float* padded_input_gradient_unzeroed(const FastGeometry& g, float* d_x) {
  if (!g.needs_padding()) return d_x;
  return conv_scratch<float>(ConvScratch::PatchGradBlock, static_cast<std::size_t>(g.batch * g.sample_stride()));
}

void crop_input_gradient_sample(const FastGeometry& g, const float* padded, float* d_x, Index n) {
  if (!g.needs_padding()) return;
  const std::array<Index, 3> back{-g.pad_lo[0], -g.pad_lo[1], -g.pad_lo[2]};
  copy_shifted(padded + n * g.sample_stride(), g.padded, g.sample_stride(), d_x + n * input_sample(g), g.input,
               input_sample(g), back, 1, g.channels);
}

void crop_input_gradient(const FastGeometry& g, const float* padded, float* d_x) {
  if (!g.needs_padding()) return;
  const std::array<Index, 3> back{-g.pad_lo[0], -g.pad_lo[1], -g.pad_lo[2]};
  copy_shifted(padded, g.padded, g.sample_stride(), d_x, g.input, input_sample(g), back, g.batch, g.channels);
}

}  // namespace xgrad::kernels::tiles
