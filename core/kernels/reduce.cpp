// Every reduction here reads its input as a 3-D array [outer, n, inner] and
// reduces the middle axis. That covers any set of adjacent axes with no copy;
// reduced axes that are not adjacent are first moved last by one transpose.
//
// Two loop shapes keep the hot loops contiguous (DESIGN.md: lazy xtensor
// reductions are 10-76x slower than plain loops):
// - inner == 1 (reducing the last axes): each output reduces a contiguous run.
//   Sums use 8 independent lanes, which the compiler vectorises without
//   reassociating, and go pairwise (as NumPy) for accuracy; extrema read the run
//   as rows of 64 and reduce those columns (the second shape).
// - inner > 1: whole rows of `inner` elements are accumulated one after the
//   other, so the inner loop is contiguous instead of striding down a column.
#include "core/kernels/reduce.hpp"

#include <algorithm>
#include <optional>
#include <cmath>
#include <limits>
#include <type_traits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/kernels/elementwise.hpp"
#include "core/kernels/shape_ops.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad::kernels {

namespace {

struct Reduction {
  Tensor source;  // x, or x transposed so that the reduced axes come last
  std::int64_t outer = 1, n = 1, inner = 1;
  std::vector<std::int64_t> permutation;  // the transpose applied to x (empty: none)

  // Brings a tensor laid out like `source` back to x's axis order.
  Tensor restore(const Tensor& y) const {
    if (permutation.empty()) return y;
    std::vector<std::int64_t> inverse(permutation.size());
    for (std::size_t k = 0; k < permutation.size(); ++k) inverse[static_cast<std::size_t>(permutation[k])] =
        static_cast<std::int64_t>(k);
    return transpose(y, inverse);
  }
};

Reduction prepare(const Tensor& x, const Axes& axes) {
  const Shape& shape = x.shape();
  const auto rank = static_cast<std::int64_t>(shape.size());
  auto reduced = [&](std::int64_t d) { return std::binary_search(axes.begin(), axes.end(), d); };
  auto size = [&](std::int64_t d) { return shape[static_cast<std::size_t>(d)]; };
  // Size-1 axes read the same whether reduced or kept: only the others decide
  // whether the reduced axes form one block.
  std::int64_t first = -1, last = -1;
  for (std::int64_t d = 0; d < rank; ++d)
    if (reduced(d) && size(d) != 1) {
      if (first < 0) first = d;
      last = d;
    }
  bool adjacent = true;
  for (std::int64_t d = first + 1; d < last; ++d) adjacent = adjacent && (reduced(d) || size(d) == 1);
  Reduction r;
  r.source = x;
  if (first < 0) {
    r.outer = x.numel();
  } else if (adjacent) {
    for (std::int64_t d = 0; d < rank; ++d) (d < first ? r.outer : d > last ? r.inner : r.n) *= size(d);
  } else {
    for (bool reduced_part : {false, true})
      for (std::int64_t d = 0; d < rank; ++d)
        if (reduced(d) == reduced_part) {
          r.permutation.push_back(d);
          (reduced_part ? r.n : r.outer) *= size(d);
        }
    r.source = transpose(x, r.permutation);
  }
  // An empty result reduces nothing. Without this, rows of zero width (inner == 0)
  // would still be walked n times, and n can be huge for an empty tensor.
  if (r.outer * r.inner == 0) r.n = 0;
  return r;
}

using One = std::integral_constant<std::int64_t, 1>;

// Calls f(inner) with inner as a compile-time 1 when it is 1. The row helpers
// below then take their contiguous-run (lane) loops instead of rows of length one.
template <class F>
void with_inner(std::int64_t inner, F&& f) {
  if (inner == 1) f(One{});
  else f(inner);
}

// The skeleton of every reduction below: r.source is r.outer blocks of [n, inner]
// (the reduced axes in the middle); calls block(base, o, inner) for each, base
// pointing at block o of `in`, with inner as in with_inner.
template <class T, class Block>
void for_each_block(const Reduction& r, const T* in, Block&& block) {
  with_inner(r.inner, [&](auto inner) {
    for (std::int64_t o = 0; o < r.outer; ++o) block(in + o * r.n * inner, o, inner);
  });
}

// Calls f(T{}) for the four floating element types only.
template <class F>
void visit_floating(DType dtype, F&& f) {
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<compute_t<T>>) f(tag);
    else throw DTypeError(fmt::format("reduction kernel: {} is not a floating dtype", dtype_name(dtype)));
  });
}

