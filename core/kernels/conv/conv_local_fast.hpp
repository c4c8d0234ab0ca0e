// Direct, register-tiled AVX2/FMA (and AVX-512) kernels for the locally connected
// (unshared) convolution: float32, channels-last, spatial rank 1..3, any padding
// (explicit (lo, hi) pairs, negative = crop), strides, kernel dilation and feature
// count; no input (lhs) dilation, one feature group.
// Semantics: docs/convlocal.md §5 (Flax ConvLocal; patch index channel-major).
// Tape-free; conv.cpp checks conv_local_fast_supported() and otherwise takes
// the general (patches + per-position GEMM) path.
#pragma once

#include <cstdint>

#include "core/kernels/conv/conv_geometry.hpp"
#include "core/kernels/conv/pooled_cotangent.hpp"

namespace xgrad::kernels {

// True when the CPU has AVX2 and FMA and `g` is one the kernels handle (rank 1..3,
// no lhs dilation, non-empty operands and output).
bool conv_local_fast_supported(const ConvGeometry& g, std::int64_t features);

// Layouts (row-major): x (N, M..., C) unpadded; kernel (O..., S·C, F) with patch index
// i = c·S + r (r the row-major kernel offset); bias (O..., F) or null; y (N, O..., F):
//   y[n,o,f] = bias[o,f] + Σ_{c,r} xp[n, o·s + r·d, c] · kernel[o, c·S + r, f]
// with xp the input padded by the geometry's (lo, hi) pairs.
void conv_local_forward_fast(const ConvGeometry& g, std::int64_t features, const float* x, const float* kernel,
                             const float* bias, float* y);

// Given dy = ∂L/∂y (N, O..., F), overwrites whichever of these is not null:
//   d_bias[o,f]     = Σ_n dy[n,o,f]
//   d_kernel[o,i,f] = Σ_n patch[n,o,i] · dy[n,o,f]
//   d_x             = the scatter of Σ_f kernel[o,i,f] · dy[n,o,f] (shape of x)
// (kernel may be null when d_x is; x when d_kernel is). Runs on num_threads() threads.
void conv_local_backward_fast(const ConvGeometry& g, std::int64_t features, const float* x, const float* kernel,
                              const float* dy, float* d_x, float* d_kernel, float* d_bias);

// The forward (with bias) followed by a max pool over disjoint windows of
// window_h × window_w positions (stride = window, no padding; positions past the last
// whole window are not computed), for a 2-D `g` and F a multiple of 8: out
// (N, ⌊H/window_h⌋, ⌊W/window_w⌋, F) and index, the flat index into y (N, H, W, F) of
// each window's selected element, exactly as pool_select (core/kernels/pool.hpp) on
// y; y itself is never written. With `relu`, out is relu of the pooled values (as
// Unary::Relu: NaN passes), the index unchanged. N·H·W·F < 2^31.
void conv_local_forward_max_pool_fast(const ConvGeometry& g, std::int64_t features, const float* x,
                                      const float* kernel, const float* bias, std::int64_t window_h,
                                      std::int64_t window_w, bool relu, float* out, std::int32_t* index);

// conv_local_backward_fast for the dy of a cotangent of conv_local_forward_max_pool_fast's
// output, read from the pooled cotangent position by position instead of from a whole
// dy (the same bits).
void conv_local_backward_max_pooled_fast(const ConvGeometry& g, std::int64_t features, const float* x,
                                         const float* kernel, const PooledCotangent& pooled, float* d_x,
                                         float* d_kernel, float* d_bias);

// Whether conv_local_backward_fast computes the kernel gradient of `g` by runs of the
// patch (features as rows: where a run fills the vector lanes better than F does, see
// conv_local_fast.cpp) on this CPU with the current switches. Either way it has the
// same bits; for tests.
bool conv_local_d_kernel_by_runs(const ConvGeometry& g, std::int64_t features);

// Process-wide switches for benchmarks and tests (they act on the shared-weight fast
// kernels too; see conv_tiles.hpp):
//   disabled, the conv driver sends every conv down the general path (also when
//   XGRAD_CONV_GENERAL_PATH is set at start);
//   AVX-512 disallowed, the AVX2 tiles run (also when XGRAD_CONV_LOCAL_AVX2 is set).
void set_conv_local_fast_enabled(bool enabled);
bool conv_local_fast_enabled();
void set_conv_local_avx512_allowed(bool allowed);
bool conv_local_avx512_active();

}  // namespace xgrad::kernels
