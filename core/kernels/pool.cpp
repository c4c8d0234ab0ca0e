#include "core/kernels/pool.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "core/kernels/select_extreme_avx2.hpp"
#include "core/tensor_impl.hpp"
#include "core/threading.hpp"

namespace xgrad::kernels {

PoolGeometry pool_geometry(const Shape& x_shape, const Shape& window, const Shape& strides,
                           const PadPairs& pads) {
  const std::size_t n = window.size();
  PoolGeometry g;
  g.batch = x_shape.front();
  g.channels = x_shape.back();
  g.in_spatial.assign(x_shape.begin() + 1, x_shape.end() - 1);
  g.window_size = numel(window);
  for (std::size_t d = 0; d < n; ++d) {
    const std::int64_t span = g.in_spatial[d] + pads[d].first + pads[d].second - window[d];
    g.out_spatial.push_back(span < 0 ? 0 : span / strides[d] + 1);
  }
  const Shape in_strides = contiguous_strides(g.in_spatial);
  const std::int64_t n_out = g.out_positions();
  g.tap_start.reserve(static_cast<std::size_t>(n_out + 1));
  g.taps.reserve(static_cast<std::size_t>(n_out * g.window_size));
  std::vector<std::int64_t> o(n, 0), w(n, 0);
  for (std::int64_t flat_o = 0; flat_o < n_out; ++flat_o) {
    g.tap_start.push_back(static_cast<std::int64_t>(g.taps.size()));
    std::fill(w.begin(), w.end(), 0);
    for (std::int64_t flat_w = 0; flat_w < g.window_size; ++flat_w) {
      std::int64_t pos = 0;
      bool inside = true;
      for (std::size_t d = 0; d < n && inside; ++d) {
        const std::int64_t i = o[d] * strides[d] + w[d] - pads[d].first;
        inside = i >= 0 && i < g.in_spatial[d];
        pos += i * in_strides[d];
      }
      if (inside) g.taps.push_back(pos);
      for (std::size_t d = n; d-- > 0;) {  // next window offset (odometer)
        if (++w[d] < window[d]) break;
        w[d] = 0;
      }
    }
    for (std::size_t d = n; d-- > 0;) {  // next output position
      if (++o[d] < g.out_spatial[d]) break;
      o[d] = 0;
    }
  }
  g.tap_start.push_back(static_cast<std::int64_t>(g.taps.size()));
  g.disjoint = true;
  for (std::size_t d = 0; d < n; ++d) g.disjoint = g.disjoint && strides[d] >= window[d];
  if (g.disjoint) {
    std::vector<bool> covered(static_cast<std::size_t>(g.in_positions()), false);
    for (const std::int64_t tap : g.taps) covered[static_cast<std::size_t>(tap)] = true;
    for (std::int64_t p = 0; p < g.in_positions(); ++p)
      if (!covered[static_cast<std::size_t>(p)]) g.uncovered.push_back(p);
  }
  return g;
}

namespace {

Shape out_shape(const PoolGeometry& g) {
  Shape s{g.batch};
  s.insert(s.end(), g.out_spatial.begin(), g.out_spatial.end());
  s.push_back(g.channels);
  return s;
}

Shape in_shape(const PoolGeometry& g) {
  Shape s{g.batch};
  s.insert(s.end(), g.in_spatial.begin(), g.in_spatial.end());
  s.push_back(g.channels);
  return s;
}

// Calls body(out_base, in_base, tap_begin, tap_end) per (batch, output position),
// where out_base / in_base are the flat offsets of channel 0.
template <class Body>
void for_each_window(const PoolGeometry& g, Body&& body) {
  const std::int64_t n_out = g.out_positions(), n_in = g.in_positions(), c = g.channels;
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t o = 0; o < n_out; ++o)
      body((b * n_out + o) * c, b * n_in * c, g.tap_start[static_cast<std::size_t>(o)],
           g.tap_start[static_cast<std::size_t>(o) + 1]);
}

double divisor(const PoolGeometry& g, std::int64_t tap_begin, std::int64_t tap_end, bool count_include_pad) {
  return static_cast<double>(count_include_pad ? g.window_size : tap_end - tap_begin);
}

}  // namespace

