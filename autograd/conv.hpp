// Differentiable convolutions with the semantics of jax.lax (docs/convlocal.md §5), in the
// channels-last layout Flax uses: lhs (N, spatial..., C), outputs
// (N, out_spatial..., features). Any number of spatial dims n >= 1.
//
// `padding` is lax-level: "VALID", "SAME" or "SAME_LOWER" (any case), or
// explicit (lo, hi) pairs per spatial dim, applied after the lhs dilation
// (negative values crop). Flax-level forms (ints, 'CIRCULAR', 'REFLECT',
// 'CAUSAL') are resolved by layers/conv_plan.hpp. Empty strides and dilations
// mean all ones.
//
// Operands must share one floating dtype, which the output keeps. float16 and
// bfloat16 compute in float32 and round the result; Precision::Highest
// accumulates float32 in float64. All three ops are differentiable in every
// tensor argument to any order.
#pragma once

#include <cstdint>
#include <vector>

#include "core/padding.hpp"
#include "core/precision.hpp"
#include "core/tensor.hpp"

namespace xgrad {

namespace kernels {
struct ConvContraction;  // core/kernels/conv/conv.hpp (internal)
}  // namespace kernels

// Every window of lhs as a flat patch: (N, O..., C*S), S = prod(filter_shape),
// patch entry c*S + r = lhs value at channel c and window offset r (row-major),
// zero where the window reads padding or a dilation hole. An exact copy, so
// `precision` has no effect (accepted for parity with JAX).
Tensor conv_general_dilated_patches(const Tensor& lhs, const std::vector<std::int64_t>& filter_shape,
                                    const std::vector<std::int64_t>& window_strides, const Padding& padding,
                                    const std::vector<std::int64_t>& lhs_dilation = {},
                                    const std::vector<std::int64_t>& rhs_dilation = {},
                                    Precision precision = Precision::Default);

// Every convolution here takes its trailing options in lax.conv_general_dilated's
// order: lhs_dilation, rhs_dilation, feature_group_count, precision.

// Locally connected ("unshared") convolution: a different kernel at every output
// position. rhs is (O..., S*C, F) and
//   y[b, o, f] = sum_i patches[b, o, i] * rhs[o, i, f].
// feature_group_count G > 1 is an xgrad extension (docs/convlocal.md §11): rhs is
// (O..., S*C/G, F) and output feature f reads only the input channels of group
// f / (F/G), exactly as a grouped conv_general_dilated whose kernel is tiled over
// the output positions.
Tensor conv_general_dilated_local(const Tensor& lhs, const Tensor& rhs,
                                  const std::vector<std::int64_t>& window_strides, const Padding& padding,
                                  const std::vector<std::int64_t>& filter_shape,
                                  const std::vector<std::int64_t>& lhs_dilation = {},
                                  const std::vector<std::int64_t>& rhs_dilation = {},
                                  std::int64_t feature_group_count = 1, Precision precision = Precision::Default);

// conv_general_dilated_local(lhs, rhs, ...) + bias, with bias (O..., F) of lhs's
// dtype broadcast over the batch, as one op (ConvLocal layers use it): the fast
// kernels add the bias in the forward and, without create_graph, compute the
// gradients of lhs, rhs and bias in one backward pass.
Tensor conv_general_dilated_local_bias(const Tensor& lhs, const Tensor& rhs, const Tensor& bias,
                                       const std::vector<std::int64_t>& window_strides, const Padding& padding,
                                       const std::vector<std::int64_t>& filter_shape,
                                       const std::vector<std::int64_t>& lhs_dilation = {},
                                       const std::vector<std::int64_t>& rhs_dilation = {},
                                       std::int64_t feature_group_count = 1,
                                       Precision precision = Precision::Default);

// Ordinary (shared-kernel) convolution, cross-correlation as in lax: rhs is HWIO
// (k..., C/G, F) with G = feature_group_count dividing C and F.
Tensor conv_general_dilated(const Tensor& lhs, const Tensor& rhs, const std::vector<std::int64_t>& window_strides,
                            const Padding& padding, const std::vector<std::int64_t>& lhs_dilation = {},
                            const std::vector<std::int64_t>& rhs_dilation = {},
                            std::int64_t feature_group_count = 1, Precision precision = Precision::Default);

// conv_general_dilated(lhs, rhs, ...) + bias, with bias (F) of lhs's dtype broadcast
// over the batch and the positions, as one op (Conv layers use it): the fast kernels
// add the bias in the forward and, without create_graph, sum its gradient in the
// kernel-gradient pass.
Tensor conv_general_dilated_bias(const Tensor& lhs, const Tensor& rhs, const Tensor& bias,
                                 const std::vector<std::int64_t>& window_strides, const Padding& padding,
                                 const std::vector<std::int64_t>& lhs_dilation = {},
                                 const std::vector<std::int64_t>& rhs_dilation = {},
                                 std::int64_t feature_group_count = 1, Precision precision = Precision::Default);

// The transpose of conv_general_dilated in lhs, as a differentiable op: for the
// conv of an input of shape lhs_shape (N, M..., C) with rhs and these arguments,
// maps a cotangent g of its output (N, O..., F) to (N, M..., C), the VJP in lhs
// (jax's _conv_general_dilated_transpose_lhs). With window strides s this is a
// transposed convolution that never multiplies the zeros of an s-dilated input
// (conv_transpose below and nn::ConvTranspose run on it).
Tensor conv_general_dilated_input_vjp(const Tensor& g, const Tensor& rhs, const Shape& lhs_shape,
                                      const std::vector<std::int64_t>& window_strides, const Padding& padding,
                                      const std::vector<std::int64_t>& lhs_dilation = {},
                                      const std::vector<std::int64_t>& rhs_dilation = {},
                                      std::int64_t feature_group_count = 1, Precision precision = Precision::Default);

// jax.lax.conv_transpose with the NHWC / HWIO dimension numbers: lhs (N, M..., C),
// rhs (k..., C, F), output (N, O..., F). 'SAME' and 'VALID' (case-sensitive, as
// lax) become the padding of the dilated input that makes this the transpose of
// that forward conv (jax's _conv_transpose_padding, K the dilated kernel extent):
//   SAME:  K + s - 2 in total; K - 1 in front when s > K - 1, else the larger half;
//   VALID: (K - 1, max(K, s) - 1).
// (lo, hi) pairs pad the dilated input as they are. Other strings reach
// conv_general_dilated unchanged, which lax allows only when every stride is 1
// (then 'same' is a plain convolution's SAME). transpose_kernel flips the kernel's
// spatial axes and swaps its I/O axes (rhs is then (k..., F, C)): the result is the
// input-gradient of conv_general_dilated with that kernel. Empty strides and
// rhs_dilation mean all ones. Differentiable in lhs and rhs. Errors: ValueError for
// undefined operands, strides or dilations that are not positive or not one per
// spatial dim, and unknown paddings; ShapeError for ranks below 3 or unequal, or
// rhs's input axis not C; DTypeError for operands of different dtypes.
Tensor conv_transpose(const Tensor& lhs, const Tensor& rhs, const std::vector<std::int64_t>& strides,
                      const Padding& padding, const std::vector<std::int64_t>& rhs_dilation = {},
                      bool transpose_kernel = false, Precision precision = Precision::Default);

// The transpose of conv_general_dilated_local in lhs, as a differentiable op: for the
// local conv of an input of shape lhs_shape (N, M..., C) with rhs (O..., S*C/G, F)
// and these arguments, maps a cotangent g (N, O..., F) to (N, M..., C), the VJP in
// lhs. On the fast float32 kernels it costs what that conv's input gradient costs.
// Its VJPs are the local conv itself (in g) and the local kernel gradient (in rhs),
// so it is differentiable to any order. nn::ConvLocalTranspose
// (layers/conv_local_transpose.hpp) runs on it.
Tensor conv_general_dilated_local_input_vjp(const Tensor& g, const Tensor& rhs, const Shape& lhs_shape,
                                            const std::vector<std::int64_t>& window_strides, const Padding& padding,
                                            const std::vector<std::int64_t>& filter_shape,
                                            const std::vector<std::int64_t>& lhs_dilation = {},
                                            const std::vector<std::int64_t>& rhs_dilation = {},
                                            std::int64_t feature_group_count = 1,
                                            Precision precision = Precision::Default);

// The op behind conv_general_dilated(_local)(_bias) on a contraction already resolved
// (geometry, weights, groups, features, precision): the lax functions above resolve
// theirs from their arguments; nn::conv_apply resolves it once per input shape in
// nn::plan_conv. lhs must have c.input_shape() and rhs c.kernel_shape(), one floating
// dtype; bias (undefined for none) that dtype and shape (O..., F) local or (F) shared.
Tensor conv_general_dilated_resolved(const kernels::ConvContraction& c, const Tensor& lhs, const Tensor& rhs,
                                     const Tensor& bias = Tensor());

// max_pool(conv_general_dilated_resolved(c, lhs, rhs, bias), window, strides = window,
// "VALID") as ONE op, for a 2-D conv (shared or local weights) with a bias, when the
// fast kernels serve it (float32, F a multiple of 8; see kernels::conv_forward_biased_max_pool):
// the conv output is never written. Values and gradients of every order are those of
// the two ops (the same kernels select the same elements; the VJP scatters to the
// conv output and runs the conv's VJP). With `relu`, relu of that (relu(max) =
// max(relu): also the value and gradients of a relu between the conv and the pool),
// as the three ops give it. Undefined where it does not apply: the caller then runs
// the ops apart. lhs, rhs and bias as for conv_general_dilated_resolved.
Tensor conv_general_dilated_max_pool_resolved(const kernels::ConvContraction& c, const Tensor& lhs, const Tensor& rhs,
                                              const Tensor& bias, const Shape& window, bool relu = false);

// The input-VJP (transpose in lhs) of the contraction already resolved: g must have
// c.output_shape() and rhs c.kernel_shape(), one floating dtype; the result has
// c.input_shape(). Differentiable in g and rhs to any order.
Tensor conv_input_vjp_resolved(const kernels::ConvContraction& c, const Tensor& g, const Tensor& rhs);

}  // namespace xgrad
