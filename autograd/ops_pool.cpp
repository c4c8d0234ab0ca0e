// Pooling and its VJPs. Each VJP is itself a recorded op whose VJP is the forward
// gather (or average), so gradients of any order are available.
#include "autograd/pool.hpp"
#include "autograd/pool_selection.hpp"

#include <fmt/format.h>

#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "core/kernels/pool.hpp"

namespace xgrad {

using Geometry = std::shared_ptr<const kernels::PoolGeometry>;

// Reads x at fixed flat indices; the transpose of scatter_to.
Tensor gather_at(const Tensor& x, const Tensor& indices, const Geometry& geometry) {
  Tensor out = kernels::gather_flat(x, indices);
  return record("pool_gather", out, {x}, [indices, geometry](const Tensor& g, const Tensor&) -> Grads {
    return {scatter_to(g, indices, geometry)};
  }, Saves::Nothing, [&](const Grads&, const Grads& t, const Tensor&) { return gather_at(t[0], indices, geometry); });
}

// Sends each output's cotangent to the element its window selected.
Tensor scatter_to(const Tensor& g, const Tensor& indices, const Geometry& geometry) {
  Tensor out = kernels::pool_select_transpose(g, indices, *geometry);
  return record("pool_scatter", out, {g}, [indices, geometry](const Tensor& gg, const Tensor&) -> Grads {
    return {gather_at(gg, indices, geometry)};
  }, Saves::Nothing, [&](const Grads&, const Grads& t, const Tensor&) { return scatter_to(t[0], indices, geometry); });
}

namespace {

Tensor average(const Tensor& x, const Geometry& geometry, bool count_include_pad);

// The transpose of average: spreads each output's cotangent over its window.
Tensor average_transpose(const Tensor& g, const Geometry& geometry, bool count_include_pad) {
  Tensor out = kernels::avg_pool_transpose(g, *geometry, count_include_pad);
  return record("avg_pool_transpose", out, {g}, [geometry, count_include_pad](const Tensor& gg, const Tensor&) -> Grads {
    return {average(gg, geometry, count_include_pad)};
  }, Saves::Nothing, [&](const Grads&, const Grads& t, const Tensor&) {
    return average_transpose(t[0], geometry, count_include_pad);
  });
}

Tensor average(const Tensor& x, const Geometry& geometry, bool count_include_pad) {
  Tensor out = kernels::avg_pool(x, *geometry, count_include_pad);
  return record("avg_pool", out, {x}, [geometry, count_include_pad](const Tensor& g, const Tensor&) -> Grads {
    return {average_transpose(g, geometry, count_include_pad)};
  }, Saves::Nothing, [&](const Grads&, const Grads& t, const Tensor&) {
    return average(t[0], geometry, count_include_pad);
  });
}

}  // namespace

Tensor pool(const Tensor& x, PoolReduction reduction, const Shape& window, const Shape& strides,
            const PadPairs& pads, bool count_include_pad) {
  const std::size_t n = window.size();
  if (x.dim() != static_cast<std::int64_t>(n) + 2)
    throw ShapeError(fmt::format("pool: input {} must be [batch, spatial..., channels] with {} spatial dims",
                                 shape_str(x.shape()), n));
  if (strides.size() != n || pads.size() != n)
    throw ShapeError(fmt::format("pool: window {} needs {} strides and {} padding pairs, got {} and {}",
                                 shape_str(window), n, n, strides.size(), pads.size()));
  for (std::size_t d = 0; d < n; ++d)
    if (window[d] < 1 || strides[d] < 1)
      throw ValueError(fmt::format("pool: window {} and strides {} must be positive", shape_str(window),
                                   shape_str(strides)));
  auto geometry = std::make_shared<const kernels::PoolGeometry>(kernels::pool_geometry(x.shape(), window, strides, pads));
  if (reduction == PoolReduction::Mean) {
    const Tensor input = is_floating(x.dtype()) ? x : cast(x, default_float_dtype());
    return average(input, geometry, count_include_pad);
  }
  const bool take_max = reduction == PoolReduction::Max;
  const char* op = take_max ? "max_pool" : "min_pool";
  const auto vjp = [geometry](const Tensor& indices) {
    return [indices, geometry](const Tensor& g, const Tensor&) -> Grads { return {scatter_to(g, indices, geometry)}; };
  };
  // Forward mode: the tangent at each window's selected element from the selecting
  // pass itself; after relu, masked by the selected value > 0 there (relu's deferred rule).
  if (const Tensor raw = forward_ad::fusable_masked_tangent(x); raw.defined())
    if (auto selected = kernels::pool_select_with_tangent(x, raw, *geometry, take_max, /*mask_positive=*/true))
      return forward_ad::record_with_tangent(op, selected->out, {x}, vjp(selected->index), Saves::Nothing,
                                             selected->out_tangent);
  if (const Tensor t = forward_ad::fusable_tangent(x); t.defined())
    if (auto selected = kernels::pool_select_with_tangent(x, t, *geometry, take_max))
      return forward_ad::record_with_tangent(op, selected->out, {x}, vjp(selected->index), Saves::Nothing,
                                             selected->out_tangent);
  // Named, not a structured binding: clang before 16 cannot capture one in a lambda.
  const std::pair<Tensor, Tensor> selected = kernels::pool_select(x, *geometry, take_max);
  const Tensor& out = selected.first;
  const Tensor& indices = selected.second;
  return record(op, out, {x}, vjp(indices), Saves::Nothing, [&](const Grads&, const Grads& t, const Tensor&) {
    return gather_at(t[0], indices, geometry);  // the tangent at each window's selected element
  });
}

}  // namespace xgrad
