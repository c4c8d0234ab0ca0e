// No trapping math, so that the clamps of the float exp if-convert and its loop
// vectorises (see recurrent_math.hpp); xgrad never reads the FP exception flags.
#pragma GCC optimize("no-trapping-math")

#include "core/kernels/attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/kernels/recurrent_math.hpp"
#include "core/tensor_impl.hpp"
#include "core/threading.hpp"

namespace xgrad::kernels {

namespace {

template <class F>
void visit_f32_f64(DType dtype, const char* op, F&& f) {
  if (dtype == DType::Float32) return f(float{});
  if (dtype == DType::Float64) return f(double{});
  throw DTypeError(fmt::format("{}: the kernel takes float32 or float64, got {}", op, dtype_name(dtype)));
}

// Work of one chunk worth a hand-off to the pool: below it everything runs on the
// caller; the larger bound while the threads' cores share no cache
// (core/thread_placement.hpp: the block's scores on 64 × 4 heads × 16² × 16 are 2^20).
constexpr std::int64_t kMinParallelWork = 1 << 15;
constexpr std::int64_t kFarApartMinParallelWork = 1 << 21;

// Splits `items` into chunks for parallel_for_ranges: one chunk when the whole
// job is small, else a few per thread. Each item's result does not depend on the
// split, so neither do the bits.
std::int64_t chunk_count(std::int64_t items, std::int64_t work_per_item) {
  if (items * work_per_item < detail::min_parallel_work(kMinParallelWork, kFarApartMinParallelWork)) return 1;
  return std::min<std::int64_t>(items, 4 * num_threads());
}

// y = exp(y - shift) over a row. float: the vectorised polynomial exp of the
// recurrent kernels (about 2 ulp; glibc's expf is a scalar call per score and was a
// third of the softmax), exactly 0 below -87 (masked scores, as std::exp gives);
// double keeps std::exp.
void exp_shifted(float* y, std::int64_t n, float shift) {
  for (std::int64_t j = 0; j < n; ++j) {
    const float v = y[j] - shift;
    y[j] = v < -87.0f ? 0.0f : recurrent_math::exp_kernel(v);
  }
}
void exp_shifted(double* y, std::int64_t n, double shift) {
  for (std::int64_t j = 0; j < n; ++j) y[j] = std::exp(y[j] - shift);
}

std::int64_t rows_of(const Tensor& x) { return x.dim() == 0 ? 1 : x.numel() / std::max<std::int64_t>(x.size(-1), 1); }

// One (batch, head) pair of each contraction. The loops are written so that the
// innermost one runs over contiguous memory without a reduction (GCC vectorises
// it), and every output element is summed in the same order on every path: the
// AVX2 build of these loops (chosen at run time) gives the same bits as the plain
// one, since ISO C++ mode does not contract a * b + c into an FMA.
//
// With W > 0 the contiguous inner width D of values is known at compile time: each
// output row then sits in registers while it is summed (scores: W is always 0).
//
// scores: q rows q + i*row_q (D values), k rows k + j*row_k; out [Q, K]; kt: D*K scratch.
template <class T, int W>
[[gnu::always_inline]] inline void scores_pair(const T* __restrict q, const T* __restrict k, T* __restrict out,
                                               T* __restrict kt, std::int64_t Q, std::int64_t K_runtime,
                                               std::int64_t D, std::int64_t row_q, std::int64_t row_k, T scale) {
  const std::int64_t K = W > 0 ? W : K_runtime;
  for (std::int64_t j = 0; j < K; ++j)
    for (std::int64_t d = 0; d < D; ++d) kt[d * K + j] = k[j * row_k + d];
  for (std::int64_t i = 0; i < Q; ++i) {
    const T* __restrict qi = q + i * row_q;
    T* __restrict row = out + i * K;
    for (std::int64_t j = 0; j < K; ++j) row[j] = T(0);
    for (std::int64_t d = 0; d < D; ++d) {
      const T a = qi[d];
      const T* __restrict kd = kt + d * K;
      for (std::int64_t j = 0; j < K; ++j) row[j] += a * kd[j];
    }
    if (scale != T(1))
      for (std::int64_t j = 0; j < K; ++j) row[j] *= scale;
  }
}

// values: w [Q, K], v rows v + j*row_v (D values), out rows out + i*row_o.
template <class T, int W>
[[gnu::always_inline]] inline void values_pair(const T* __restrict w, const T* __restrict v, T* __restrict out,
                                               std::int64_t Q, std::int64_t K, std::int64_t D_runtime,
                                               std::int64_t row_v, std::int64_t row_o, T scale) {
  const std::int64_t D = W > 0 ? W : D_runtime;
  for (std::int64_t i = 0; i < Q; ++i) {
    const T* __restrict wi = w + i * K;
    T* __restrict oi = out + i * row_o;
    if constexpr (W > 0) {
      T acc[W] = {};
      for (std::int64_t j = 0; j < K; ++j) {
        const T a = wi[j];
        const T* __restrict vj = v + j * row_v;
        for (int d = 0; d < W; ++d) acc[d] += a * vj[d];
      }
      for (int d = 0; d < W; ++d) oi[d] = scale != T(1) ? acc[d] * scale : acc[d];
    } else {
      for (std::int64_t d = 0; d < D; ++d) oi[d] = T(0);
      for (std::int64_t j = 0; j < K; ++j) {
        const T a = wi[j];
        const T* __restrict vj = v + j * row_v;
        for (std::int64_t d = 0; d < D; ++d) oi[d] += a * vj[d];
      }
      if (scale != T(1))
        for (std::int64_t d = 0; d < D; ++d) oi[d] *= scale;
    }
  }
}

using ScoresFn = void (*)(const void*, const void*, void*, void*, std::int64_t, std::int64_t, std::int64_t,
                          std::int64_t, std::int64_t, double);
using ValuesFn = void (*)(const void*, const void*, void*, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                          std::int64_t, double);

template <class T, int W>
void scores_plain(const void* q, const void* k, void* out, void* kt, std::int64_t Q, std::int64_t K, std::int64_t D,
                  std::int64_t row_q, std::int64_t row_k, double scale) {
  scores_pair<T, W>(static_cast<const T*>(q), static_cast<const T*>(k), static_cast<T*>(out), static_cast<T*>(kt), Q,
                    K, D, row_q, row_k, static_cast<T>(scale));
}
template <class T, int W>
__attribute__((target("avx2"))) void scores_avx2(const void* q, const void* k, void* out, void* kt, std::int64_t Q,
                                                  std::int64_t K, std::int64_t D, std::int64_t row_q,
                                                  std::int64_t row_k, double scale) {
  scores_pair<T, W>(static_cast<const T*>(q), static_cast<const T*>(k), static_cast<T*>(out), static_cast<T*>(kt), Q,
                    K, D, row_q, row_k, static_cast<T>(scale));
}
template <class T, int W>
void values_plain(const void* w, const void* v, void* out, std::int64_t Q, std::int64_t K, std::int64_t D,
                  std::int64_t row_v, std::int64_t row_o, double scale) {
  values_pair<T, W>(static_cast<const T*>(w), static_cast<const T*>(v), static_cast<T*>(out), Q, K, D, row_v, row_o,
                    static_cast<T>(scale));
}
template <class T, int W>
__attribute__((target("avx2"))) void values_avx2(const void* w, const void* v, void* out, std::int64_t Q,
                                                  std::int64_t K, std::int64_t D, std::int64_t row_v,
                                                  std::int64_t row_o, double scale) {
  values_pair<T, W>(static_cast<const T*>(w), static_cast<const T*>(v), static_cast<T*>(out), Q, K, D, row_v, row_o,
                    static_cast<T>(scale));
}

bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}

// The pair kernel for a contiguous inner width: compile-time widths for the usual
// head sizes and lengths, the runtime loop otherwise.
// Scores keep the runtime loop: with a compile-time K = 16 their share of
// bench/attention_bench's profile rose from 10 % to 27 %, while a compile-time D
// took values from 16 % to 6 % (perf, loaded machine).
template <class T>
ScoresFn pick_scores() {
  return has_avx2() ? scores_avx2<T, 0> : scores_plain<T, 0>;
}
template <class T>
ValuesFn pick_values(std::int64_t width) {
  const bool avx2 = has_avx2();
  switch (width) {
    case 8: return avx2 ? values_avx2<T, 8> : values_plain<T, 8>;
    case 16: return avx2 ? values_avx2<T, 16> : values_plain<T, 16>;
    case 32: return avx2 ? values_avx2<T, 32> : values_plain<T, 32>;
    case 64: return avx2 ? values_avx2<T, 64> : values_plain<T, 64>;
    default: return avx2 ? values_avx2<T, 0> : values_plain<T, 0>;
  }
}

}  // namespace

