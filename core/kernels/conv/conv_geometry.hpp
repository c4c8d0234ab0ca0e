// The resolved geometry of one convolution, with XLA's semantics (docs/convlocal.md §5.3):
// dilate the input by lhs_dilation, pad it by (lo, hi) (negative crops), then
// read windows at o*stride + kappa*rhs_dilation. Any spatial rank n >= 1;
// the input is (N, M..., C).
#pragma once

#include <cstdint>
#include <vector>

#include "core/padding.hpp"
#include "core/shape.hpp"

namespace xgrad::kernels {

struct ConvGeometry {
  std::int64_t batch = 0;     // N
  std::int64_t channels = 0;  // C
  Shape in_spatial;           // M
  Shape window;               // k: kernel offsets per spatial dim (undilated)
  std::vector<std::int64_t> strides, lhs_dilation, rhs_dilation;
  PadPairs pads;              // on the lhs-dilated input
  Shape out_spatial;          // O

  std::int64_t rank() const { return static_cast<std::int64_t>(window.size()); }
  std::int64_t in_positions() const { return numel(in_spatial); }
  std::int64_t out_positions() const { return numel(out_spatial); }
  std::int64_t window_size() const { return numel(window); }            // S
  std::int64_t patch_size() const { return channels * window_size(); }  // C*S
};

// a / b rounded towards minus infinity (C++'s / rounds towards zero); b != 0.
std::int64_t floor_div(std::int64_t a, std::int64_t b);

// Runs the checks lax.conv_general_dilated makes on windows, strides, dilations
// and padding, resolves a string padding (padtype_to_pads) and computes the output
// size O = max(0, floor((D + lo + hi - K) / s) + 1), D the lhs-dilated input size
// and K the rhs-dilated window. Empty strides/dilations mean all ones. Throws
// ShapeError/ValueError naming `op`.
ConvGeometry make_conv_geometry(const Shape& lhs_shape, const Shape& window, std::vector<std::int64_t> strides,
                                const Padding& padding, std::vector<std::int64_t> lhs_dilation,
                                std::vector<std::int64_t> rhs_dilation, const char* op);

// For every (output position o, window offset r), the element offset
// (flat input spatial index * C) within one batch entry of the input value it
// reads, or -1 where it reads padding or a hole of the lhs dilation.
// Row-major (out_positions, window_size); r is the row-major ravel of the offset.
std::vector<std::int64_t> patch_source_table(const ConvGeometry& g);

}  // namespace xgrad::kernels
