#include "core/kernels/attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <fmt/format.h>

#include "core/error.hpp"
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

// Work of one chunk worth a hand-off to the pool: below it everything runs on the caller.
constexpr std::int64_t kMinParallelWork = 1 << 15;

// Splits `items` into chunks for parallel_for_ranges: one chunk when the whole
// job is small, else a few per thread. Each item's result does not depend on the
// split, so neither do the bits.
std::int64_t chunk_count(std::int64_t items, std::int64_t work_per_item) {
  if (items * work_per_item < kMinParallelWork) return 1;
  return std::min<std::int64_t>(items, 4 * num_threads());
}

std::int64_t rows_of(const Tensor& x) { return x.dim() == 0 ? 1 : x.numel() / std::max<std::int64_t>(x.size(-1), 1); }

}  // namespace

Tensor attention_scores(const Tensor& query, const Tensor& key, double scale) {
  const Shape& qs = query.shape();
  const std::size_t r = qs.size();
  const std::int64_t Q = qs[r - 3], H = qs[r - 2], D = qs[r - 1], K = key.shape()[r - 3];
  const std::int64_t N = Q * H * D == 0 ? 0 : query.numel() / (Q * H * D);
  Shape out_shape(qs.begin(), qs.end() - 3);
  out_shape.insert(out_shape.end(), {H, Q, K});
  Tensor out = empty(out_shape, query.dtype());
  if (out.numel() == 0) return out;
  visit_f32_f64(query.dtype(), "attention_scores", [&](auto tag) {
    using T = decltype(tag);
    const T* pq = query.data<T>();
    const T* pk = key.data<T>();
    T* po = out.data<T>();
    const T s = static_cast<T>(scale);
    parallel_for_ranges(N * H, chunk_count(N * H, Q * K * D), [&](std::int64_t begin, std::int64_t end) {
      // k of one (n, h) transposed to [D, K], so that the inner loop runs over
      // contiguous j and each score sums over d in order.
      std::vector<T> kt(static_cast<std::size_t>(D * K));
      for (std::int64_t pair = begin; pair < end; ++pair) {
        const std::int64_t n = pair / H, h = pair % H;
        for (std::int64_t j = 0; j < K; ++j) {
          const T* kj = pk + ((n * K + j) * H + h) * D;
          for (std::int64_t d = 0; d < D; ++d) kt[static_cast<std::size_t>(d * K + j)] = kj[d];
        }
        for (std::int64_t i = 0; i < Q; ++i) {
          const T* qi = pq + ((n * Q + i) * H + h) * D;
          T* row = po + ((n * H + h) * Q + i) * K;
          std::fill(row, row + K, T(0));
          for (std::int64_t d = 0; d < D; ++d) {
            const T a = qi[d];
            const T* kd = kt.data() + d * K;
            for (std::int64_t j = 0; j < K; ++j) row[j] += a * kd[j];
          }
          if (scale != 1.0)
            for (std::int64_t j = 0; j < K; ++j) row[j] *= s;
        }
      }
    });
  });
  return out;
}

Tensor attention_values(const Tensor& weights, const Tensor& value, double scale) {
  const Shape& ws = weights.shape();
  const std::size_t r = ws.size();
  const std::int64_t H = ws[r - 3], Q = ws[r - 2], K = ws[r - 1], D = value.shape()[r - 1];
  const std::int64_t N = H * Q * K == 0 ? 0 : weights.numel() / (H * Q * K);
  Shape out_shape(ws.begin(), ws.end() - 3);
  out_shape.insert(out_shape.end(), {Q, H, D});
  Tensor out = empty(out_shape, weights.dtype());
  if (out.numel() == 0) return out;
  visit_f32_f64(weights.dtype(), "attention_values", [&](auto tag) {
    using T = decltype(tag);
    const T* pw = weights.data<T>();
    const T* pv = value.data<T>();
    T* po = out.data<T>();
    const T s = static_cast<T>(scale);
    parallel_for_ranges(N * H, chunk_count(N * H, Q * K * D), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t pair = begin; pair < end; ++pair) {
        const std::int64_t n = pair / H, h = pair % H;
        for (std::int64_t i = 0; i < Q; ++i) {
          const T* wi = pw + ((n * H + h) * Q + i) * K;
          T* oi = po + ((n * Q + i) * H + h) * D;
          std::fill(oi, oi + D, T(0));
          for (std::int64_t j = 0; j < K; ++j) {
            const T a = wi[j];
            const T* vj = pv + ((n * K + j) * H + h) * D;
            for (std::int64_t d = 0; d < D; ++d) oi[d] += a * vj[d];
          }
          if (scale != 1.0)
            for (std::int64_t d = 0; d < D; ++d) oi[d] *= s;
        }
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
        T total = 0;
        for (std::int64_t j = 0; j < n; ++j) {
          yr[j] = std::exp(yr[j] - shift);
          total += yr[j];
        }
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