Tensor as_floating(const Tensor& x) { return is_floating(x.dtype()) ? x : cast(x, default_float_dtype()); }

// The frame the floating reductions share: x in a floating dtype (other dtypes in the
// default float type), its plan r, an output, and body(T{}, r, in, out) for the element
// type T. The output has the reduced shape (`keepdims` as given), or, without
// `keepdims`, one element per element of x (softmax), laid out as the plan reads x and
// restored to x's layout afterwards.
template <class Body>
Tensor floating_reduction(const Tensor& x_in, const Axes& axes, std::optional<bool> keepdims, Body&& body) {
  const Tensor x = as_floating(x_in);
  const Reduction r = prepare(x, axes);
  Tensor out = empty(keepdims ? reduced_shape(x.shape(), axes, *keepdims) : r.source.shape(), x.dtype());
  visit_floating(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    body(tag, r, r.source.data<T>(), out.data<T>());
  });
  return keepdims ? out : r.restore(out);
}

// The type sums accumulate in: 16-bit floats in float; bool and integers in int64
// (an int32 total then wraps on store, as JAX's does, instead of overflowing).
template <class T>
using sum_t = std::conditional_t<std::is_floating_point_v<compute_t<T>>, compute_t<T>, std::int64_t>;

// Runs body(acc) with an accumulator for `count` outputs, then stores it into
// out; when the types agree the output buffer itself is the accumulator.
template <class C, class O, class Body>
void with_accumulator(O* out, std::int64_t count, Body&& body) {
  if constexpr (std::is_same_v<C, O>) {
    body(out);
  } else {
    std::vector<C> acc(static_cast<std::size_t>(count));
    body(acc.data());
    for (std::int64_t k = 0; k < count; ++k) out[k] = convert_element<O>(acc[static_cast<std::size_t>(k)]);
  }
}

constexpr std::int64_t kLanes = 8;

struct Identity {
  template <class C>
  C operator()(C v, std::int64_t) const { return v; }
};

// Sum of f(p[i], 0) over a contiguous run: pairwise over blocks, 8 lanes within one.
template <class C, class T, class F>
C pairwise_sum(const T* p, std::int64_t n, const F& f) {
  constexpr std::int64_t kBlock = 128;
  if (n > kBlock) {
    const std::int64_t half = n / 2 / kLanes * kLanes;
    return pairwise_sum<C>(p, half, f) + pairwise_sum<C>(p + half, n - half, f);
  }
  C lane[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::int64_t l = 0; l < kLanes; ++l) lane[l] += f(static_cast<C>(p[i + l]), 0);
  C total = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  for (; i < n; ++i) total += f(static_cast<C>(p[i]), 0);
  return total;
}

// acc[i] = sum over the n rows of `base` of f(row[i], i), for i in [0, inner).
template <class C, class T, class Inner, class F = Identity>
void sum_rows(const T* base, C* acc, std::int64_t n, Inner inner, const F& f = {}) {
  if constexpr (std::is_same_v<Inner, One>) {
    acc[0] = pairwise_sum<C>(base, n, f);
  } else {
    std::fill(acc, acc + inner, C(0));
    for (std::int64_t j = 0; j < n; ++j) {
      const T* row = base + j * inner;
      for (std::int64_t i = 0; i < inner; ++i) acc[i] += f(static_cast<C>(row[i]), i);
    }
  }
}

// NaN wins, as in NumPy and JAX. The exact choice costs two compares per element;
// the column loops below use the plain compare-select, which vectorises to one
// MAXPS/MINPS, and catch NaNs on the side.
struct Larger {
  template <class C>
  static bool beats(C candidate, C best) { return candidate > best; }
};
struct Smaller {
  template <class C>
  static bool beats(C candidate, C best) { return candidate < best; }
};

template <class Pick, class C>
C pick_exact(C best, C candidate) {
  return (Pick::beats(candidate, best) || candidate != candidate) ? candidate : best;
}

