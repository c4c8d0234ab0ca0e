// pad (numpy.pad modes, negative pads crop) as a gather through per-axis index
// maps. The gather's VJP scatter-adds through the same maps and the
// scatter-add's VJP gathers, so pad is differentiable to any order; wrapped or
// reflected copies of one element accumulate their gradients into it.
#include <memory>

#include <fmt/format.h>

#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "core/kernels/index_map.hpp"

namespace xgrad {

namespace {

using kernels::AxisMaps;
using MapsPtr = std::shared_ptr<const AxisMaps>;

Tensor scatter_add_op(const MapsPtr& maps, const Tensor& g, const Shape& x_shape);

Tensor gather_op(const MapsPtr& maps, const Tensor& x, double fill) {
  return record("pad", kernels::gather_axes(x, *maps, fill), {x},
                [maps, shape = x.shape()](const Tensor& g, const Tensor&) -> Grads {
                  return {scatter_add_op(maps, g, shape)};
                },
                Saves::Nothing);
}

Tensor scatter_add_op(const MapsPtr& maps, const Tensor& g, const Shape& x_shape) {
  return record("pad_adjoint", kernels::scatter_add_axes(g, *maps, x_shape), {g},
                [maps](const Tensor& h, const Tensor&) -> Grads { return {gather_op(maps, h, 0.0)}; },
                Saves::Nothing);
}

std::int64_t positive_mod(std::int64_t a, std::int64_t m) { return ((a % m) + m) % m; }

// Source index of padded position u (relative to the original start) on an axis of size m.
std::int64_t source_index(std::int64_t u, std::int64_t m, PadMode mode) {
  if (u >= 0 && u < m) return u;
  switch (mode) {
    case PadMode::Constant: return -1;
    case PadMode::Wrap: return positive_mod(u, m);
    case PadMode::Edge: return u < 0 ? 0 : m - 1;
    case PadMode::Reflect: {
      if (m == 1) return 0;
      const std::int64_t period = 2 * (m - 1);  // reflection without repeating the edge
      const std::int64_t r = positive_mod(u, period);
      return r < m ? r : period - r;
    }
  }
  return -1;
}

const char* mode_name(PadMode mode) {
  switch (mode) {
    case PadMode::Constant: return "constant";
    case PadMode::Wrap: return "wrap";
    case PadMode::Reflect: return "reflect";
    case PadMode::Edge: return "edge";
  }
  return "?";
}

}  // namespace

Tensor pad(const Tensor& x, const std::vector<std::pair<std::int64_t, std::int64_t>>& pads, PadMode mode,
           double value) {
  if (static_cast<std::int64_t>(pads.size()) != x.dim())
    throw ShapeError(fmt::format("pad: {} (lo, hi) pairs given for a tensor of shape {} (rank {}); give one per axis",
                                 pads.size(), shape_str(x.shape()), x.dim()));
  auto maps = std::make_shared<AxisMaps>(pads.size());
  for (std::size_t a = 0; a < pads.size(); ++a) {
    const std::int64_t m = x.shape()[a];
    const auto [lo, hi] = pads[a];
    const std::int64_t size = m + lo + hi;
    if (size < 0)
      throw ShapeError(fmt::format("pad: pads ({}, {}) crop more than the {} elements of axis {} of {}", lo, hi, m, a,
                                   shape_str(x.shape())));
    if (m == 0 && mode != PadMode::Constant && size > 0)
      throw ValueError(fmt::format("pad: mode '{}' cannot pad the empty axis {} of {}", mode_name(mode), a,
                                   shape_str(x.shape())));
    auto& map = (*maps)[a];
    map.resize(static_cast<std::size_t>(size));
    for (std::int64_t i = 0; i < size; ++i) map[static_cast<std::size_t>(i)] = source_index(i - lo, m, mode);
  }
  return gather_op(maps, x, value);
}

}  // namespace xgrad
