// The lax-level transposed convolution (jax.lax.conv_transpose), declared in
// autograd/conv.hpp, and the helpers it shares with nn::ConvTranspose
// (autograd/fractionally_strided_conv.hpp, internal).
#include <algorithm>
#include <cctype>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autograd/conv.hpp"
#include "autograd/fractionally_strided_conv.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "core/kernels/conv/conv_geometry.hpp"

namespace xgrad {

namespace {

bool all_ones(const std::vector<std::int64_t>& v) {
  return std::all_of(v.begin(), v.end(), [](auto d) { return d == 1; });
}

}  // namespace

namespace detail {

std::vector<std::int64_t> per_spatial_dim(const std::vector<std::int64_t>& v, std::size_t n, const char* what,
                                          const char* who) {
  if (v.empty()) return std::vector<std::int64_t>(n, 1);
  if (v.size() != n)
    throw ValueError(fmt::format("{}: {} [{}] has {} entries but the convolution has {} spatial dims; give one per "
                                 "spatial dim (or one int for all)",
                                 who, what, fmt::join(v, ", "), v.size(), n));
  for (auto d : v)
    if (d <= 0) throw ValueError(fmt::format("{}: {} [{}] must be positive", who, what, fmt::join(v, ", ")));
  return v;
}

// The pads follow jax's _conv_transpose_padding, K the dilated kernel extent:
//   SAME:  K + s - 2 in total; K - 1 in front when s > K - 1, else the larger half;
//   VALID: (K - 1, max(K, s) - 1).
Padding transposed_padding(const Padding& padding, const Shape& window, const std::vector<std::int64_t>& strides,
                           const std::vector<std::int64_t>& rhs_dilation, const char* who) {
  if (!padding.is_string()) return padding;
  const std::string& name = padding.name();
  if (name == "SAME" || name == "VALID") {
    std::vector<std::pair<int, int>> pads;
    for (std::size_t j = 0; j < window.size(); ++j) {
      const std::int64_t K = (window[j] - 1) * rhs_dilation[j] + 1, s = strides[j];
      std::int64_t total = 0, front = 0;
      if (name == "SAME") {
        total = K + s - 2;
        front = s > K - 1 ? K - 1 : (total + 1) / 2;
      } else {
        total = K + s - 2 + std::max<std::int64_t>(K - s, 0);
        front = K - 1;
      }
      pads.emplace_back(static_cast<int>(front), static_cast<int>(total - front));
    }
    return Padding(pads);
  }
  std::string upper(name);
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
  if (upper != "SAME" && upper != "VALID" && upper != "SAME_LOWER")
    throw ValueError(fmt::format("{}: Unrecognized padding type: expected 'SAME', 'VALID' (and in ConvTranspose "
                                 "'CIRCULAR'), an int or (low, high) pairs, got '{}'",
                                 who, name));
  // lax.conv_transpose matches 'SAME' and 'VALID' case-sensitively: any other
  // spelling reaches conv_general_dilated, which resolves it as a plain conv's
  // padding and refuses it with input dilation (the strides).
  if (!all_ones(strides))
    throw ValueError(fmt::format("{}: padding '{}' is not 'SAME' or 'VALID' (upper case), so lax treats it as a plain "
                                 "convolution's padding, which it allows only with strides 1 (got strides [{}]); "
                                 "write 'SAME' or 'VALID' for the transposed convolution's padding",
                                 who, name, fmt::join(strides, ", ")));
  return padding;
}

// The conv itself, on resolved arguments. lax computes it on the input dilated by
// the strides, y[o] = sum_kappa xd[o + kappa * d - lo] w[kappa], mostly products
// with zeros. Substituting kappa' = k - 1 - kappa shows y is the transpose (input
// VJP) of the strided conv z -> (sum_kappa' z[i * s + kappa' * d - (K - 1 - lo)] v[kappa'])_i,
// with window strides s, rhs dilation d, pads (K - 1 - lo, K - 1 - hi) on an input
// of y's size O, which gives exactly M outputs, and kernel v = w flipped with its
// I/O axes swapped: rhs itself with transpose_kernel. That VJP does only the
// useful products. When O or M is 0 the result is all zeros and any pads that give
// those sizes do.
FractionalConv fractional_conv(const Shape& lhs_shape, const Tensor& rhs, const std::vector<std::int64_t>& strides,
                               const Padding& lax_padding, const std::vector<std::int64_t>& rhs_dilation,
                               bool transpose_kernel, const char* who) {
  const Shape window(rhs.shape().begin(), rhs.shape().end() - 2);
  const auto geometry =
      kernels::make_conv_geometry(lhs_shape, window, {}, lax_padding, strides, rhs_dilation, who);
  std::vector<std::pair<int, int>> pads;
  for (std::size_t j = 0; j < window.size(); ++j) {
    const std::int64_t K = (window[j] - 1) * rhs_dilation[j] + 1, s = strides[j];
    const std::int64_t M = geometry.in_spatial[j], O = geometry.out_spatial[j];
    const auto [lo, hi] = geometry.pads[j];
    if (M == 0)
      pads.emplace_back(0, static_cast<int>(-O));
    else if (O == 0)
      pads.emplace_back(0, static_cast<int>((M - 1) * s + K));
    else
      pads.emplace_back(static_cast<int>(K - 1 - lo), static_cast<int>(K - 1 - hi));
  }
  Tensor kernel = rhs;
  if (!transpose_kernel) {
    for (std::int64_t axis = 0; axis < static_cast<std::int64_t>(window.size()); ++axis)
      kernel = slice(kernel, axis, std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min(),
                     -1);
    kernel = swapaxes(kernel, -2, -1);
  }
  Shape out_shape{geometry.batch};
  out_shape.insert(out_shape.end(), geometry.out_spatial.begin(), geometry.out_spatial.end());
  out_shape.push_back(rhs.shape()[rhs.shape().size() - (transpose_kernel ? 2 : 1)]);
  return {kernel, Padding(pads), out_shape};
}

Tensor fractionally_strided_conv(const Tensor& lhs, const Tensor& rhs, const std::vector<std::int64_t>& strides,
                                 const Padding& lax_padding, const std::vector<std::int64_t>& rhs_dilation,
                                 bool transpose_kernel, Precision precision, const char* who) {
  const FractionalConv c = fractional_conv(lhs.shape(), rhs, strides, lax_padding, rhs_dilation, transpose_kernel, who);
  return conv_general_dilated_input_vjp(lhs, c.kernel, c.out_shape, strides, c.padding, {}, rhs_dilation, 1,
                                        precision);
}

}  // namespace detail

Tensor conv_transpose(const Tensor& lhs, const Tensor& rhs, const std::vector<std::int64_t>& strides,
                      const Padding& padding, const std::vector<std::int64_t>& rhs_dilation, bool transpose_kernel,
                      Precision precision) {
  const char* who = "conv_transpose";
  if (!lhs.defined() || !rhs.defined()) throw ValueError("conv_transpose: lhs and rhs must be defined");
  if (lhs.dim() < 3 || rhs.dim() != lhs.dim())
    throw ShapeError(fmt::format("conv_transpose: lhs {} and rhs {} must have the same rank >= 3 ((N, spatial..., C) "
                                 "and (k..., I, O))",
                                 shape_str(lhs.shape()), shape_str(rhs.shape())));
  if (lhs.dtype() != rhs.dtype())
    throw DTypeError(fmt::format("conv_transpose: lhs {} is {} but rhs {} is {}; both must have the same dtype",
                                 shape_str(lhs.shape()), dtype_name(lhs.dtype()), shape_str(rhs.shape()),
                                 dtype_name(rhs.dtype())));
  const auto n = static_cast<std::size_t>(lhs.dim() - 2);
  const std::int64_t in_axis = transpose_kernel ? rhs.dim() - 1 : rhs.dim() - 2;
  if (rhs.size(in_axis) != lhs.shape().back())
    throw ShapeError(fmt::format("conv_transpose: rhs {} must be {} with C = {}, the channels of lhs {}",
                                 shape_str(rhs.shape()),
                                 transpose_kernel ? "(k..., F, C) (transpose_kernel)" : "(k..., C, F)",
                                 lhs.shape().back(), shape_str(lhs.shape())));
  const Shape window(rhs.shape().begin(), rhs.shape().end() - 2);
  const auto s = detail::per_spatial_dim(strides, n, "strides", who);
  const auto d = detail::per_spatial_dim(rhs_dilation, n, "rhs_dilation", who);
  return detail::fractionally_strided_conv(lhs, rhs, s, detail::transposed_padding(padding, window, s, d, who), d, transpose_kernel,
                                   precision, who);
}

}  // namespace xgrad