// acc[i] = extremum of column i of a [rows >= 1, width] block. Rows go four at a
// time, so acc is loaded and stored once per four rows (as fast as the plain
// loop). A NaN that the selects dropped is written into acc afterwards, where it
// stays: no compare-select replaces a NaN in acc.
template <class Pick, class C, class T>
void extremum_columns(const T* base, C* acc, std::int64_t rows, std::int64_t width) {
  constexpr bool kFloating = std::is_floating_point_v<C>;
  auto select = [](C best, C candidate) { return Pick::beats(candidate, best) ? candidate : best; };
  auto keep_nans = [&](const T* row) {
    for (std::int64_t i = 0; i < width; ++i) {
      const C v = static_cast<C>(row[i]);
      if (v != v) acc[i] = v;
    }
  };
  for (std::int64_t i = 0; i < width; ++i) acc[i] = static_cast<C>(base[i]);
  std::int64_t j = 1;
  for (; j + 4 <= rows; j += 4) {
    const T* r0 = base + j * width;
    const T *r1 = r0 + width, *r2 = r1 + width, *r3 = r2 + width;
    int nan = 0;
    for (std::int64_t i = 0; i < width; ++i) {
      const C x0 = static_cast<C>(r0[i]), x1 = static_cast<C>(r1[i]), x2 = static_cast<C>(r2[i]),
              x3 = static_cast<C>(r3[i]);
      acc[i] = select(acc[i], select(select(x0, x1), select(x2, x3)));
      if constexpr (kFloating) nan |= (x0 != x0) | (x1 != x1) | (x2 != x2) | (x3 != x3);
    }
    if (nan)
      for (const T* row : {r0, r1, r2, r3}) keep_nans(row);
  }
  for (; j < rows; ++j) {
    const T* row = base + j * width;
    int nan = 0;
    for (std::int64_t i = 0; i < width; ++i) {
      const C x = static_cast<C>(row[i]);
      acc[i] = select(acc[i], x);
      if constexpr (kFloating) nan |= x != x;
    }
    if (nan) keep_nans(row);
  }
}

// acc[0, inner) = extremum over the n >= 1 rows of `base`.
template <class Pick, class C, class T, class Inner>
void extremum_rows(const T* base, C* acc, std::int64_t n, Inner inner) {
  if constexpr (std::is_same_v<Inner, One>) {
    // A contiguous run, read as rows of kWidth plus a tail.
    constexpr std::int64_t kWidth = 64;
    C best = static_cast<C>(base[0]);
    std::int64_t i = 0;
    if (n >= 2 * kWidth) {
      C columns[kWidth];
      extremum_columns<Pick>(base, columns, n / kWidth, kWidth);
      for (C c : columns) best = pick_exact<Pick>(best, c);
      i = n / kWidth * kWidth;
    }
    for (; i < n; ++i) best = pick_exact<Pick>(best, static_cast<C>(base[i]));
    acc[0] = best;
  } else {
    extremum_columns<Pick>(base, acc, n, inner);
  }
}

template <class Pick>
Tensor extremum(const Tensor& x, const Axes& axes, bool keepdims, const char* op) {
  const Reduction r = prepare(x, axes);
  Tensor out = empty(reduced_shape(x.shape(), axes, keepdims), x.dtype());
  if (r.n == 0 && out.numel() > 0)
    throw ValueError(fmt::format("{}: the reduction over axes [{}] of shape {} is empty and has no identity", op,
                                 fmt::join(axes, ", "), shape_str(x.shape())));
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* in = r.source.data<T>();
    with_accumulator<C>(out.data<T>(), out.numel(), [&](C* acc) {
      for_each_block(r, in, [&](const T* base, std::int64_t o, auto inner) {
        extremum_rows<Pick>(base, acc + o * inner, r.n, inner);
      });
    });
  });
  return out;
}

// shift[0, inner) = the max over the rows where finite, else 0: the offset that
// keeps exp from overflowing in logsumexp and softmax.
template <class C, class T, class Inner>
void softmax_shift(const T* base, C* shift, std::int64_t n, Inner inner) {
  if (n == 0) return std::fill(shift, shift + inner, C(0));
  extremum_rows<Larger>(base, shift, n, inner);
  for (std::int64_t i = 0; i < inner; ++i)
    if (!std::isfinite(shift[i])) shift[i] = 0;
}

