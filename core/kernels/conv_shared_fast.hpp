// Direct, register-tiled AVX2/FMA kernels for the common shared-weight (ordinary)
// convolution: 2-D, float32, NHWC, HWIO kernel, stride 1, no input dilation, one
// feature group, any kernel size, kernel dilation and non-negative padding,
// F a multiple of 8. No patch (im2col) buffer: the micro-kernel broadcasts input
// values straight from x against vector loads of the kernel.
// Tape-free; conv_driver.cpp calls conv_shared_fast() first and takes the general
// (patches + GEMM) path when it declines.
#pragma once

#include <cstdint>
#include <optional>

#include "core/kernels/conv.hpp"

namespace xgrad::kernels {

struct ConvShared2dFastShape {
  std::int64_t batch = 1;                                // N
  std::int64_t in_height = 1, in_width = 1;              // H, W (unpadded)
  std::int64_t in_features = 1;                          // C
  std::int64_t kernel_height = 1, kernel_width = 1;      // kh, kw
  std::int64_t dilation_height = 1, dilation_width = 1;  // dh, dw (kernel / rhs dilation)
  std::int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;  // zero padding, >= 0
  std::int64_t features = 8;                             // F

  std::int64_t padded_height() const { return in_height + pad_top + pad_bottom; }
  std::int64_t padded_width() const { return in_width + pad_left + pad_right; }
  std::int64_t out_height() const { return padded_height() - (kernel_height - 1) * dilation_height; }
  std::int64_t out_width() const { return padded_width() - (kernel_width - 1) * dilation_width; }
};

// True when the CPU has AVX2 and FMA, every size is positive (pads non-negative),
// the output is non-empty and F % 8 == 0.
bool conv_shared2d_fast_supported(const ConvShared2dFastShape& shape);

// Layouts (row-major): x (N, H, W, C), kernel (kh, kw, C, F), bias (F) or null,
// y (N, OH, OW, F), with xp the zero-padded x:
//   y[n,oy,ox,f] = bias[f] + Σ_{ky,kx,c} xp[n, oy+ky·dh, ox+kx·dw, c] · kernel[ky,kx,c,f]
// (the bias starts the accumulators: no extra pass).
void conv_shared2d_forward_fast(const ConvShared2dFastShape& shape, const float* x, const float* kernel,
                                const float* bias, float* y);

// Given dy = ∂L/∂y (N, OH, OW, F), overwrites d_x (N, H, W, C) with
//   d_x[n,iy,ix,c] = Σ_{ky,kx,f} dy[n, iy+pt-ky·dh, ix+pl-kx·dw, f] · kernel[ky,kx,c,f]  (in-range terms)
void conv_shared2d_input_vjp_fast(const ConvShared2dFastShape& shape, const float* dy, const float* kernel,
                                  float* d_x);

// Overwrites d_kernel (kh, kw, C, F) with Σ_{n,oy,ox} xp[n, oy+ky·dh, ox+kx·dw, c] · dy[n,oy,ox,f]
// and, unless null, d_bias (F) with Σ_{n,oy,ox} dy[n,oy,ox,f]. The sums are split into
// fixed blocks of samples whose partial sums are added in order, so the result does
// not depend on the thread count.
void conv_shared2d_kernel_vjp_fast(const ConvShared2dFastShape& shape, const float* x, const float* dy,
                                   float* d_kernel, float* d_bias);

enum class ConvPass { Forward, InputVJP, KernelVJP };

// The tensor-level entry of conv_driver.cpp for shared-weight convolutions: the
// result of `pass` when the fast kernels handle this case, else nullopt. `a` and `b`
// are the operands in the order of the public function (x or g, then kernel or g).
// XGRAD_CONV_GENERAL_PATH=1 in the environment always declines (to time the general path).
std::optional<Tensor> conv_shared_fast(ConvPass pass, const Tensor& a, const Tensor& b, const ConvContraction& c);

// conv(x, kernel) + bias, bias (F) added in the accumulators, when the fast kernels
// handle this case (bias of x's dtype), else nullopt.
std::optional<Tensor> conv_shared_fast_biased(const Tensor& x, const Tensor& kernel, const Tensor& bias,
                                              const ConvContraction& c);

// The kernel and bias gradients of conv(x, kernel) + bias for cotangent g from one
// kernel-VJP pass, when the fast kernels handle this case, else nullopt.
struct SharedConvParamGrads {
  Tensor dkernel, dbias;
};
std::optional<SharedConvParamGrads> conv_shared_fast_param_vjp(const Tensor& x, const Tensor& g,
                                                               const ConvContraction& c);

}  // namespace xgrad::kernels
