#include "core/kernels/conv/conv_patches.hpp"

#include <immintrin.h>

#include "core/tensor_impl.hpp"

namespace xgrad::kernels {

namespace {

// Below this many channels a row is filled offset by offset (c-major order);
// above it, channel runs are copied per window offset (one branch per offset).
constexpr std::int64_t kChannelRunThreshold = 4;

// One window offset r of a patch row: d[c*S] = s[c] for every channel (zeros where
// the offset reads padding, source < 0). d = row + r.
template <class T, class A>
void fill_patch_tap(const T* src, std::int64_t source, std::int64_t C, std::int64_t S, A* d) {
  if (source < 0) {
    for (std::int64_t c = 0; c < C; ++c) d[c * S] = A{};
  } else {
    const T* s = src + source;
    for (std::int64_t c = 0; c < C; ++c) d[c * S] = convert_element<A>(s[c]);
  }
}

// float rows: 4 offsets x 4 channels at a time, transposed in SSE registers (the
// x86-64 baseline), so a row costs a quarter of the loads and stores of the strided
// element copy, which also ran up to 1.5x slower or faster with the loop's code
// alignment.
void fill_patch_row_sse(const float* src, const std::int64_t* sources, std::int64_t C, std::int64_t S, float* dst) {
  std::int64_t r = 0;
  for (; r + 4 <= S; r += 4) {
    const std::int64_t* q = sources + r;
    if (q[0] < 0 || q[1] < 0 || q[2] < 0 || q[3] < 0) {
      for (std::int64_t k = 0; k < 4; ++k) fill_patch_tap(src, q[k], C, S, dst + r + k);
      continue;
    }
    const float *s0 = src + q[0], *s1 = src + q[1], *s2 = src + q[2], *s3 = src + q[3];
    std::int64_t c = 0;
    for (; c + 4 <= C; c += 4) {
      __m128 t0 = _mm_loadu_ps(s0 + c), t1 = _mm_loadu_ps(s1 + c), t2 = _mm_loadu_ps(s2 + c), t3 = _mm_loadu_ps(s3 + c);
      _MM_TRANSPOSE4_PS(t0, t1, t2, t3);  // t_j = channel c + j at offsets r..r+3
      float* d = dst + c * S + r;
      _mm_storeu_ps(d, t0);
      _mm_storeu_ps(d + S, t1);
      _mm_storeu_ps(d + 2 * S, t2);
      _mm_storeu_ps(d + 3 * S, t3);
    }
    for (; c < C; ++c) {
      float* d = dst + c * S + r;
      d[0] = s0[c], d[1] = s1[c], d[2] = s2[c], d[3] = s3[c];
    }
  }
  for (; r < S; ++r) fill_patch_tap(src, sources[r], C, S, dst + r);
}

// One patch row: dst[c*S + r] = src[sources[r] + c] (0 where sources[r] < 0).
template <class T, class A>
void fill_patch_row(const T* src, const std::int64_t* sources, std::int64_t C, std::int64_t S, A* dst) {
  if (C < kChannelRunThreshold) {
    for (std::int64_t c = 0; c < C; ++c, dst += S)
      for (std::int64_t r = 0; r < S; ++r) dst[r] = sources[r] < 0 ? A{} : convert_element<A>(src[sources[r] + c]);
    return;
  }
  if constexpr (std::is_same_v<T, float> && std::is_same_v<A, float>) {
    fill_patch_row_sse(src, sources, C, S, dst);
  } else {
    for (std::int64_t r = 0; r < S; ++r) fill_patch_tap(src, sources[r], C, S, dst + r);
  }
}

// One window offset of scatter_add_patch_row: dst[source + c] += tap[c*S] (tap = row + r).
template <class A>
void scatter_add_patch_tap(const A* tap, std::int64_t source, std::int64_t C, std::int64_t S, A* dst) {
  if (source < 0) return;
  A* d = dst + source;
  for (std::int64_t c = 0; c < C; ++c) d[c] += tap[c * S];
}

// float: the transpose of fill_patch_row_sse. The offsets of one row read distinct
// input positions, so each dx element still gets one addition per row.
void scatter_add_patch_row_sse(const float* row, const std::int64_t* sources, std::int64_t C, std::int64_t S,
                               float* dst) {
  std::int64_t r = 0;
  for (; r + 4 <= S; r += 4) {
    const std::int64_t* q = sources + r;
    if (q[0] < 0 || q[1] < 0 || q[2] < 0 || q[3] < 0) {
      for (std::int64_t k = 0; k < 4; ++k) scatter_add_patch_tap(row + r + k, q[k], C, S, dst);
      continue;
    }
    float *d0 = dst + q[0], *d1 = dst + q[1], *d2 = dst + q[2], *d3 = dst + q[3];
    std::int64_t c = 0;
    for (; c + 4 <= C; c += 4) {
      const float* p = row + c * S + r;
      __m128 t0 = _mm_loadu_ps(p), t1 = _mm_loadu_ps(p + S), t2 = _mm_loadu_ps(p + 2 * S), t3 = _mm_loadu_ps(p + 3 * S);
      _MM_TRANSPOSE4_PS(t0, t1, t2, t3);  // t_k = offset r + k at channels c..c+3
      _mm_storeu_ps(d0 + c, _mm_add_ps(_mm_loadu_ps(d0 + c), t0));
      _mm_storeu_ps(d1 + c, _mm_add_ps(_mm_loadu_ps(d1 + c), t1));
      _mm_storeu_ps(d2 + c, _mm_add_ps(_mm_loadu_ps(d2 + c), t2));
      _mm_storeu_ps(d3 + c, _mm_add_ps(_mm_loadu_ps(d3 + c), t3));
    }
    for (; c < C; ++c) {
      const float* p = row + c * S + r;
      d0[c] += p[0], d1[c] += p[1], d2[c] += p[2], d3[c] += p[3];
    }
  }
  for (; r < S; ++r) scatter_add_patch_tap(row + r, sources[r], C, S, dst);
}

// The adjoint of fill_patch_row: dst[sources[r] + c] += row[c*S + r].
template <class A>
void scatter_add_patch_row(const A* row, const std::int64_t* sources, std::int64_t C, std::int64_t S, A* dst) {
  if constexpr (std::is_same_v<A, float>) {
    if (C >= kChannelRunThreshold) return scatter_add_patch_row_sse(row, sources, C, S, dst);
  }
  for (std::int64_t r = 0; r < S; ++r) scatter_add_patch_tap(row + r, sources[r], C, S, dst);
}

}  // namespace

template <class T, class A>
void extract_patches(const T* x, const ConvGeometry& g, const std::vector<std::int64_t>& table, A* patches) {
  const std::int64_t N = g.batch, P = g.out_positions(), C = g.channels, S = g.window_size(), I = C * S;
  const std::int64_t image = g.in_positions() * C;
  for (std::int64_t b = 0; b < N; ++b)
    for (std::int64_t o = 0; o < P; ++o)
      fill_patch_row(x + b * image, table.data() + o * S, C, S, patches + (b * P + o) * I);
}

template <class A>
void scatter_add_patches(const A* patches, const ConvGeometry& g, const std::vector<std::int64_t>& table,
                         A* dx) {
  const std::int64_t N = g.batch, P = g.out_positions(), C = g.channels, S = g.window_size(), I = C * S;
  const std::int64_t image = g.in_positions() * C;
  for (std::int64_t b = 0; b < N; ++b)
    for (std::int64_t o = 0; o < P; ++o)
      scatter_add_patch_row(patches + (b * P + o) * I, table.data() + o * S, C, S, dx + b * image);
}

template <class T, class A>
void extract_position_patches(const T* x, const ConvGeometry& g, const std::vector<std::int64_t>& table,
                              std::int64_t o, A* block) {
  const std::int64_t C = g.channels, S = g.window_size(), I = C * S, image = g.in_positions() * C;
  for (std::int64_t b = 0; b < g.batch; ++b) fill_patch_row(x + b * image, table.data() + o * S, C, S, block + b * I);
}

template <class A>
void scatter_add_position_patches(const A* block, const ConvGeometry& g, const std::vector<std::int64_t>& table,
                                  std::int64_t o, A* dx) {
  const std::int64_t C = g.channels, S = g.window_size(), I = C * S, image = g.in_positions() * C;
  for (std::int64_t b = 0; b < g.batch; ++b)
    scatter_add_patch_row(block + b * I, table.data() + o * S, C, S, dx + b * image);
}

#define XGRAD_INSTANTIATE_EXTRACT(T, A)                                                                  \
  template void extract_patches<T, A>(const T*, const ConvGeometry&, const std::vector<std::int64_t>&, \
                                      A*);
XGRAD_INSTANTIATE_EXTRACT(half, half)
XGRAD_INSTANTIATE_EXTRACT(bfloat16, bfloat16)
XGRAD_INSTANTIATE_EXTRACT(half, float)
XGRAD_INSTANTIATE_EXTRACT(bfloat16, float)
XGRAD_INSTANTIATE_EXTRACT(float, float)
XGRAD_INSTANTIATE_EXTRACT(half, double)
XGRAD_INSTANTIATE_EXTRACT(bfloat16, double)
XGRAD_INSTANTIATE_EXTRACT(float, double)
XGRAD_INSTANTIATE_EXTRACT(double, double)
#undef XGRAD_INSTANTIATE_EXTRACT

#define XGRAD_INSTANTIATE_EXTRACT_POSITION(T, A)                                                             \
  template void extract_position_patches<T, A>(const T*, const ConvGeometry&, const std::vector<std::int64_t>&, \
                                               std::int64_t, A*);
XGRAD_INSTANTIATE_EXTRACT_POSITION(half, float)
XGRAD_INSTANTIATE_EXTRACT_POSITION(bfloat16, float)
XGRAD_INSTANTIATE_EXTRACT_POSITION(float, float)
XGRAD_INSTANTIATE_EXTRACT_POSITION(half, double)
XGRAD_INSTANTIATE_EXTRACT_POSITION(bfloat16, double)
XGRAD_INSTANTIATE_EXTRACT_POSITION(float, double)
XGRAD_INSTANTIATE_EXTRACT_POSITION(double, double)
#undef XGRAD_INSTANTIATE_EXTRACT_POSITION

template void scatter_add_position_patches<float>(const float*, const ConvGeometry&,
                                                  const std::vector<std::int64_t>&, std::int64_t, float*);
template void scatter_add_position_patches<double>(const double*, const ConvGeometry&,
                                                   const std::vector<std::int64_t>&, std::int64_t, double*);

template void scatter_add_patches<float>(const float*, const ConvGeometry&, const std::vector<std::int64_t>&,
                                         float*);
template void scatter_add_patches<double>(const double*, const ConvGeometry&, const std::vector<std::int64_t>&,
                                          double*);

}  // namespace xgrad::kernels