namespace {

// Max (TakeMax) or min over each window, keeping the first extreme element: the
// comparison is strict, and the running best starts at the window's first tap.
// NaN propagates (a window holding one yields NaN), as in jax's max_pool.
// Channels go in blocks held in local arrays, so the compiler sees no aliasing and
// vectorises the branch-free compare-and-select (with 32-bit indices, one compare
// mask serves both the value and the index lanes).
template <bool TakeMax, class T, class I>
void select_windows(const Tensor& x, const PoolGeometry& g, Tensor& out, Tensor& index) {
  using C = compute_t<T>;
  const C empty_window = std::numeric_limits<C>::has_infinity
                             ? (TakeMax ? -std::numeric_limits<C>::infinity() : std::numeric_limits<C>::infinity())
                             : (TakeMax ? std::numeric_limits<C>::lowest() : std::numeric_limits<C>::max());
  const T* px = x.data<T>();
  T* po = out.data<T>();
  I* pi = index.data<I>();
  const std::int64_t c = g.channels;
  constexpr std::int64_t block = 64;
  C best[block];
  I arg[block];
  for_each_window(g, [&](std::int64_t out_base, std::int64_t in_base, std::int64_t t0, std::int64_t t1) {
    if (t0 == t1) {  // only padding
      for (std::int64_t k = 0; k < c; ++k) {
        po[out_base + k] = T(empty_window);
        pi[out_base + k] = -1;
      }
      return;
    }
    for (std::int64_t k0 = 0; k0 < c; k0 += block) {
      const std::int64_t width = std::min(block, c - k0);
      const std::int64_t first = in_base + g.taps[static_cast<std::size_t>(t0)] * c + k0;
      for (std::int64_t k = 0; k < width; ++k) {
        best[k] = static_cast<C>(px[first + k]);
        arg[k] = static_cast<I>(first + k);
      }
      for (std::int64_t t = t0 + 1; t < t1; ++t) {
        const std::int64_t base = in_base + g.taps[static_cast<std::size_t>(t)] * c + k0;
        for (std::int64_t k = 0; k < width; ++k) {
          // A NaN beats every number, as in XLA's max/min: the first NaN wins.
          const C v = static_cast<C>(px[base + k]), b = best[k];
          const bool is_better = (TakeMax ? v > b : v < b) | ((v != v) & (b == b));
          arg[k] = is_better ? static_cast<I>(base + k) : arg[k];
          best[k] = is_better ? v : b;
        }
      }
      for (std::int64_t k = 0; k < width; ++k) {
        po[out_base + k0 + k] = T(best[k]);
        pi[out_base + k0 + k] = arg[k];
      }
    }
  });
}

}  // namespace

// select_windows for float32 with 32-bit indices and C a multiple of 8 up to 64 on
// AVX2 CPUs: a window's running extremes and indices stay in registers across its
// taps, 8 channels per vector. AVX2 code is confined to the target region and uses
// raw pointers only (no inline library function is compiled for AVX2).
#pragma GCC push_options
#pragma GCC target("avx2")

