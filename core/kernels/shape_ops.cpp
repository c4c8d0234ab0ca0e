#include "core/kernels/shape_ops.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/kernels/broadcast.hpp"
#include "core/kernels/elementwise.hpp"
#include "core/tensor_impl.hpp"
#include "core/threading.hpp"

namespace xgrad::kernels {

namespace {

// The walk over a strided array: size-1 axes dropped and axes that are
// contiguous in the strided array merged, so that loops over it run long.
struct Layout {
  Shape shape, strides;
};

Layout merge_axes(const Shape& shape, const Shape& strides) {
  Layout l;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!l.shape.empty() && l.strides.back() == strides[d] * shape[d]) {
      l.shape.back() *= shape[d];
      l.strides.back() = strides[d];
    } else {
      l.shape.push_back(shape[d]);
      l.strides.push_back(strides[d]);
    }
  }
  return l;
}

// Calls body(dense_offset, strided_offset, count, stride) for runs that together
// visit every element of a row-major array of `shape` once, pairing it with the
// element at offset + sum(index[d] * strides[d]) of a strided array.
template <class Body>
void walk_strided(const Shape& shape, const Shape& strides, std::int64_t offset, Body&& body) {
  if (numel(shape) == 0) return;
  const Layout l = merge_axes(shape, strides);
  const Shape unused(l.shape.size(), 0);
  for_each_broadcast_run(l.shape, l.strides, unused,
                         [&](std::int64_t o, std::int64_t s, std::int64_t, std::int64_t count, std::int64_t step,
                             std::int64_t) { body(o, offset + s, count, step); });
}

// A real transposition (the output's last axis strides through the source while
// another axis is contiguous there) read run by run touches a new cache line per
// element. Copying kTile x kTile tiles of those two axes keeps both sides in
// cache. Returns false when the layout is not such a transposition.
template <class T>
bool gather_tiled(const T* source, T* dense, const Shape& shape, const Shape& strides, std::int64_t offset) {
  constexpr std::int64_t kTile = 32;
  const Layout l = merge_axes(shape, strides);
  const std::size_t rank = l.shape.size();
  if (rank < 2 || l.strides[rank - 1] == 0 || l.strides[rank - 1] == 1) return false;
  const auto contiguous = std::find(l.strides.begin(), l.strides.end() - 1, 1);
  if (contiguous == l.strides.end() - 1) return false;
  const auto row_axis = static_cast<std::size_t>(contiguous - l.strides.begin());
  const Shape dense_strides = contiguous_strides(l.shape);
  const std::int64_t rows = l.shape[row_axis], cols = l.shape[rank - 1], step = l.strides[rank - 1];
  const std::int64_t row_stride = dense_strides[row_axis];
  // An odometer over the remaining axes, carrying both offsets.
  std::vector<std::size_t> others;
  std::int64_t blocks = 1;
  for (std::size_t d = 0; d + 1 < rank; ++d)
    if (d != row_axis) {
      others.push_back(d);
      blocks *= l.shape[d];
    }
  std::vector<std::int64_t> index(others.size(), 0);
  std::int64_t dense_base = 0, source_base = offset;
  for (std::int64_t b = 0; b < blocks; ++b) {
    for (std::int64_t r0 = 0; r0 < rows; r0 += kTile)
      for (std::int64_t c0 = 0; c0 < cols; c0 += kTile)
        for (std::int64_t r = r0; r < std::min(r0 + kTile, rows); ++r) {
          T* out = dense + dense_base + r * row_stride;
          const T* in = source + source_base + r;
          for (std::int64_t c = c0; c < std::min(c0 + kTile, cols); ++c) out[c] = in[c * step];
        }
    for (std::size_t q = others.size(); q-- > 0;) {
      const std::size_t d = others[q];
      dense_base += dense_strides[d];
      source_base += l.strides[d];
      if (++index[q] < l.shape[d]) break;
      dense_base -= dense_strides[d] * l.shape[d];
      source_base -= l.strides[d] * l.shape[d];
      index[q] = 0;
    }
  }
  return true;
}