// Softmax and log-softmax over the reduction axes, in x's layout.
template <bool Log>
Tensor softmax_kernel(const Tensor& x_in, const Axes& axes) {
  return floating_reduction(x_in, axes, std::nullopt, [&](auto tag, const Reduction& r, const auto* in, auto* po) {
    using T = decltype(tag);
    using C = compute_t<T>;
    std::vector<C> shift(static_cast<std::size_t>(r.inner)), total(static_cast<std::size_t>(r.inner));
    // exp(x - shift) of one [n, inner] block, kept for normalising: in the output
    // itself, or in float scratch for 16-bit floats.
    std::vector<C> exps(std::is_same_v<T, C> ? 0 : static_cast<std::size_t>(r.n * r.inner));
    with_inner(r.inner, [&](auto inner) {
      const std::int64_t block = r.n * inner;
      for (std::int64_t o = 0; o < r.outer; ++o) {
        const T* base = in + o * block;
        T* dst = po + o * block;
        C* e = nullptr;
        if constexpr (std::is_same_v<T, C>) e = dst;
        else e = exps.data();
        softmax_shift(base, shift.data(), r.n, inner);
        for (std::int64_t j = 0; j < r.n; ++j)
          for (std::int64_t i = 0; i < inner; ++i) e[j * inner + i] = std::exp(static_cast<C>(base[j * inner + i]) - shift[i]);
        sum_rows(e, total.data(), r.n, inner);
        if constexpr (Log) {
          // log_softmax = x - shift - log(total), from x itself (not log(e): e may underflow to 0).
          for (std::int64_t i = 0; i < inner; ++i) total[i] = shift[i] + std::log(total[i]);
          for (std::int64_t j = 0; j < r.n; ++j)
            for (std::int64_t i = 0; i < inner; ++i)
              dst[j * inner + i] = T(static_cast<C>(base[j * inner + i]) - total[i]);
        } else {
          for (std::int64_t i = 0; i < inner; ++i) total[i] = C(1) / total[i];
          for (std::int64_t j = 0; j < r.n; ++j)
            for (std::int64_t i = 0; i < inner; ++i) dst[j * inner + i] = T(e[j * inner + i] * total[i]);
        }
      }
    });
  });
}

}  // namespace

Shape reduced_shape(const Shape& shape, const Axes& axes, bool keepdims) {
  Shape out;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const bool reduced = std::find(axes.begin(), axes.end(), static_cast<std::int64_t>(i)) != axes.end();
    if (!reduced) out.push_back(shape[i]);
    else if (keepdims) out.push_back(1);
  }
  return out;
}

Tensor sum(const Tensor& x, const Axes& axes, bool keepdims) {
  const Reduction r = prepare(x, axes);
  const DType out_dtype = x.dtype() == DType::Bool ? DType::Int64 : x.dtype();
  Tensor out = empty(reduced_shape(x.shape(), axes, keepdims), out_dtype);
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using O = std::conditional_t<std::is_same_v<T, bool>, std::int64_t, T>;
    using C = sum_t<T>;
    const T* in = r.source.data<T>();
    with_accumulator<C>(out.data<O>(), out.numel(), [&](C* acc) {
      for_each_block(r, in, [&](const T* base, std::int64_t o, auto inner) { sum_rows(base, acc + o * inner, r.n, inner); });
    });
  });
  return out;
}

Tensor mean(const Tensor& x_in, const Axes& axes, bool keepdims) {
  return floating_reduction(x_in, axes, keepdims, [&](auto tag, const Reduction& r, const auto* in, auto* po) {
    using T = decltype(tag);
    using C = compute_t<T>;
    with_accumulator<C>(po, r.outer * r.inner, [&](C* acc) {
      for_each_block(r, in, [&](const T* base, std::int64_t o, auto inner) { sum_rows(base, acc + o * inner, r.n, inner); });
      for (std::int64_t k = 0; k < r.outer * r.inner; ++k) acc[k] /= static_cast<C>(r.n);
    });
  });
}

Tensor max(const Tensor& x, const Axes& axes, bool keepdims) { return extremum<Larger>(x, axes, keepdims, "max"); }
Tensor min(const Tensor& x, const Axes& axes, bool keepdims) { return extremum<Smaller>(x, axes, keepdims, "min"); }