namespace {

constexpr std::int64_t max_avx2_pool_vectors = 8;

// V = C / 8 vectors per window, a compile-time count so best[] and arg[] live in
// registers (with a run-time count GCC keeps them on the stack and copies them
// with memcpy calls).
// With a tangent pt (forward mode), each window's tangent at its selected element
// goes to pto, chosen by the same comparisons (so it equals gather_flat(t, index)),
// zeroed where the selected value is not > 0 when `mask_positive` (relu's rule).
template <bool TakeMax, int V, bool WithTangent = false>
__attribute__((noinline)) void select_windows_avx2(const float* px, std::int64_t first_sample,
                                                   std::int64_t end_sample, std::int64_t in_positions,
                                                   std::int64_t out_positions, const std::int64_t* tap_start,
                                                   const std::int64_t* taps, float* po, std::int32_t* pi,
                                                   const float* pt = nullptr, float* pto = nullptr,
                                                   bool mask_positive = false) {
  constexpr std::int64_t vectors = V, channels = 8 * V;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const float empty_window = TakeMax ? -__builtin_inff() : __builtin_inff();
  __m256 best[V];
  __m256i arg[V];
  [[maybe_unused]] __m256 tangent[V];
  for (std::int64_t b = first_sample; b < end_sample; ++b) {
    const std::int64_t in_base = b * in_positions * channels;
    for (std::int64_t o = 0; o < out_positions; ++o) {
      const std::int64_t out_base = (b * out_positions + o) * channels, t0 = tap_start[o], t1 = tap_start[o + 1];
      if (t0 == t1) {  // only padding
        for (std::int64_t k = 0; k < channels; ++k) {
          po[out_base + k] = empty_window;
          pi[out_base + k] = -1;
          if constexpr (WithTangent) pto[out_base + k] = 0.0f;
        }
        continue;
      }
      const std::int64_t first = in_base + taps[t0] * channels;
#pragma GCC unroll 8
      for (std::int64_t v = 0; v < vectors; ++v) {
        best[v] = _mm256_loadu_ps(px + first + 8 * v);
        arg[v] = _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int>(first + 8 * v)));
        if constexpr (WithTangent) tangent[v] = _mm256_loadu_ps(pt + first + 8 * v);
      }
      for (std::int64_t t = t0 + 1; t < t1; ++t) {
        const std::int64_t start = in_base + taps[t] * channels;
#pragma GCC unroll 8
        for (std::int64_t v = 0; v < vectors; ++v) {
          const __m256i index = _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int>(start + 8 * v)));
          const __m256 better = select_extreme<TakeMax>(_mm256_loadu_ps(px + start + 8 * v), index, best[v], arg[v]);
          if constexpr (WithTangent) tangent[v] = _mm256_blendv_ps(tangent[v], _mm256_loadu_ps(pt + start + 8 * v), better);
        }
      }
#pragma GCC unroll 8
      for (std::int64_t v = 0; v < vectors; ++v) {
        _mm256_storeu_ps(po + out_base + 8 * v, best[v]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(pi + out_base + 8 * v), arg[v]);
        if constexpr (WithTangent)
          _mm256_storeu_ps(pto + out_base + 8 * v,
                           mask_positive ? _mm256_and_ps(tangent[v], _mm256_cmp_ps(best[v], _mm256_setzero_ps(), _CMP_GT_OQ))
                                         : tangent[v]);
      }
    }
  }
}

// The window loop of pool_select_transpose for disjoint windows (same conditions):
// each tap's elements get the window's value where they were selected, else zero.
// Stream: write with streaming stores (po 32-byte aligned; the caller fences).
template <int V, bool Stream>
__attribute__((noinline)) void transpose_windows_avx2(const float* pv, const std::int32_t* pi,
                                                      std::int64_t first_sample, std::int64_t end_sample,
                                                      std::int64_t in_positions, std::int64_t out_positions,
                                                      const std::int64_t* tap_start, const std::int64_t* taps,
                                                      float* po) {
  constexpr std::int64_t vectors = V, channels = 8 * V;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256 value[V];
  __m256i index[V];
  for (std::int64_t b = first_sample; b < end_sample; ++b) {
    const std::int64_t in_base = b * in_positions * channels;
    for (std::int64_t o = 0; o < out_positions; ++o) {
      const std::int64_t out_base = (b * out_positions + o) * channels;
#pragma GCC unroll 8
      for (std::int64_t v = 0; v < vectors; ++v) {
        value[v] = _mm256_loadu_ps(pv + out_base + 8 * v);
        index[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pi + out_base + 8 * v));
      }
      for (std::int64_t t = tap_start[o]; t < tap_start[o + 1]; ++t) {
        const std::int64_t start = in_base + taps[t] * channels;
#pragma GCC unroll 8
        for (std::int64_t v = 0; v < vectors; ++v) {
          const __m256i here = _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int>(start + 8 * v)));
          const __m256 selected = _mm256_castsi256_ps(_mm256_cmpeq_epi32(index[v], here));
          if constexpr (Stream) _mm256_stream_ps(po + start + 8 * v, _mm256_and_ps(selected, value[v]));
          else _mm256_storeu_ps(po + start + 8 * v, _mm256_and_ps(selected, value[v]));
        }
      }
    }
  }
}

}  // namespace