// dense[k] = source[the k-th strided position]
template <class T>
void gather_strided(const T* source, T* dense, const Shape& shape, const Shape& strides, std::int64_t offset) {
  if (numel(shape) == 0 || gather_tiled(source, dense, shape, strides, offset)) return;
  walk_strided(shape, strides, offset, [&](std::int64_t o, std::int64_t s, std::int64_t count, std::int64_t step) {
    if (step == 1) std::copy(source + s, source + s + count, dense + o);
    else if (step == 0) std::fill(dense + o, dense + o + count, source[s]);
    else for (std::int64_t k = 0; k < count; ++k) dense[o + k] = source[s + k * step];
  });
}

// target[the k-th strided position] = dense[k]
template <class T>
void scatter_strided(const T* dense, T* target, const Shape& shape, const Shape& strides, std::int64_t offset) {
  walk_strided(shape, strides, offset, [&](std::int64_t o, std::int64_t s, std::int64_t count, std::int64_t step) {
    if (step == 1) std::copy(dense + o, dense + o + count, target + s);
    else for (std::int64_t k = 0; k < count; ++k) target[s + k * step] = dense[o + k];
  });
}

Tensor gather(const Tensor& x, const Shape& shape, const Shape& strides, std::int64_t offset) {
  Tensor out = empty(shape, x.dtype());
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    gather_strided(x.data<T>(), out.data<T>(), shape, strides, offset);
  });
  return out;
}

}  // namespace

Shape infer_reshape(const Shape& from, const Shape& to, const char* op) {
  Shape out = to;
  std::int64_t known = 1;
  int inferred = -1;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      if (inferred >= 0) throw ShapeError(fmt::format("{}: more than one -1 in target shape {}", op, shape_str(to)));
      inferred = static_cast<int>(i);
    } else if (out[i] < 0) {
      throw ShapeError(fmt::format("{}: negative dimension in target shape {}", op, shape_str(to)));
    } else {
      known *= out[i];
    }
  }
  const std::int64_t n = numel(from);
  if (inferred >= 0) {
    if (known == 0 || n % known != 0)
      throw ShapeError(fmt::format("{}: cannot reshape {} ({} elements) into {}", op, shape_str(from), n,
                                   shape_str(to)));
    out[static_cast<std::size_t>(inferred)] = n / known;
  } else if (known != n) {
    throw ShapeError(fmt::format("{}: cannot reshape {} ({} elements) into {} ({} elements)", op, shape_str(from),
                                 n, shape_str(to), known));
  }
  return out;
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  const Shape target = infer_reshape(x.shape(), shape, "reshape");
  if (target == x.shape()) return x.detach();  // a new handle: ops never return their input's impl
  Tensor out = empty(target, x.dtype());
  if (x.numel() == 0) return out;  // empty arrays have null data, which memcpy must not see
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* to = out.data<T>();
    const T* from = x.data<T>();
    // Split as element-wise kernels split (contiguous ranges, the first thread's first):
    // each thread copies what the threads that split the producing kernel the same way
    // wrote, instead of the calling thread reading it all from the other's cache.
    parallel_for_elements(x.numel(), [&](std::int64_t begin, std::int64_t end) {
      std::memcpy(static_cast<void*>(to + begin), from + begin, static_cast<std::size_t>(end - begin) * sizeof(T));
    });
  });
  return out;
}

Tensor transpose(const Tensor& x, const std::vector<std::int64_t>& permutation) {
  const std::int64_t rank = x.dim();
  std::vector<std::int64_t> axes;
  bool valid = static_cast<std::int64_t>(permutation.size()) == rank;
  for (std::size_t k = 0; valid && k < permutation.size(); ++k) {
    const std::int64_t a = permutation[k] < 0 ? permutation[k] + rank : permutation[k];
    valid = a >= 0 && a < rank && std::find(axes.begin(), axes.end(), a) == axes.end();
    axes.push_back(a);
  }
  if (!valid)
    throw ShapeError(fmt::format("transpose: [{}] is not a permutation of the axes of a tensor of shape {}",
                                 fmt::join(permutation, ", "), shape_str(x.shape())));
  const Shape own = contiguous_strides(x.shape());
  Shape shape(axes.size()), strides(axes.size());
  for (std::size_t k = 0; k < axes.size(); ++k) {
    shape[k] = x.shape()[static_cast<std::size_t>(axes[k])];
    strides[k] = own[static_cast<std::size_t>(axes[k])];
  }
  return gather(x, shape, strides, 0);
}

