// The transpose of a locally connected convolution: the ConvLocalTranspose module
// and the op it runs, channels-last. It is to ConvLocal what ConvTranspose is to Conv
// (upstream has no such layer; this is xgrad's definition, docs/convlocal.md §12).
//
//   nn::ConvLocalTranspose up({.features = 8, .kernel_size = {3, 3}, .strides = 2});
//   Tensor y = up(x);   // x: [batch..., H, W, C] -> [batch..., 2H, 2W, 8] ('SAME')
//
// Definition. For an input x (N, M..., C), the output y (N, T..., F) is the input-VJP,
// at cotangent x, of a ConvLocal with C features, the same kernel size, strides,
// padding and kernel dilation, applied to an input of shape (N, T..., F), whose
// kernel is this layer's kernel; plus the bias. Hence the adjoint identity
//   <ConvLocal(z), x> = <z, ConvLocalTranspose(x)>   (without bias)
// for every z of the output's shape. The output size T is what nn::ConvTranspose
// gives: 'SAME' and 'CIRCULAR' M*s; 'VALID' M*s + max(K - s, 0); explicit (lo, hi)
// pairs (M - 1)*s + 2 + lo + hi - K, with K = (k - 1)*kernel_dilation + 1. A ConvLocal
// on T with 'SAME', 'VALID' or 'CIRCULAR' has exactly M output positions; explicit
// pairs pad ConvTranspose's dilated input, and the ConvLocal they transpose is the one
// padded by (K - 1 - lo, K - 1 - hi), as for ConvTranspose and Conv.
//
// Parameters: `kernel` (M..., S*F, C) with S = prod(kernel_size), one (S*F x C) block
// per input position, its rows channel-major as ConvLocal's (f*S + r); `bias`
// (T..., F), one entry per output position and feature.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/padding.hpp"
#include "core/precision.hpp"
#include "core/tensor.hpp"
#include "layers/conv.hpp"
#include "layers/initializers.hpp"
#include "layers/module.hpp"

namespace xgrad {

// The lax-level op: lhs (N, M..., C), rhs (M..., S*F, C) with S = prod(filter_shape),
// output (N, T..., F) as defined above, no bias. padding: 'SAME', 'VALID' (upper
// case) or explicit (lo, hi) pairs, one per spatial dim. Empty strides and
// rhs_dilation mean all ones. Differentiable in lhs and rhs to any order (its VJPs are
// a ConvLocal forward and ConvLocal's kernel gradient). Errors: ShapeError for ranks
// and shapes, DTypeError for mixed or non-floating dtypes, ValueError for the options.
Tensor conv_local_transpose(const Tensor& lhs, const Tensor& rhs, const std::vector<std::int64_t>& filter_shape,
                            const std::vector<std::int64_t>& strides, const Padding& padding,
                            const std::vector<std::int64_t>& rhs_dilation = {},
                            Precision precision = Precision::Default);

}  // namespace xgrad

namespace xgrad::nn {

// ConvTranspose's attributes (no transpose_kernel). strides and kernel_dilation: an
// int for every spatial dim, or one per dim. padding: 'SAME', 'VALID', 'CIRCULAR'
// (upper case; CIRCULAR transposes a ConvLocal whose input is wrapped periodically),
// an int, or (lo, hi) pairs.
//
// Designated initializers must follow this declaration order: features, kernel_size,
// strides, padding, kernel_dilation, use_bias, mask, dtype, param_dtype, precision,
// kernel_init, bias_init. Checked at construction (ValueError).
struct ConvLocalTransposeOptions {
  std::int64_t features = 0;                       // required, > 0
  IntOrInts kernel_size;                           // required; an int k or {k} is a 1-D kernel
  IntOrInts strides = 1;  // the upsampling factor
  Padding padding = "SAME";  // 'SAME', 'VALID', 'CIRCULAR', an int or (lo, hi) pairs
  IntOrInts kernel_dilation = 1;  // dilation of the kernel
  bool use_bias = true;  // add a learned bias (T..., F)
  std::optional<Tensor> mask = std::nullopt;       // multiplies the kernel; must have the kernel's shape
  std::optional<DType> dtype = std::nullopt;       // computation dtype; empty: promoted from input and params
  DType param_dtype = DType::Float32;  // dtype of kernel and bias
  Precision precision = Precision::Default;  // matmul precision (core/precision.hpp)
  Initializer kernel_init = initializers::lecun_normal();  // initializer of `kernel`
  Initializer bias_init = initializers::zeros();  // initializer of `bias`
};

// The transpose of a ConvLocal (definition above), over the last n + 1 axes of
// its input; parameters created at the first call from the input's shape.
class ConvLocalTranspose : public Module {
 public:
  explicit ConvLocalTranspose(ConvLocalTransposeOptions options);  // Checks the options (ValueError).
  std::string describe() const override;  // "ConvLocalTranspose, features=8, kernel_size=[3, 3]"
  int feature_rank() const override { return static_cast<int>(options_.kernel_size.size()) + 1; }
  // The options it was built with.
  const ConvLocalTransposeOptions& options() const { return options_; }

  // Per example (axis 0; further batch axes are summed per example; 16-bit compute
  // declines to the loop): the layer is the input VJP of a ConvLocal L_W on the
  // output, so ⟨g, y⟩ = ⟨L_W(g), x⟩ and example b's kernel gradient at input position m is
  // the outer product patch(g_b)_m ⊗ x_b,m (ConvLocal's kernel gradient with g as its
  // input and x as its output gradient; g wrapped first for CIRCULAR), times the mask;
  // the bias (T..., F) gets g_b itself.
  std::optional<StateDict> per_example_param_grads(const Tensor& input, const Tensor& output,
                                                   const Tensor& output_grad) const override;

 protected:
  // x (batch..., M..., C) -> (batch..., T..., F). ShapeError for a rank below
  // n + 1 or a later input of another shape; ValueError for a bad mask or a
  // padding that makes T negative or has no ConvLocal transpose.
  Tensor forward(const Tensor& x) override;

 private:
  ConvLocalTransposeOptions options_;
};

}  // namespace xgrad::nn