#pragma GCC pop_options

namespace {

// body(first, end) over contiguous ranges of samples, four per thread when the
// input is large enough to be worth the threads (the loops are memory-bound; four,
// so that a thread done with its own ranges takes over part of a slower one's).
template <class Body>
void for_sample_ranges(const PoolGeometry& g, Body&& body) {
  const bool large = g.batch * g.in_positions() * g.channels >= (std::int64_t{1} << 17);
  parallel_for_ranges(g.batch, large ? 4 * num_threads() : 1, body);
}

// Calls select_windows_avx2<TakeMax, V> for V = C / 8 (1 ≤ V ≤ max_avx2_pool_vectors);
// with the tangent t and its output when `tangent` is given.
template <bool TakeMax, int V = 1>
void select_windows_avx2_for(const Tensor& x, const PoolGeometry& g, Tensor& out, Tensor& index,
                             const std::pair<const Tensor*, Tensor*>& tangent = {nullptr, nullptr},
                             bool mask_positive = false) {
  if constexpr (V <= max_avx2_pool_vectors) {
    if (g.channels != 8 * V)
      return select_windows_avx2_for<TakeMax, V + 1>(x, g, out, index, tangent, mask_positive);
    const float* px = x.data<float>();
    float* po = out.data<float>();
    std::int32_t* pi = index.data<std::int32_t>();
    for_sample_ranges(g, [&](std::int64_t first, std::int64_t end) {
      if (tangent.first)
        select_windows_avx2<TakeMax, V, true>(px, first, end, g.in_positions(), g.out_positions(),
                                              g.tap_start.data(), g.taps.data(), po, pi, tangent.first->data<float>(),
                                              tangent.second->data<float>(), mask_positive);
      else
        select_windows_avx2<TakeMax, V>(px, first, end, g.in_positions(), g.out_positions(), g.tap_start.data(),
                                        g.taps.data(), po, pi);
    });
  }
}

// Outputs from this size on are written with streaming stores: most of their
// elements are zeros nobody reads before the next op (the gradient of the conv below
// the pool, which reads them once), and a normal store would first fetch each line
// from memory. The main job's first pool (3.2 MB): its backward 0.35 → 0.18 ms at 1
// thread, the step −1 to −5 % (the conv's kernel gradient then reads the lines from
// memory: +0.04 ms). Smaller outputs stay in cache for their reader.
constexpr std::size_t kStreamingPoolGradientBytes = std::size_t{2} << 20;

// Calls transpose_windows_avx2<V, ·> for V = C / 8 (1 ≤ V ≤ max_avx2_pool_vectors).
template <int V = 1>
void transpose_windows_avx2_for(const float* pv, const std::int32_t* pi, const PoolGeometry& g, float* po) {
  if constexpr (V <= max_avx2_pool_vectors) {
    if (g.channels != 8 * V) return transpose_windows_avx2_for<V + 1>(pv, pi, g, po);
    const auto bytes = static_cast<std::size_t>(g.batch * g.in_positions() * g.channels) * sizeof(float);
    const bool stream = bytes >= kStreamingPoolGradientBytes && reinterpret_cast<std::uintptr_t>(po) % 32 == 0;
    for_sample_ranges(g, [&](std::int64_t first, std::int64_t end) {
      if (stream) {
        transpose_windows_avx2<V, true>(pv, pi, first, end, g.in_positions(), g.out_positions(), g.tap_start.data(),
                                        g.taps.data(), po);
        _mm_sfence();  // this thread's streaming stores are visible before the pool's join
      } else {
        transpose_windows_avx2<V, false>(pv, pi, first, end, g.in_positions(), g.out_positions(), g.tap_start.data(),
                                         g.taps.data(), po);
      }
    });
  }
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

// select_windows for float32 with 32-bit indices and C % 4 == 0, four channels per
// vector (GCC vector extensions: SSE2 on baseline x86-64); the same selection rule,
// written with vector compares and selects that the scalar loop does not get.
template <bool TakeMax>
void select_windows_f32x4(const Tensor& x, const PoolGeometry& g, Tensor& out, Tensor& index) {
  using F4 = float __attribute__((vector_size(16)));
  using I4 = std::int32_t __attribute__((vector_size(16)));
  const float* px = x.data<float>();
  float* po = out.data<float>();
  std::int32_t* pi = index.data<std::int32_t>();
  const std::int64_t c = g.channels;
  const I4 lane = {0, 1, 2, 3};
  const auto load = [](const float* p) {
    F4 v;
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  for_each_window(g, [&](std::int64_t out_base, std::int64_t in_base, std::int64_t t0, std::int64_t t1) {
    if (t0 == t1) {  // only padding
      for (std::int64_t k = 0; k < c; ++k) {
        po[out_base + k] = TakeMax ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
        pi[out_base + k] = -1;
      }
      return;
    }
    for (std::int64_t k = 0; k < c; k += 4) {
      const std::int64_t first = in_base + g.taps[static_cast<std::size_t>(t0)] * c + k;
      F4 best = load(px + first);
      I4 arg = lane + static_cast<std::int32_t>(first);
      for (std::int64_t t = t0 + 1; t < t1; ++t) {
        const std::int64_t base = in_base + g.taps[static_cast<std::size_t>(t)] * c + k;
        const F4 v = load(px + base);
        const I4 is_better = (TakeMax ? v > best : v < best) | ((v != v) & (best == best));
        arg = is_better ? lane + static_cast<std::int32_t>(base) : arg;
        best = is_better ? v : best;
      }
      std::memcpy(po + out_base + k, &best, sizeof best);
      std::memcpy(pi + out_base + k, &arg, sizeof arg);
    }
  });
}

// The window loop of pool_select_transpose for float32 values with 32-bit indices
// and C % 4 == 0: a vector compare and select per 4 channels (the scalar form
// branches on whether each element was selected, a coin flip per element).
void transpose_windows_f32x4(const float* pv, const std::int32_t* pi, const PoolGeometry& g, float* po) {
  using F4 = float __attribute__((vector_size(16)));
  using I4 = std::int32_t __attribute__((vector_size(16)));
  const std::int64_t c = g.channels;
  const I4 lane = {0, 1, 2, 3};
  const F4 zero = {0, 0, 0, 0};
  for_each_window(g, [&](std::int64_t out_base, std::int64_t in_base, std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
      const std::int64_t base = in_base + g.taps[static_cast<std::size_t>(t)] * c;
      for (std::int64_t k = 0; k < c; k += 4) {
        F4 v;
        I4 index;
        std::memcpy(&v, pv + out_base + k, sizeof v);
        std::memcpy(&index, pi + out_base + k, sizeof index);
        const F4 r = index == lane + static_cast<std::int32_t>(base + k) ? v : zero;
        std::memcpy(po + base + k, &r, sizeof r);
      }
    }
  });
}

// Calls fn(I{}) with I the index type of `indices` (Int32 or Int64).
template <class Fn>
void visit_index(const Tensor& indices, Fn&& fn) {
  if (indices.dtype() == DType::Int32) fn(std::int32_t{});
  else fn(std::int64_t{});
}

}  // namespace

std::pair<Tensor, Tensor> pool_select(const Tensor& x, const PoolGeometry& g, bool take_max) {
  Tensor out = empty(out_shape(g), x.dtype());
  const bool narrow = x.numel() <= std::numeric_limits<std::int32_t>::max();
  Tensor index = empty(out_shape(g), narrow ? DType::Int32 : DType::Int64);
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      throw DTypeError(fmt::format("{}: bool inputs are not supported", take_max ? "max_pool" : "min_pool"));
    } else {
      if (std::is_same_v<T, float> && narrow && g.channels % 8 == 0 &&
          g.channels <= 8 * max_avx2_pool_vectors && cpu_has_avx2()) {
        if (take_max) select_windows_avx2_for<true>(x, g, out, index);
        else select_windows_avx2_for<false>(x, g, out, index);
        return;
      }
      if (std::is_same_v<T, float> && narrow && g.channels % 4 == 0) {
        if (take_max) select_windows_f32x4<true>(x, g, out, index);
        else select_windows_f32x4<false>(x, g, out, index);
        return;
      }
      visit_index(index, [&](auto index_tag) {
        using I = decltype(index_tag);
        if (take_max) select_windows<true, T, I>(x, g, out, index);
        else select_windows<false, T, I>(x, g, out, index);
      });
    }
  });
  return {out, index};
}

