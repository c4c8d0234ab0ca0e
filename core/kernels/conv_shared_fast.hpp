// Direct, register-tiled AVX2/FMA (and AVX-512) kernels for the shared-weight
// (ordinary) convolution on the tile engine (conv_tiles.hpp): float32, channels-last,
// HWIO kernel, spatial rank 1..3, any padding (explicit (lo, hi) pairs, negative =
// crop), strides, kernel dilation and feature count; no input (lhs) dilation, one
// feature group. No patch (im2col) buffer: the tiles broadcast input values straight
// from x against vector loads of the kernel.
// Tape-free; conv.cpp checks conv_shared_fast_supported() and otherwise takes
// the general (patches + GEMM) path.
#pragma once

#include <cstdint>

#include "core/kernels/conv_geometry.hpp"

namespace xgrad::kernels {

// True when the CPU has AVX2 and FMA and `g` is one the kernels handle (rank 1..3,
// no lhs dilation, non-empty operands and output).
bool conv_shared_fast_supported(const ConvGeometry& g, std::int64_t features);

// Layouts (row-major): x (N, M..., C), kernel (k..., C, F), bias (F) or null,
// y (N, O..., F), with xp the input padded by the geometry's (lo, hi) pairs:
//   y[n,o,f] = bias[f] + Σ_{r,c} xp[n, o·s + r·d, c] · kernel[r,c,f]
// (the bias starts the accumulators: no extra pass).
void conv_shared_forward_fast(const ConvGeometry& g, std::int64_t features, const float* x, const float* kernel,
                              const float* bias, float* y);

// Given dy = ∂L/∂y (N, O..., F), overwrites d_x (N, M..., C) with the adjoint of the
// forward in x. Each sample is one task, so the result does not depend on the thread count.
void conv_shared_input_vjp_fast(const ConvGeometry& g, std::int64_t features, const float* dy, const float* kernel,
                                float* d_x);

// Overwrites d_kernel (k..., C, F) with Σ_{n,o} xp[n, o·s + r·d, c] · dy[n,o,f] and,
// unless null, d_bias (F) with Σ_{n,o} dy[n,o,f]. The sums are split into fixed blocks
// of samples whose partial sums are added in order, so the result does not depend on
// the thread count.
void conv_shared_kernel_vjp_fast(const ConvGeometry& g, std::int64_t features, const float* x, const float* dy,
                                 float* d_kernel, float* d_bias);

// The 2-D stride-1 form of the kernels above, for tests and benchmarks.
struct ConvShared2dFastShape {
  std::int64_t batch = 1;                                // N
  std::int64_t in_height = 1, in_width = 1;              // H, W (unpadded)
  std::int64_t in_features = 1;                          // C
  std::int64_t kernel_height = 1, kernel_width = 1;      // kh, kw
  std::int64_t dilation_height = 1, dilation_width = 1;  // dh, dw (kernel / rhs dilation)
  std::int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;  // zero padding (negative: crop)
  std::int64_t features = 8;                             // F

  std::int64_t padded_height() const { return in_height + pad_top + pad_bottom; }
  std::int64_t padded_width() const { return in_width + pad_left + pad_right; }
  std::int64_t out_height() const { return padded_height() - (kernel_height - 1) * dilation_height; }
  std::int64_t out_width() const { return padded_width() - (kernel_width - 1) * dilation_width; }
  ConvGeometry geometry() const;
};
bool conv_shared2d_fast_supported(const ConvShared2dFastShape& shape);
void conv_shared2d_forward_fast(const ConvShared2dFastShape& shape, const float* x, const float* kernel,
                                const float* bias, float* y);
void conv_shared2d_input_vjp_fast(const ConvShared2dFastShape& shape, const float* dy, const float* kernel,
                                  float* d_x);
void conv_shared2d_kernel_vjp_fast(const ConvShared2dFastShape& shape, const float* x, const float* dy,
                                   float* d_kernel, float* d_bias);

}  // namespace xgrad::kernels