Tensor argmax(const Tensor& x, std::int64_t axis) {
  // A 0-d tensor has one element and nothing to reduce; axis 0 or -1 name it.
  const bool scalar = x.dim() == 0 && (axis == 0 || axis == -1);
  const std::int64_t a = scalar ? 0 : normalize_axis(axis, x.dim(), "argmax");
  const Axes axes = scalar ? Axes{} : Axes{a};
  const Reduction r = prepare(x, axes);
  Tensor out = empty(reduced_shape(x.shape(), axes, false), DType::Int64);
  if (r.n == 0 && out.numel() > 0)
    throw ValueError(fmt::format("argmax: axis {} of shape {} is empty", a, shape_str(x.shape())));
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* in = r.source.data<T>();
    std::int64_t* po = out.data<std::int64_t>();
    std::vector<C> best(static_cast<std::size_t>(r.inner));
    for_each_block(r, in, [&](const T* base, std::int64_t o, auto inner) {
      std::int64_t* index = po + o * inner;
      for (std::int64_t i = 0; i < inner; ++i) {
        best[i] = static_cast<C>(base[i]);
        index[i] = 0;
      }
      for (std::int64_t j = 1; j < r.n; ++j)
        for (std::int64_t i = 0; i < inner; ++i) {
          const C v = static_cast<C>(base[j * inner + i]);
          // Strictly larger keeps the first maximum; the first NaN beats everything.
          if (v > best[i] || (v != v && best[i] == best[i])) {
            best[i] = v;
            index[i] = j;
          }
        }
    });
  });
  return out;
}

Tensor extremum_weights(const Tensor& x, const Tensor& extremum, const Axes& axes) {
  const Reduction r = prepare(x, axes);
  Tensor weights = empty(r.source.shape(), x.dtype());
  visit_floating(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* in = r.source.data<T>();
    const T* ext = extremum.data<T>();
    T* pw = weights.data<T>();
    std::vector<C> count(static_cast<std::size_t>(r.inner));
    for_each_block(r, in, [&](const T* base, std::int64_t o, auto inner) {
      const T* e = ext + o * inner;
      std::fill(count.begin(), count.end(), C(0));
      for (std::int64_t j = 0; j < r.n; ++j)
        for (std::int64_t i = 0; i < inner; ++i) count[i] += C(static_cast<C>(base[j * inner + i]) == static_cast<C>(e[i]));
      for (std::int64_t j = 0; j < r.n; ++j)
        for (std::int64_t i = 0; i < inner; ++i)
          pw[(o * r.n + j) * inner + i] =
              T(static_cast<C>(base[j * inner + i]) == static_cast<C>(e[i]) ? C(1) / count[i] : C(0));
    });
  });
  return r.restore(weights);
}

Tensor logsumexp(const Tensor& x_in, const Axes& axes, bool keepdims) {
  return floating_reduction(x_in, axes, keepdims, [&](auto tag, const Reduction& r, const auto* in, auto* po) {
    using T = decltype(tag);
    using C = compute_t<T>;
    std::vector<C> shift(static_cast<std::size_t>(r.inner)), total(static_cast<std::size_t>(r.inner));
    for_each_block(r, in, [&](const T* base, std::int64_t o, auto inner) {
      softmax_shift(base, shift.data(), r.n, inner);
      sum_rows(base, total.data(), r.n, inner, [&](C v, std::int64_t i) { return std::exp(v - shift[i]); });
      for (std::int64_t i = 0; i < inner; ++i) po[o * inner + i] = T(shift[i] + std::log(total[i]));
    });
  });
}

Tensor var(const Tensor& x_in, const Axes& axes, bool keepdims, std::int64_t ddof) {
  return floating_reduction(x_in, axes, keepdims, [&](auto tag, const Reduction& r, const auto* in, auto* po) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const C divisor = static_cast<C>(std::max<std::int64_t>(r.n - ddof, 0));
    std::vector<C> mean(static_cast<std::size_t>(r.inner)), squares(static_cast<std::size_t>(r.inner));
    for_each_block(r, in, [&](const T* base, std::int64_t o, auto inner) {
      sum_rows(base, mean.data(), r.n, inner);
      for (std::int64_t i = 0; i < inner; ++i) mean[i] /= static_cast<C>(r.n);
      sum_rows(base, squares.data(), r.n, inner, [&](C v, std::int64_t i) { return (v - mean[i]) * (v - mean[i]); });
      for (std::int64_t i = 0; i < inner; ++i) po[o * inner + i] = T(squares[i] / divisor);
    });
  });
}

Tensor softmax(const Tensor& x, const Axes& axes) { return softmax_kernel<false>(x, axes); }
Tensor log_softmax(const Tensor& x, const Axes& axes) { return softmax_kernel<true>(x, axes); }

}  // namespace xgrad::kernels
