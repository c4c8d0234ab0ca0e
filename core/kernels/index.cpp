#include "core/kernels/index.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "core/kernels/broadcast.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad::kernels {

namespace {

// The type scatter-adds accumulate in: several contributions may land on one
// element, so 16-bit floats sum in float, integers in int64 (wrapping on store),
// and bool ORs through int64.
template <class T>
using accumulate_t = std::conditional_t<std::is_floating_point_v<compute_t<T>>, compute_t<T>, std::int64_t>;

// ---- pad

const char* mode_name(PadMode mode) {
  switch (mode) {
    case PadMode::Constant: return "constant";
    case PadMode::Wrap: return "wrap";
    case PadMode::Reflect: return "reflect";
    case PadMode::Edge: return "edge";
  }
  return "?";
}

// Where each output position along one axis reads from: an index into the axis
// of size `size`, or -1 for the constant fill. Position j is at p = j - lo in
// x's coordinates; outside [0, size) the mode extends x periodically (wrap, period
// size), by mirroring (reflect, period 2(size - 1), the edge not repeated), or by
// clamping (edge). Negative lo/hi simply start/stop the window inside x.
std::vector<std::int64_t> pad_sources(std::int64_t size, std::int64_t lo, std::int64_t hi, PadMode mode) {
  std::vector<std::int64_t> source(static_cast<std::size_t>(lo + size + hi));
  auto modulo = [](std::int64_t a, std::int64_t m) { return ((a % m) + m) % m; };
  for (std::size_t j = 0; j < source.size(); ++j) {
    const std::int64_t p = static_cast<std::int64_t>(j) - lo;
    std::int64_t s = p;
    if (p < 0 || p >= size) {
      switch (mode) {
        case PadMode::Constant: s = -1; break;
        case PadMode::Edge: s = std::clamp<std::int64_t>(p, 0, size - 1); break;
        case PadMode::Wrap: s = modulo(p, size); break;
        case PadMode::Reflect: {
          if (size == 1) {
            s = 0;
          } else {
            const std::int64_t period = 2 * (size - 1), q = modulo(p, period);
            s = q < size ? q : period - q;
          }
          break;
        }
      }
    }
    source[j] = s;
  }
  return source;
}

struct PadPlan {
  Shape out_shape;
  // offsets[axis][j]: element offset in x contributed by output position j on that axis, or -1 (fill).
  std::vector<std::vector<std::int64_t>> offsets;
};

PadPlan plan_pad(const Shape& x_shape, const PadPairs& pads, PadMode mode) {
  if (pads.size() != x_shape.size())
    throw ShapeError(fmt::format("pad: {} (lo, hi) pairs given for a tensor of shape {} (rank {})", pads.size(),
                                 shape_str(x_shape), x_shape.size()));
  PadPlan plan;
  for (std::size_t a = 0; a < x_shape.size(); ++a) {
    const auto [lo, hi] = pads[a];
    const std::int64_t size = x_shape[a];
    const std::int64_t out = checked_add(checked_add(lo, size, "pad", "a padded axis"), hi, "pad", "a padded axis");
    if (out < 0)
      throw ShapeError(fmt::format("pad: pads ({}, {}) crop more than axis {} of shape {} holds", lo, hi, a,
                                   shape_str(x_shape)));
    if (size == 0 && out > 0 && mode != PadMode::Constant)
      throw ValueError(fmt::format("pad: cannot extend the empty axis {} of shape {} in {} mode", a,
                                   shape_str(x_shape), mode_name(mode)));
    plan.out_shape.push_back(out);
  }
  // An empty output reads nothing, so it gets no tables: one axis padded by a huge
  // amount next to an empty one would otherwise allocate a huge table for nothing.
  plan.offsets.resize(x_shape.size());
  if (numel(plan.out_shape) == 0) return plan;
  const Shape strides = contiguous_strides(x_shape);
  for (std::size_t a = 0; a < x_shape.size(); ++a) {
    plan.offsets[a] = pad_sources(x_shape[a], pads[a].first, pads[a].second, mode);
    for (auto& s : plan.offsets[a])
      if (s >= 0) s *= strides[a];
  }
  return plan;
}

// Calls f(out_index, x_offset) for every output element in row-major order,
// with x_offset = -1 where the output is the constant fill.
template <class F>
void for_each_padded(const PadPlan& plan, F&& f) {
  const std::size_t rank = plan.offsets.size();
  if (rank == 0) return f(std::int64_t{0}, std::int64_t{0});
  // An empty output has nothing to visit; the walk below would still go through
  // every position of the axes before the empty one.
  for (const auto& offsets : plan.offsets)
    if (offsets.empty()) return;
  std::int64_t out_index = 0;
  auto visit = [&](auto& self, std::size_t axis, std::int64_t base, bool inside) -> void {
    const auto& offsets = plan.offsets[axis];
    if (axis + 1 == rank) {
      for (std::int64_t s : offsets) f(out_index++, inside && s >= 0 ? base + s : std::int64_t{-1});
      return;
    }
    for (std::int64_t s : offsets) self(self, axis + 1, base + std::max<std::int64_t>(s, 0), inside && s >= 0);
  };
  visit(visit, 0, 0, true);
}

// ---- take

std::vector<std::int64_t> resolve_indices(const Tensor& indices, std::int64_t size, std::int64_t axis,
                                          const char* op) {
  if (!is_integral(indices.dtype()))
    throw DTypeError(fmt::format("{}: indices must be int32 or int64, got {}", op, dtype_name(indices.dtype())));
  std::vector<std::int64_t> out(static_cast<std::size_t>(indices.numel()));
  visit_dtype(indices.dtype(), [&](auto tag) {
    using I = decltype(tag);
    const I* p = indices.data<I>();
    for (std::size_t k = 0; k < out.size(); ++k) {
      const auto raw = static_cast<std::int64_t>(p[k]);
      const std::int64_t v = raw < 0 ? raw + size : raw;
      if (v < 0 || v >= size)
        throw ShapeError(fmt::format("{}: index {} is out of bounds for axis {} with size {}", op, raw, axis, size));
      out[k] = v;
    }
  });
  return out;
}

// x read as [outer, n, inner] around `axis`.
struct AxisSplit {
  std::int64_t outer = 1, n = 1, inner = 1;
};

AxisSplit split_at(const Shape& shape, std::size_t axis) {
  AxisSplit s;
  for (std::size_t d = 0; d < shape.size(); ++d) (d < axis ? s.outer : d == axis ? s.n : s.inner) *= shape[d];
  return s;
}

std::size_t take_axis(const Shape& x_shape, std::int64_t axis) {
  if (x_shape.empty()) throw ShapeError("take: cannot index a 0-d tensor");
  return static_cast<std::size_t>(normalize_axis(axis, static_cast<std::int64_t>(x_shape.size()), "take"));
}

// ---- take_along_axis

struct AlongAxisPlan {
  Shape out_shape;
  Shape x_strides;        // x read as the output shape, with 0 on `axis` (the index selects there)
  Shape index_strides;    // indices read as the output shape
  std::int64_t axis_stride = 0;
  std::vector<std::int64_t> indices;  // resolved, in the indices' own layout
};

AlongAxisPlan plan_along_axis(const Shape& x_shape, const Tensor& indices, std::int64_t axis) {
  const Shape& is = indices.shape();
  if (is.size() != x_shape.size() || x_shape.empty())
    throw ShapeError(fmt::format("take_along_axis: indices of shape {} must have the rank of x (shape {}), at least 1",
                                 shape_str(is), shape_str(x_shape)));
  const auto a = static_cast<std::size_t>(normalize_axis(axis, static_cast<std::int64_t>(x_shape.size()),
                                                         "take_along_axis"));
  AlongAxisPlan plan;
  const Shape xs = contiguous_strides(x_shape), idx_strides = contiguous_strides(is);
  for (std::size_t d = 0; d < x_shape.size(); ++d) {
    if (d != a && x_shape[d] != is[d] && x_shape[d] != 1 && is[d] != 1)
      throw ShapeError(fmt::format("take_along_axis: indices of shape {} do not broadcast against x of shape {} "
                                   "outside axis {} (axis {}: {} vs {})",
                                   shape_str(is), shape_str(x_shape), a, d, is[d], x_shape[d]));
    const std::int64_t out = d == a ? is[d] : (x_shape[d] == 1 ? is[d] : x_shape[d]);
    plan.out_shape.push_back(out);
    plan.x_strides.push_back(d == a || x_shape[d] == 1 ? 0 : xs[d]);
    plan.index_strides.push_back(is[d] == 1 ? 0 : idx_strides[d]);
  }
  plan.axis_stride = xs[a];
  plan.indices = resolve_indices(indices, x_shape[a], static_cast<std::int64_t>(a), "take_along_axis");
  return plan;
}

// Calls f(out_index, x_offset) for every output element of take_along_axis.
template <class F>
void for_each_along_axis(const AlongAxisPlan& plan, F&& f) {
  for_each_broadcast_run(plan.out_shape, plan.x_strides, plan.index_strides,
                         [&](std::int64_t o, std::int64_t xo, std::int64_t io, std::int64_t count, std::int64_t xs,
                             std::int64_t is) {
                           for (std::int64_t k = 0; k < count; ++k)
                             f(o + k, xo + k * xs + plan.indices[static_cast<std::size_t>(io + k * is)] * plan.axis_stride);
                         });
}

// Zeros of `shape` in g's dtype into which add(out_index, x_offset) adds g[out_index] at x_offset.
template <class Walk>
Tensor scatter_add(const Tensor& g, const Shape& shape, Walk&& walk) {
  Tensor out = empty(shape, g.dtype());
  visit_dtype(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = accumulate_t<T>;
    std::vector<C> acc(static_cast<std::size_t>(out.numel()), C(0));
    const T* pg = g.data<T>();
    walk([&](std::int64_t o, std::int64_t x_offset) {
      if (x_offset >= 0) acc[static_cast<std::size_t>(x_offset)] += static_cast<C>(pg[o]);
    });
    T* po = out.data<T>();
    for (std::size_t k = 0; k < acc.size(); ++k) po[k] = convert_element<T>(acc[k]);
  });
  return out;
}

}  // namespace

