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

#include "core/kernels/conv/conv_geometry.hpp"
#include "core/kernels/conv/pooled_cotangent.hpp"

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

// The forward (with bias) followed by a max pool over disjoint windows of
// window_h × window_w outputs (stride = window, no padding; rows and columns past the
// last whole window are not computed), for a 2-D `g` and F a multiple of 8:
// out (N, ⌊H/window_h⌋, ⌊W/window_w⌋, F) and index, the flat index into y (N, H, W, F)
// of each window's selected element, exactly as pool_select (core/kernels/pool.hpp)
// on y; y itself is never written. With `relu`, out is relu of the pooled values (as
// Unary::Relu: NaN passes), the index unchanged.
void conv_shared_forward_max_pool_fast(const ConvGeometry& g, std::int64_t features, const float* x,
                                       const float* kernel, const float* bias, std::int64_t window_h,
                                       std::int64_t window_w, bool relu, float* out, std::int32_t* index);
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

// conv_shared_kernel_vjp_fast for the dy of a cotangent of
// conv_shared_forward_max_pool_fast's output (pooled_per_sample elements per sample),
// built a block of samples at a time in per-thread scratch instead of as a whole
// tensor; the same bits as the steps apart.
void conv_shared_kernel_vjp_max_pooled_fast(const ConvGeometry& g, std::int64_t features, const float* x,
                                            const PooledCotangent& pooled, std::int64_t pooled_per_sample,
                                            float* d_kernel, float* d_bias);
}  // namespace xgrad::kernels