std::optional<PoolSelection> pool_select_with_tangent(const Tensor& x, const Tensor& t, const PoolGeometry& g,
                                                      bool take_max, bool mask_positive) {
  if (x.dtype() != DType::Float32 || t.dtype() != DType::Float32 || t.shape() != x.shape() ||
      x.numel() > std::numeric_limits<std::int32_t>::max() || g.channels % 8 != 0 ||
      g.channels > 8 * max_avx2_pool_vectors || !cpu_has_avx2())
    return std::nullopt;
  PoolSelection s{empty(out_shape(g), x.dtype()), empty(out_shape(g), DType::Int32), empty(out_shape(g), x.dtype())};
  if (take_max) select_windows_avx2_for<true>(x, g, s.out, s.index, {&t, &s.out_tangent}, mask_positive);
  else select_windows_avx2_for<false>(x, g, s.out, s.index, {&t, &s.out_tangent}, mask_positive);
  return s;
}

Tensor pool_select_transpose(const Tensor& values, const Tensor& indices, const PoolGeometry& g) {
  if (!g.disjoint) return scatter_add_flat(values, indices, in_shape(g));
  Tensor out = empty(in_shape(g), values.dtype());
  visit_dtype(values.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      throw DTypeError("pool_select_transpose: bool values are not supported");
    } else {
      visit_index(indices, [&](auto index_tag) {
        using I = decltype(index_tag);
        const T* pv = values.data<T>();
        const I* pi = indices.data<I>();
        T* po = out.data<T>();
        const T zero = convert_element<T>(0.0);
        const std::int64_t c = g.channels, n_in = g.in_positions();
        for (std::int64_t b = 0; b < g.batch; ++b)
          for (const std::int64_t p : g.uncovered) std::fill_n(po + (b * n_in + p) * c, c, zero);
        if constexpr (std::is_same_v<T, float> && std::is_same_v<I, std::int32_t>) {
          if (c % 8 == 0 && c <= 8 * max_avx2_pool_vectors && cpu_has_avx2()) {
            transpose_windows_avx2_for(pv, pi, g, po);
            return;
          }
          if (c % 4 == 0) {
            transpose_windows_f32x4(pv, pi, g, po);
            return;
          }
        }
        for_each_window(g, [&](std::int64_t out_base, std::int64_t in_base, std::int64_t t0, std::int64_t t1) {
          for (std::int64_t t = t0; t < t1; ++t) {
            const std::int64_t base = in_base + g.taps[static_cast<std::size_t>(t)] * c;
            for (std::int64_t k = 0; k < c; ++k)
              po[base + k] = pi[out_base + k] == static_cast<I>(base + k) ? pv[out_base + k] : zero;
          }
        });
      });
    }
  });
  return out;
}