Tensor attention_scores(const Tensor& query, const Tensor& key, double scale) {
  const Shape& qs = query.shape();
  const std::size_t r = qs.size();
  const std::int64_t Q = qs[r - 3], H = qs[r - 2], D = qs[r - 1], K = key.shape()[r - 3];
  Shape out_shape(qs.begin(), qs.end() - 3);
  const std::int64_t N = numel(out_shape);  // the batch dims
  out_shape.insert(out_shape.end(), {H, Q, K});
  Tensor out = empty(out_shape, query.dtype());
  if (out.numel() == 0) return out;
  visit_f32_f64(query.dtype(), "attention_scores", [&](auto tag) {
    using T = decltype(tag);
    const T* pq = query.data<T>();
    const T* pk = key.data<T>();
    T* po = out.data<T>();
    const ScoresFn pair_fn = pick_scores<T>();
    parallel_for_ranges(N * H, chunk_count(N * H, Q * K * D), [&](std::int64_t begin, std::int64_t end) {
      // k of one (n, h) transposed to [D, K], so that the inner loop runs over contiguous j.
      std::vector<T> kt(static_cast<std::size_t>(D * K));
      for (std::int64_t pair = begin; pair < end; ++pair) {
        const std::int64_t n = pair / H, h = pair % H;
        pair_fn(pq + (n * Q * H + h) * D, pk + (n * K * H + h) * D, po + pair * Q * K, kt.data(), Q, K, D, H * D,
                H * D, scale);
      }
    });
  });
  return out;
}