Tensor pad(const Tensor& x, const PadPairs& pads, PadMode mode, double value) {
  const PadPlan plan = plan_pad(x.shape(), pads, mode);
  Tensor out = empty(plan.out_shape, x.dtype());
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T fill = convert_element<T>(value);
    const T* px = x.data<T>();
    T* po = out.data<T>();
    for_each_padded(plan, [&](std::int64_t o, std::int64_t s) { po[o] = s >= 0 ? px[s] : fill; });
  });
  return out;
}

Tensor pad_scatter_add(const Tensor& g, const Shape& x_shape, const PadPairs& pads, PadMode mode) {
  const PadPlan plan = plan_pad(x_shape, pads, mode);
  return scatter_add(g, x_shape, [&](auto add) { for_each_padded(plan, add); });
}

Tensor take(const Tensor& x, const Tensor& indices, std::int64_t axis) {
  const std::size_t a = take_axis(x.shape(), axis);
  const AxisSplit s = split_at(x.shape(), a);
  const auto index = resolve_indices(indices, s.n, static_cast<std::int64_t>(a), "take");
  Shape shape(x.shape().begin(), x.shape().begin() + static_cast<std::ptrdiff_t>(a));
  shape.insert(shape.end(), indices.shape().begin(), indices.shape().end());
  shape.insert(shape.end(), x.shape().begin() + static_cast<std::ptrdiff_t>(a) + 1, x.shape().end());
  Tensor out = empty(shape, x.dtype());
  const auto count = static_cast<std::int64_t>(index.size());
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>();
    T* po = out.data<T>();
    for (std::int64_t o = 0; o < s.outer; ++o)
      for (std::int64_t k = 0; k < count; ++k) {
        const T* row = px + (o * s.n + index[static_cast<std::size_t>(k)]) * s.inner;
        std::copy(row, row + s.inner, po + (o * count + k) * s.inner);
      }
  });
  return out;
}

