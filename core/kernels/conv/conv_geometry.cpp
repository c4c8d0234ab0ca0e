#include "core/kernels/conv/conv_geometry.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"

namespace xgrad::kernels {

namespace {

// The extent of `size` taps `dilation` apart; a ValueError naming `op` past int64.
std::int64_t dilate(std::int64_t size, std::int64_t dilation, const char* op) {
  return size == 0 ? 0 : checked_add(checked_mul(size - 1, dilation, op, "a dilated size"), 1, op, "a dilated size");
}

void default_to_ones(std::vector<std::int64_t>& v, std::size_t n) {
  if (v.empty()) v.assign(n, 1);
}

void check_per_dim(const std::vector<std::int64_t>& v, std::size_t n, const char* what, const char* must,
                   const char* op) {
  if (v.size() != n)
    throw ValueError(fmt::format("{}: {} has {} entries [{}] but the convolution has {} spatial dims; give one "
                                 "per spatial dim",
                                 op, what, v.size(), fmt::join(v, ", "), n));
  for (auto d : v)
    if (d <= 0) throw ValueError(fmt::format("{}: {} [{}]: {}", op, what, fmt::join(v, ", "), must));
}

PadPairs explicit_pads(const Padding& padding, std::size_t n, const char* op) {
  const bool all_pairs = padding.is_sequence() && std::all_of(padding.entries().begin(), padding.entries().end(),
                                                              [](const Padding::Entry& e) { return e.is_pair; });
  if (!all_pairs)
    throw ValueError(fmt::format("{}: padding argument should be a string ('VALID', 'SAME', 'SAME_LOWER') or a "
                                 "sequence of (low, high) pairs, got {}",
                                 op, padding.to_string()));
  if (padding.entries().size() != n)
    throw ValueError(fmt::format("{}: padding {} has {} (low, high) pairs but the convolution has {} spatial dims; "
                                 "give one pair per spatial dim",
                                 op, padding.to_string(), padding.entries().size(), n));
  PadPairs pads;
  for (const auto& e : padding.entries()) pads.emplace_back(e.lo, e.hi);
  return pads;
}

}  // namespace

ConvGeometry make_conv_geometry(const Shape& lhs_shape, const Shape& window, std::vector<std::int64_t> strides,
                                const Padding& padding, std::vector<std::int64_t> lhs_dilation,
                                std::vector<std::int64_t> rhs_dilation, const char* op) {
  const std::size_t n = window.size();
  if (n == 0) throw NotImplementedError(fmt::format("{}: 0-d convolutions are not supported", op));
  if (lhs_shape.size() != n + 2)
    throw ShapeError(fmt::format("{}: input of shape {} has rank {}, but a {}-d convolution needs rank {} "
                                 "(batch, {} spatial dims, features)",
                                 op, shape_str(lhs_shape), lhs_shape.size(), n, n + 2, n));
  for (auto k : window)
    if (k <= 0) throw ValueError(fmt::format("{}: window (kernel) shape {} must be positive", op, shape_str(window)));
  default_to_ones(strides, n);
  default_to_ones(lhs_dilation, n);
  default_to_ones(rhs_dilation, n);

  // lax checks string padding against lhs dilation before it resolves anything.
  if (padding.is_string() && std::any_of(lhs_dilation.begin(), lhs_dilation.end(), [](auto d) { return d != 1; }))
    throw ValueError(fmt::format("{}: String padding is not implemented for transposed convolution using this op "
                                 "(padding {} with input dilation [{}]). Please either exactly specify the required "
                                 "padding as (low, high) pairs or use conv_transpose.",
                                 op, padding.to_string(), fmt::join(lhs_dilation, ", ")));
  check_per_dim(strides, n, "window_strides", "All window strides must be positive", op);
  check_per_dim(lhs_dilation, n, "lhs (input) dilation", "All dilations must be positive", op);
  check_per_dim(rhs_dilation, n, "rhs (kernel) dilation", "All dilations must be positive", op);

  ConvGeometry g;
  g.batch = lhs_shape.front();
  g.channels = lhs_shape.back();
  g.in_spatial.assign(lhs_shape.begin() + 1, lhs_shape.end() - 1);
  g.window = window;
  g.strides = strides;
  g.lhs_dilation = lhs_dilation;
  g.rhs_dilation = rhs_dilation;

  Shape dilated_window(n);
  for (std::size_t j = 0; j < n; ++j) dilated_window[j] = dilate(window[j], rhs_dilation[j], op);
  g.pads = padding.is_string() ? padtype_to_pads(padding.name(), g.in_spatial, dilated_window, strides, op)
                               : explicit_pads(padding, n, op);

  for (std::size_t j = 0; j < n; ++j) {
    const std::int64_t dilated = dilate(g.in_spatial[j], lhs_dilation[j], op);
    const std::int64_t padded =
        checked_add(checked_add(dilated, g.pads[j].first, op, "a padded size"), g.pads[j].second, op, "a padded size");
    if (padded < 0)
      throw ValueError(fmt::format("{}: Negative padding is larger than the size of the corresponding dimension: "
                                   "got padding {} for input of shape {} (spatial dim {}: dilated size {} padded "
                                   "to {})",
                                   op, padding.to_string(), shape_str(lhs_shape), j, dilated, padded));
    g.out_spatial.push_back(std::max<std::int64_t>(0, floor_div(padded - dilated_window[j], strides[j]) + 1));
  }
  return g;
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

std::vector<std::int64_t> patch_source_table(const ConvGeometry& g) {
  constexpr const char* op = "conv patches";
  const std::size_t n = g.window.size();
  const std::int64_t positions = g.out_positions(), window = g.window_size();
  if (positions == 0 || window == 0) return {};  // nothing reads a patch
  // The table's size is checked before anything is sized from it: a plan may pass a
  // window of any extent when the conv has nothing to compute along another axis
  // (no features, say), and out_spatial × window must not overflow silently.
  checked_numel({positions, window}, sizeof(std::int64_t), op);
  // Per spatial dim j, at map_start[j] + o_j * k_j + kappa_j: the input index read, or -1.
  std::vector<std::int64_t> map_start(n + 1, 0);
  for (std::size_t j = 0; j < n; ++j)
    map_start[j + 1] = checked_add(map_start[j], checked_mul(g.out_spatial[j], g.window[j], op, "a patch map size"), op,
                                   "a patch map size");
  std::vector<std::int64_t> maps(static_cast<std::size_t>(map_start[n]));
  for (std::size_t j = 0; j < n; ++j) {
    const std::int64_t dilated = dilate(g.in_spatial[j], g.lhs_dilation[j], "conv patches");
    std::int64_t* map = maps.data() + map_start[j];
    for (std::int64_t o = 0; o < g.out_spatial[j]; ++o)
      for (std::int64_t k = 0; k < g.window[j]; ++k) {
        const std::int64_t u = o * g.strides[j] + k * g.rhs_dilation[j] - g.pads[j].first;  // in the dilated input
        const bool inside = u >= 0 && u < dilated && u % g.lhs_dilation[j] == 0;
        map[o * g.window[j] + k] = inside ? u / g.lhs_dilation[j] : -1;
      }
  }
  const Shape in_strides = contiguous_strides(g.in_spatial);
  std::vector<std::int64_t> table(static_cast<std::size_t>(positions * window));
  // Odometers over output positions (o) and window offsets (k).
  std::vector<std::int64_t> odometers(2 * n, 0);
  std::int64_t* o = odometers.data();
  std::int64_t* k = o + n;
  std::size_t t = 0;
  for (std::int64_t p = 0; p < positions; ++p) {
    std::fill(k, k + n, 0);
    for (std::int64_t r = 0; r < window; ++r) {
      std::int64_t offset = 0;
      for (std::size_t j = 0; j < n && offset >= 0; ++j) {
        const std::int64_t m = maps[static_cast<std::size_t>(map_start[j] + o[j] * g.window[j] + k[j])];
        offset = m < 0 ? -1 : offset + m * in_strides[j];
      }
      table[t++] = offset < 0 ? -1 : offset * g.channels;
      for (std::size_t j = n; j-- > 0;) {  // row-major odometer over the window
        if (++k[j] < g.window[j]) break;
        k[j] = 0;
      }
    }
    for (std::size_t j = n; j-- > 0;) {
      if (++o[j] < g.out_spatial[j]) break;
      o[j] = 0;
    }
  }
  return table;
}

}  // namespace xgrad::kernels