Tensor attention_values(const Tensor& weights, const Tensor& value, double scale) {
  const Shape& ws = weights.shape();
  const std::size_t r = ws.size();
  const std::int64_t H = ws[r - 3], Q = ws[r - 2], K = ws[r - 1], D = value.shape()[r - 1];
  Shape out_shape(ws.begin(), ws.end() - 3);
  const std::int64_t N = numel(out_shape);  // the batch dims
  out_shape.insert(out_shape.end(), {Q, H, D});
  Tensor out = empty(out_shape, weights.dtype());
  if (out.numel() == 0) return out;
  visit_f32_f64(weights.dtype(), "attention_values", [&](auto tag) {
    using T = decltype(tag);
    const T* pw = weights.data<T>();
    const T* pv = value.data<T>();
    T* po = out.data<T>();
    const ValuesFn pair_fn = pick_values<T>(D);
    parallel_for_ranges(N * H, chunk_count(N * H, Q * K * D), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t pair = begin; pair < end; ++pair) {
        const std::int64_t n = pair / H, h = pair % H;
        pair_fn(pw + pair * Q * K, pv + (n * K * H + h) * D, po + (n * Q * H + h) * D, Q, K, D, H * D, H * D, scale);
      }
    });
  });
  return out;
}

Tensor masked_softmax(const Tensor& x, const Tensor& keep) {
  Tensor out = empty(x.shape(), x.dtype());
  if (x.numel() == 0) return out;
  const std::int64_t rows = rows_of(x), n = x.numel() / rows;
  visit_f32_f64(x.dtype(), "masked_softmax", [&](auto tag) {
    using T = decltype(tag);
    const T lowest = std::numeric_limits<T>::lowest();
    const T* px = x.data<T>();
    const bool* pk = keep.defined() ? keep.data<bool>() : nullptr;
    T* po = out.data<T>();
    parallel_for_ranges(rows, chunk_count(rows, 4 * n), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t row = begin; row < end; ++row) {
        const T* xr = px + row * n;
        const bool* kr = pk ? pk + row * n : nullptr;
        T* yr = po + row * n;
        for (std::int64_t j = 0; j < n; ++j) yr[j] = (kr && !kr[j]) ? lowest : xr[j];
        T shift = *std::max_element(yr, yr + n);
        if (!std::isfinite(shift)) shift = 0;
        exp_shifted(yr, n, shift);
        T total = 0;
        for (std::int64_t j = 0; j < n; ++j) total += yr[j];
        const T inverse = T(1) / total;
        for (std::int64_t j = 0; j < n; ++j) yr[j] *= inverse;
      }
    });
  });
  return out;
}

Tensor masked_softmax_backward(const Tensor& y, const Tensor& g, const Tensor& keep) {
  Tensor out = empty(y.shape(), y.dtype());
  if (y.numel() == 0) return out;
  const std::int64_t rows = rows_of(y), n = y.numel() / rows;
  visit_f32_f64(y.dtype(), "masked_softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* py = y.data<T>();
    const T* pg = g.data<T>();
    const bool* pk = keep.defined() ? keep.data<bool>() : nullptr;
    T* po = out.data<T>();
    parallel_for_ranges(rows, chunk_count(rows, 3 * n), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t row = begin; row < end; ++row) {
        const T* yr = py + row * n;
        const T* gr = pg + row * n;
        T* dr = po + row * n;
        T dot = 0;
        for (std::int64_t j = 0; j < n; ++j) dot += gr[j] * yr[j];
        for (std::int64_t j = 0; j < n; ++j) dr[j] = yr[j] * (gr[j] - dot);
        if (pk) {
          const bool* kr = pk + row * n;
          for (std::int64_t j = 0; j < n; ++j)
            if (!kr[j]) dr[j] = 0;
        }
      }
    });
  });
  return out;
}

}  // namespace xgrad::kernels