Tensor avg_pool(const Tensor& x, const PoolGeometry& g, bool count_include_pad) {
  Tensor out = empty(out_shape(g), x.dtype());
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_floating_point_v<compute_t<T>>) {
      throw DTypeError(fmt::format("avg_pool: needs a floating input, got {}", dtype_name(x.dtype())));
    } else {
      using C = compute_t<T>;
      const T* px = x.data<T>();
      T* po = out.data<T>();
      const std::int64_t c = g.channels;
      std::vector<C> acc(static_cast<std::size_t>(c));
      for_each_window(g, [&](std::int64_t out_base, std::int64_t in_base, std::int64_t t0, std::int64_t t1) {
        std::fill(acc.begin(), acc.end(), C(0));
        for (std::int64_t t = t0; t < t1; ++t) {
          const T* row = px + in_base + g.taps[static_cast<std::size_t>(t)] * c;
          for (std::int64_t k = 0; k < c; ++k) acc[static_cast<std::size_t>(k)] += static_cast<C>(row[k]);
        }
        const C scale = C(1) / static_cast<C>(divisor(g, t0, t1, count_include_pad));
        for (std::int64_t k = 0; k < c; ++k) po[out_base + k] = T(acc[static_cast<std::size_t>(k)] * scale);
      });
    }
  });
  return out;
}

