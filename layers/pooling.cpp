#include "layers/pooling.hpp"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "autograd/pool.hpp"
#include "core/error.hpp"

namespace xgrad::nn {

namespace {

PadPairs resolve_padding(const char* op, const Padding& padding, const Shape& spatial, const Shape& window,
                         const Shape& strides) {
  const auto n = static_cast<int>(window.size());
  if (padding.is_sequence() && static_cast<int>(padding.entries().size()) != n)
    throw ShapeError(fmt::format("{}: padding {} has {} entries but the window {} has {} dims", op,
                                 padding.to_string(), padding.entries().size(), shape_str(window), n));
  const Padding canonical = canonicalize_padding(padding, n);
  if (!canonical.is_string()) {
    PadPairs pads;
    for (const auto& [lo, hi] : canonical.pairs()) pads.emplace_back(lo, hi);
    return pads;
  }
  std::string upper = canonical.name();
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
  if (upper != "SAME" && upper != "SAME_LOWER" && upper != "VALID")
    throw ValueError(fmt::format("{}: padding '{}' is not supported (expected 'SAME', 'SAME_LOWER', 'VALID' or (lo, "
                                 "hi) pairs)",
                                 op, canonical.name()));
  return padtype_to_pads(upper, spatial, window, strides, op);
}

// flax.linen.pooling.pool: flattens the batch dims into one (adding one when
// there is none), pools, and restores them.
Tensor flax_pool(const char* op, const Tensor& x, PoolReduction reduction, const Shape& window,
                 const Shape& strides_in, const Padding& padding, bool count_include_pad) {
  const auto n = static_cast<std::int64_t>(window.size());
  const Shape strides = strides_in.empty() ? Shape(window.size(), 1) : strides_in;
  if (strides.size() != window.size())
    throw ShapeError(fmt::format("{}: strides {} and window {} have different lengths", op, shape_str(strides),
                                 shape_str(window)));
  const std::int64_t batch_dims = x.dim() - (n + 1);
  if (batch_dims < 0)
    throw ShapeError(fmt::format("{}: input {} has too few dims for a {}-D window {} (expected [batch..., {} spatial "
                                 "dims, channels])",
                                 op, shape_str(x.shape()), n, shape_str(window), n));
  const Shape& s = x.shape();
  const Shape batch_shape(s.begin(), s.begin() + batch_dims);
  Shape flat{numel(batch_shape)};
  flat.insert(flat.end(), s.begin() + batch_dims, s.end());
  const Shape spatial(s.begin() + batch_dims, s.end() - 1);
  const PadPairs pads = resolve_padding(op, padding, spatial, window, strides);
  const Tensor y = pool(reshape(x, flat), reduction, window, strides, pads, count_include_pad);
  Shape out_shape = batch_shape;
  out_shape.insert(out_shape.end(), y.shape().begin() + 1, y.shape().end());
  return reshape(y, out_shape);
}

}  // namespace

Tensor max_pool(const Tensor& x, const Shape& window_shape, const Shape& strides, const Padding& padding) {
  return flax_pool("max_pool", x, PoolReduction::Max, window_shape, strides, padding, true);
}

Tensor min_pool(const Tensor& x, const Shape& window_shape, const Shape& strides, const Padding& padding) {
  return flax_pool("min_pool", x, PoolReduction::Min, window_shape, strides, padding, true);
}

Tensor avg_pool(const Tensor& x, const Shape& window_shape, const Shape& strides, const Padding& padding,
                bool count_include_pad) {
  return flax_pool("avg_pool", x, PoolReduction::Mean, window_shape, strides, padding, count_include_pad);
}

}  // namespace xgrad::nn
