// Transposed convolution: the ConvTranspose module (flax.linen.ConvTranspose),
// channels-last. The lax-level op, conv_transpose (jax.lax.conv_transpose), is in
// autograd/conv.hpp beside the other lax convolutions; this header includes it.
//
//   nn::ConvTranspose up({.features = 16, .kernel_size = {3, 3}, .strides = 2});
//   Tensor y = up(x);   // x: [batch..., H, W, C] -> [batch..., 2H, 2W, 16] ('SAME')
//
// A transposed convolution is a fractionally strided one: conv_general_dilated
// with the input dilated by `strides` (lhs_dilation), window strides 1 and the
// kernel dilation as rhs dilation. With K = (k - 1) * kernel_dilation + 1 the
// dilated kernel extent and M the input size, each spatial dim of the output is
//   'SAME' and 'CIRCULAR': M * s;   'VALID': M * s + max(K - s, 0);
//   (lo, hi) pairs:       (M - 1) * s + 1 + lo + hi - K + 1 (the pairs pad the dilated input as they are).
// Parameters: `kernel` (k..., C, F), or (k..., F, C) with transpose_kernel; `bias` (F,).
// It runs as the input-VJP of the strided conv it transposes
// (conv_general_dilated_input_vjp), so it never multiplies the zeros of the dilated
// input and costs what that conv costs (bench/conv_transpose_bench).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "autograd/conv.hpp"
#include "core/padding.hpp"
#include "core/precision.hpp"
#include "core/tensor.hpp"
#include "layers/conv.hpp"
#include "layers/initializers.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

// Flax's attributes in Flax's order. strides and kernel_dilation: an int for every
// spatial dim, or one per dim. padding: 'SAME', 'VALID', 'CIRCULAR' (periodic:
// a VALID transposed conv whose overhang is summed back, modulo the output size
// M * s), an int, or (lo, hi) pairs.
//
// Designated initializers must follow this declaration order: features, kernel_size,
// strides, padding, kernel_dilation, use_bias, mask, dtype, param_dtype, precision,
// kernel_init, bias_init, transpose_kernel. Checked at construction (ValueError).
struct ConvTransposeOptions {
  std::int64_t features = 0;                       // required, > 0
  IntOrInts kernel_size;                           // required; an int k or {k} is a 1-D kernel
  IntOrInts strides = 1;                           // the upsampling factor: lhs dilation of the equivalent conv
  Padding padding = "SAME";                        // 'SAME', 'VALID', 'CIRCULAR', an int or (lo, hi) pairs
  IntOrInts kernel_dilation = 1;                   // rhs (atrous) dilation of the kernel
  bool use_bias = true;                            // add a learned bias of shape (F,)
  std::optional<Tensor> mask = std::nullopt;       // multiplies the kernel; must have the kernel's shape
  std::optional<DType> dtype = std::nullopt;       // computation dtype; empty: promoted from input and params
  DType param_dtype = DType::Float32;              // dtype of kernel and bias
  Precision precision = Precision::Default;        // matmul precision of the conv (core/precision.hpp)
  Initializer kernel_init = initializers::lecun_normal();  // initializer of `kernel`
  Initializer bias_init = initializers::zeros();   // initializer of `bias`
  bool transpose_kernel = false;                   // kernel (k..., F, C), flipped: the gradient of a Conv
};

// flax.linen.ConvTranspose: a transposed convolution over the last n + 1 axes of its input (n spatial dims and
// the features), with parameters `kernel` and `bias` created at the first call from the input's feature count.
class ConvTranspose : public Module {
 public:
  // Checks the options (ValueError for bad features, kernel_size, strides, dilation or padding).
  explicit ConvTranspose(ConvTransposeOptions options);
  std::string describe() const override;  // "ConvTranspose, features=16, kernel_size=[3, 3]"
  int feature_rank() const override { return static_cast<int>(options_.kernel_size.size()) + 1; }
  // The options it was built with.
  const ConvTransposeOptions& options() const { return options_; }

  // Per example, without a mask or CIRCULAR padding and with one batch axis: the
  // layer is the input VJP of a conv A z = conv(z, K'), so K' gets Σ patch(g_b)ᵀ x_b over
  // x's positions (mapped back to the kernel's layout), and the bias Σ g_b.
  std::optional<StateDict> per_example_param_grads(const Tensor& input, const Tensor& output,
                                                   const Tensor& output_grad) const override;

 protected:
  // y = conv_transpose(x, kernel [* mask]) + bias for x (batch..., M..., C); ShapeError if x has rank < n + 1,
  // ValueError for a mask not of the kernel's shape.
  Tensor forward(const Tensor& x) override;

 private:
  ConvTransposeOptions options_;
};

}  // namespace xgrad::nn
