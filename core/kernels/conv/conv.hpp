// Tensor-level convolution kernels (no tape). Layout is channels-last: input
// (N, M..., C), output (N, O..., F). The kernel is either shared, HWIO
// (k..., C/G, F), or local (O..., S*C/G, F) with one (S*C/G x F) matrix per
// output position, rows channel-major (c*S + r). Operands must share one floating
// dtype; 16-bit floats compute in float32 and round the result; Precision::Highest
// computes float32 in float64 and rounds once.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>

#include "core/kernels/conv/conv_geometry.hpp"
#include "core/precision.hpp"
#include "core/tensor.hpp"

namespace xgrad::kernels {

enum class ConvWeights { Shared, Local };

// One convolution: geometry, kernel layout, feature groups, output features.
struct ConvContraction {
  ConvGeometry geometry;
  ConvWeights weights = ConvWeights::Shared;
  std::int64_t groups = 1;    // G: divides C and F
  std::int64_t features = 0;  // F
  Precision precision = Precision::Default;

  Shape input_shape() const;   // (N, M..., C)
  Shape kernel_shape() const;  // (k..., C/G, F) shared, (O..., S*C/G, F) local
  Shape output_shape() const;  // (N, O..., F)
};

// y = conv(x, kernel).
Tensor conv_forward(const Tensor& x, const Tensor& kernel, const ConvContraction& c);
// The adjoint in x: dx = conv_forward(., kernel)^T g, shape (N, M..., C).
Tensor conv_input_vjp(const Tensor& g, const Tensor& kernel, const ConvContraction& c);
// The adjoint in the kernel: dkernel[...] = sum over batch of patches * g, kernel-shaped.
Tensor conv_kernel_vjp(const Tensor& x, const Tensor& g, const ConvContraction& c);

// Local weights: conv_forward(x, kernel) + bias, bias (O..., F) broadcast over the
// batch. Both paths add the bias in the contraction (no extra pass).
Tensor conv_local_forward_biased(const Tensor& x, const Tensor& kernel, const Tensor& bias, const ConvContraction& c);
// Shared weights: conv_forward(x, kernel) + bias, bias (F) broadcast over the batch
// and the positions; the fast kernels add it in their accumulators.
Tensor conv_shared_forward_biased(const Tensor& x, const Tensor& kernel, const Tensor& bias, const ConvContraction& c);

// 2-D, shared or local weights: max pool over disjoint window_h × window_w windows
// (stride = window, no padding) of conv_forward(x, kernel) + bias, in one pass that
// never writes the conv output: (pooled, index) exactly as pool_select(y, ·, take_max)
// on that output (core/kernels/pool.hpp; Int32 index); with `relu`, relu of the
// pooled values (as Unary::Relu) and the same index. nullopt unless the fast kernels
// serve the conv (float32 operands and bias) and F is a multiple of 8.
std::optional<std::pair<Tensor, Tensor>> conv_forward_biased_max_pool(const Tensor& x, const Tensor& kernel,
                                                                      const Tensor& bias, const ConvContraction& c,
                                                                      std::int64_t window_h, std::int64_t window_w,
                                                                      bool relu);

// Shared weights: the kernel and bias gradients of conv_forward(x, kernel) + bias for
// cotangent g from ONE kernel-VJP pass, when the fast kernels handle this case, else
// nullopt (then take conv_kernel_vjp and sum g).
struct SharedConvParamGrads {
  Tensor dkernel, dbias;
};
std::optional<SharedConvParamGrads> conv_shared_param_vjp_fused(const Tensor& x, const Tensor& g,
                                                                const ConvContraction& c);
// The same for the cotangent the max pool (window) of conv_forward_biased_max_pool
// makes of `pooled_g` and `index` (its outputs: zero but each pooled cotangent at its
// selected element; masked first by relu_out > 0 where relu_out is defined, as
// relu_grad masks), without making it: the same bits as conv_shared_param_vjp_fused on
// it; nullopt where that function would be.
std::optional<SharedConvParamGrads> conv_shared_param_vjp_max_pooled(const Tensor& x, const Tensor& pooled_g,
                                                                     const Tensor& index, const Tensor& relu_out,
                                                                     const Shape& window, const ConvContraction& c);

// The wanted gradients of y = conv_forward(x, kernel) (+ bias) for a local conv from
// ONE pass over each position's cotangent block, on either path (not
// differentiable: for backward without create_graph).
struct LocalConvGrads {
  Tensor dx, dkernel, dbias;  // undefined where not wanted
};
LocalConvGrads conv_local_vjp_fused(const Tensor& x, const Tensor& kernel, const Tensor& g, const ConvContraction& c,
                                    bool want_dx, bool want_dkernel, bool want_dbias);
// The same for a cotangent of conv_forward_biased_max_pool's output (local weights),
// as conv_shared_param_vjp_max_pooled takes it: the same bits as conv_local_vjp_fused
// on the conv-sized cotangent; nullopt unless the fast kernels serve it.
std::optional<LocalConvGrads> conv_local_vjp_max_pooled(const Tensor& x, const Tensor& kernel, const Tensor& pooled_g,
                                                        const Tensor& index, const Tensor& relu_out, const Shape& window,
                                                        const ConvContraction& c, bool want_dx, bool want_dkernel,
                                                        bool want_dbias);

// conv_general_dilated_patches: (N, M..., C) -> (N, O..., C*S), any floating dtype
// (an exact copy), and its adjoint (scatter-add back to (N, M..., C)).
Tensor conv_patches(const Tensor& x, const ConvGeometry& g);
Tensor conv_patches_adjoint(const Tensor& patches, const ConvGeometry& g);

}  // namespace xgrad::kernels