Tensor avg_pool_transpose(const Tensor& grad_out, const PoolGeometry& g, bool count_include_pad) {
  Tensor dx = zeros(in_shape(g), grad_out.dtype());
  visit_dtype(grad_out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_floating_point_v<compute_t<T>>) {
      throw DTypeError("avg_pool: gradient must be floating");
    } else {
      using C = compute_t<T>;
      const std::int64_t c = g.channels, n = dx.numel();
      // Several windows add into the same input element: accumulate in the compute
      // type (a separate buffer only for 16-bit storage).
      std::vector<C> buffer(std::is_same_v<T, C> ? 0 : static_cast<std::size_t>(n), C(0));
      C* acc = buffer.data();
      if constexpr (std::is_same_v<T, C>) acc = dx.data<T>();
      const T* pg = grad_out.data<T>();
      for_each_window(g, [&](std::int64_t out_base, std::int64_t in_base, std::int64_t t0, std::int64_t t1) {
        const C scale = C(1) / static_cast<C>(divisor(g, t0, t1, count_include_pad));
        for (std::int64_t t = t0; t < t1; ++t) {
          C* row = acc + in_base + g.taps[static_cast<std::size_t>(t)] * c;
          for (std::int64_t k = 0; k < c; ++k) row[k] += static_cast<C>(pg[out_base + k]) * scale;
        }
      });
      if constexpr (!std::is_same_v<T, C>) {
        T* pd = dx.data<T>();
        for (std::int64_t i = 0; i < n; ++i) pd[i] = T(acc[i]);
      }
    }
  });
  return dx;
}

Tensor gather_flat(const Tensor& x, const Tensor& indices) {
  Tensor out = empty(indices.shape(), x.dtype());
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    visit_index(indices, [&](auto index_tag) {
      using I = decltype(index_tag);
      const T* px = x.data<T>();
      const I* pi = indices.data<I>();
      T* po = out.data<T>();
      const T zero = convert_element<T>(0.0);
      const std::int64_t n = out.numel();
      for (std::int64_t i = 0; i < n; ++i) po[i] = pi[i] < 0 ? zero : px[pi[i]];
    });
  });
  return out;
}

Tensor scatter_add_flat(const Tensor& values, const Tensor& indices, const Shape& shape) {
  Tensor out = zeros(shape, values.dtype());
  visit_dtype(values.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      throw DTypeError("scatter_add_flat: bool values are not supported");
    } else {
      using C = compute_t<T>;
      const std::int64_t n_out = out.numel(), n_values = values.numel();
      std::vector<C> buffer(std::is_same_v<T, C> ? 0 : static_cast<std::size_t>(n_out), C(0));
      C* acc = buffer.data();
      if constexpr (std::is_same_v<T, C>) acc = out.data<T>();
      const T* pv = values.data<T>();
      visit_index(indices, [&](auto index_tag) {
        using I = decltype(index_tag);
        const I* pi = indices.data<I>();
        for (std::int64_t i = 0; i < n_values; ++i)
          if (pi[i] >= 0) acc[pi[i]] += static_cast<C>(pv[i]);
      });
      if constexpr (!std::is_same_v<T, C>) {
        T* po = out.data<T>();
        for (std::int64_t i = 0; i < n_out; ++i) po[i] = T(acc[i]);
      }
    }
  });
  return out;
}

}  // namespace xgrad::kernels
