#include "core/kernels/index_map.hpp"

#include <algorithm>

#include "core/tensor_impl.hpp"

namespace xgrad::kernels {

namespace {

// Calls body(out_offset, in_offset_or_-1, last_map) for each run along the last
// axis: out elements [out_offset, out_offset + last_map.size()) read
// in_offset + last_map[i] (when both are >= 0).
template <class Body>
void for_each_mapped_run(const AxisMaps& maps, const Shape& in_shape, Body&& body) {
  const std::size_t rank = maps.size();
  if (rank == 0) {
    body(std::int64_t{0}, std::int64_t{0}, std::vector<std::int64_t>{0});
    return;
  }
  const Shape in_strides = contiguous_strides(in_shape);
  const auto& last = maps[rank - 1];
  const auto inner = static_cast<std::int64_t>(last.size());
  std::int64_t outer = 1;
  for (std::size_t a = 0; a + 1 < rank; ++a) outer *= static_cast<std::int64_t>(maps[a].size());
  if (inner == 0 || outer == 0) return;
  std::vector<std::int64_t> index(rank - 1, 0);
  for (std::int64_t run = 0; run < outer; ++run) {
    std::int64_t in_offset = 0;
    for (std::size_t a = 0; a + 1 < rank && in_offset >= 0; ++a) {
      const std::int64_t m = maps[a][static_cast<std::size_t>(index[a])];
      in_offset = m < 0 ? -1 : in_offset + m * in_strides[a];
    }
    body(run * inner, in_offset, last);
    for (std::size_t a = rank - 1; a-- > 0;) {
      if (++index[a] < static_cast<std::int64_t>(maps[a].size())) break;
      index[a] = 0;
    }
  }
}

Shape mapped_shape(const AxisMaps& maps) {
  Shape s;
  for (const auto& m : maps) s.push_back(static_cast<std::int64_t>(m.size()));
  return s;
}

}  // namespace

Tensor gather_axes(const Tensor& x, const AxisMaps& maps, double fill) {
  Tensor out = empty(mapped_shape(maps), x.dtype());
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.data<T>();
    T* po = out.data<T>();
    const T fill_value = convert_element<T>(fill);
    for_each_mapped_run(maps, x.shape(), [&](std::int64_t o, std::int64_t i, const std::vector<std::int64_t>& last) {
      for (std::size_t k = 0; k < last.size(); ++k)
        po[o + static_cast<std::int64_t>(k)] = (i < 0 || last[k] < 0) ? fill_value : in[i + last[k]];
    });
  });
  return out;
}

Tensor scatter_add_axes(const Tensor& g, const AxisMaps& maps, const Shape& x_shape) {
  Tensor dx = empty(x_shape, g.dtype());
  visit_dtype(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      throw DTypeError("scatter_add: bool tensors cannot be accumulated");
    } else {
      // 16-bit floats accumulate in float32; the others in place.
      using C = compute_t<T>;
      std::vector<C> widened;
      C* acc = nullptr;
      if constexpr (std::is_same_v<C, T>) {
        acc = dx.data<T>();
        std::fill(acc, acc + dx.numel(), C(0));
      } else {
        widened.assign(static_cast<std::size_t>(dx.numel()), C(0));
        acc = widened.data();
      }
      const T* pg = g.data<T>();
      for_each_mapped_run(maps, x_shape, [&](std::int64_t o, std::int64_t i, const std::vector<std::int64_t>& last) {
        if (i < 0) return;
        for (std::size_t k = 0; k < last.size(); ++k)
          if (last[k] >= 0) acc[i + last[k]] += static_cast<C>(pg[o + static_cast<std::int64_t>(k)]);
      });
      if constexpr (!std::is_same_v<C, T>) {
        T* out = dx.data<T>();
        for (std::size_t k = 0; k < widened.size(); ++k) out[k] = convert_element<T>(widened[k]);
      }
    }
  });
  return dx;
}

}  // namespace xgrad::kernels
