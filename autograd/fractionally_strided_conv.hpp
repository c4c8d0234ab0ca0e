// Internal (not installed): the pieces of a transposed convolution that the lax-level
// conv_transpose (autograd/conv.hpp) and nn::ConvTranspose (layers/conv_transpose.hpp)
// share. A transposed convolution is conv_general_dilated on the input dilated by the
// strides; these resolve its padding and run it as the input-VJP of the strided conv
// it transposes (autograd/ops_conv_transpose.cpp has the derivation).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/padding.hpp"
#include "core/precision.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"

namespace xgrad::detail {

// strides / dilations per spatial dim: empty means all ones; otherwise one positive
// entry per dim (ValueError naming `who` and `what` if not).
std::vector<std::int64_t> per_spatial_dim(const std::vector<std::int64_t>& v, std::size_t n, const char* what,
                                          const char* who);

// What lax.conv_transpose hands conv_general_dilated as padding: 'SAME' and 'VALID'
// (case-sensitive) become the pads of the dilated input that make the result the
// transpose of that forward conv (jax's _conv_transpose_padding); (lo, hi) pairs pass
// as they are; other spellings pass only with all strides 1 (ValueError otherwise).
// `window` is the undilated kernel size.
Padding transposed_padding(const Padding& padding, const Shape& window, const std::vector<std::int64_t>& strides,
                           const std::vector<std::int64_t>& rhs_dilation, const char* who);

// lax.conv_transpose as the input VJP of a plain conv: y = Aᵀ lhs for A z = conv(z,
// kernel, strides, padding, rhs_dilation) on z shaped like y. The operands of that conv
// (ConvTranspose's per-example kernel gradient uses them too):
struct FractionalConv {
  Tensor kernel;    // (spatial..., F, C): rhs, or flipped with its feature axes swapped
  Padding padding;  // of the conv A
  Shape out_shape;  // y's shape (N, O..., F)
};
FractionalConv fractional_conv(const Shape& lhs_shape, const Tensor& rhs, const std::vector<std::int64_t>& strides,
                               const Padding& lax_padding, const std::vector<std::int64_t>& rhs_dilation,
                               bool transpose_kernel, const char* who);

// The transposed conv on resolved arguments: lhs (N, M..., C), rhs (k..., C, F), or
// (k..., F, C) with transpose_kernel, `lax_padding` from transposed_padding; output
// (N, O..., F). Differentiable in lhs and rhs.
Tensor fractionally_strided_conv(const Tensor& lhs, const Tensor& rhs, const std::vector<std::int64_t>& strides,
                                 const Padding& lax_padding, const std::vector<std::int64_t>& rhs_dilation,
                                 bool transpose_kernel, Precision precision, const char* who);

}  // namespace xgrad::detail