Tensor broadcast_to(const Tensor& x, const Shape& shape, const char* op) {
  bool valid = x.shape().size() <= shape.size();
  for (std::size_t i = 0; valid && i < x.shape().size(); ++i) {
    const std::int64_t from = x.shape()[i], to = shape[shape.size() - x.shape().size() + i];
    valid = from == to || from == 1;
  }
  if (!valid)
    throw ShapeError(fmt::format("{}: shape {} cannot be broadcast to {}", op, shape_str(x.shape()), shape_str(shape)));
  return gather(x, shape, broadcast_strides(x.shape(), shape), 0);
}

SliceRange resolve_slice(std::int64_t size, std::int64_t start, std::int64_t stop, std::int64_t step) {
  if (step == 0) throw ValueError("slice: step cannot be zero");
  // Python's slice.indices: negative bounds count from the end, then clamp to
  // [0, size] for a positive step and to [-1, size - 1] for a negative one.
  const std::int64_t lower = step > 0 ? 0 : -1, upper = step > 0 ? size : size - 1;
  auto clamp = [&](std::int64_t v) { return std::clamp(v < 0 ? v + size : v, lower, upper); };
  const std::int64_t first = clamp(start), last = clamp(stop);
  const std::int64_t span = step > 0 ? last - first : first - last;
  const std::int64_t stride = step > 0 ? step : -step;
  return {first, step, span > 0 ? (span + stride - 1) / stride : 0};
}

Tensor slice(const Tensor& x, std::int64_t axis, const SliceRange& range) {
  const auto a = static_cast<std::size_t>(axis);
  Shape shape = x.shape(), strides = contiguous_strides(x.shape());
  const std::int64_t offset = range.length > 0 ? range.start * strides[a] : 0;
  shape[a] = range.length;
  strides[a] *= range.step;
  return gather(x, shape, strides, offset);
}

Tensor slice_scatter(const Tensor& g, const Shape& shape, std::int64_t axis, const SliceRange& range) {
  const auto a = static_cast<std::size_t>(axis);
  Shape strides = contiguous_strides(shape);
  const std::int64_t offset = range.length > 0 ? range.start * strides[a] : 0;
  strides[a] *= range.step;
  Tensor out = zeros(shape, g.dtype());
  visit_dtype(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    scatter_strided(g.data<T>(), out.data<T>(), g.shape(), strides, offset);
  });
  return out;
}

Tensor concat(const std::vector<Tensor>& xs, std::int64_t axis) {
  if (xs.empty()) throw ValueError("concat: needs at least one tensor");
  const Shape& first = xs[0].shape();
  if (first.empty()) throw ShapeError("concat: zero-dimensional tensors cannot be concatenated");
  const auto a = static_cast<std::size_t>(normalize_axis(axis, static_cast<std::int64_t>(first.size()), "concat"));
  Shape shape = first;
  shape[a] = 0;
  DType dtype = xs[0].dtype();
  for (std::size_t j = 0; j < xs.size(); ++j) {
    Shape s = xs[j].shape();
    bool match = s.size() == first.size();
    if (match) {
      shape[a] += s[a];
      s[a] = first[a];
      match = s == first;
    }
    if (!match)
      throw ShapeError(fmt::format("concat: tensor {} has shape {} but tensor 0 has shape {} (they must match "
                                   "except along axis {})",
                                   j, shape_str(xs[j].shape()), shape_str(first), a));
    dtype = promote_types(dtype, xs[j].dtype());
  }
  Tensor out = empty(shape, dtype);
  const Shape strides = contiguous_strides(shape);
  std::int64_t position = 0;  // along `axis`
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    for (const Tensor& x : xs) {
      const Tensor part = cast(x, dtype);
      scatter_strided(part.data<T>(), out.data<T>(), part.shape(), strides, position * strides[a]);
      position += part.shape()[a];
    }
  });
  return out;
}

}  // namespace xgrad::kernels