Tensor take_scatter_add(const Tensor& g, const Tensor& indices, const Shape& x_shape, std::int64_t axis) {
  const std::size_t a = take_axis(x_shape, axis);
  const AxisSplit s = split_at(x_shape, a);
  const auto index = resolve_indices(indices, s.n, static_cast<std::int64_t>(a), "take");
  const auto count = static_cast<std::int64_t>(index.size());
  return scatter_add(g, x_shape, [&](auto add) {
    for (std::int64_t o = 0; o < s.outer; ++o)
      for (std::int64_t k = 0; k < count; ++k) {
        const std::int64_t target = (o * s.n + index[static_cast<std::size_t>(k)]) * s.inner;
        const std::int64_t source = (o * count + k) * s.inner;
        for (std::int64_t i = 0; i < s.inner; ++i) add(source + i, target + i);
      }
  });
}

Tensor take_along_axis(const Tensor& x, const Tensor& indices, std::int64_t axis) {
  const AlongAxisPlan plan = plan_along_axis(x.shape(), indices, axis);
  Tensor out = empty(plan.out_shape, x.dtype());
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>();
    T* po = out.data<T>();
    for_each_along_axis(plan, [&](std::int64_t o, std::int64_t s) { po[o] = px[s]; });
  });
  return out;
}

Tensor take_along_axis_scatter_add(const Tensor& g, const Tensor& indices, const Shape& x_shape, std::int64_t axis) {
  const AlongAxisPlan plan = plan_along_axis(x_shape, indices, axis);
  return scatter_add(g, x_shape, [&](auto add) { for_each_along_axis(plan, add); });
}

Tensor one_hot(const Tensor& labels, std::int64_t num_classes, DType dtype) {
  if (!is_integral(labels.dtype()))
    throw DTypeError(fmt::format("one_hot: labels must be int32 or int64, got {}", dtype_name(labels.dtype())));
  if (num_classes < 0) throw ValueError(fmt::format("one_hot: num_classes must be >= 0, got {}", num_classes));
  Shape shape = labels.shape();
  shape.push_back(num_classes);
  Tensor out = zeros(shape, dtype);
  visit_dtype(dtype, [&](auto out_tag) {
    using T = decltype(out_tag);
    T* po = out.data<T>();
    visit_dtype(labels.dtype(), [&](auto label_tag) {
      using L = decltype(label_tag);
      const L* pl = labels.data<L>();
      for (std::int64_t k = 0; k < labels.numel(); ++k) {
        const auto c = static_cast<std::int64_t>(pl[k]);
        if (c >= 0 && c < num_classes) po[k * num_classes + c] = convert_element<T>(1.0);
      }
    });
  });
  return out;
}

}  // namespace xgrad::kernels
