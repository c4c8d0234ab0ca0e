// Direct, register-tiled AVX2/FMA (and AVX-512) kernels for the common case of a 2-D locally
// connected (unshared) convolution: float32, NHWC, stride 1, already padded input
// (VALID here), any kernel size and kernel dilation, F a multiple of 8.
// Semantics: spec/convlocal.md §5 (Flax ConvLocal; patch index channel-major).
// Tape-free; the caller checks conv_local2d_fast_supported() and otherwise takes
// the general (patches + per-position GEMM) path.
#pragma once

#include <cstdint>

namespace xgrad::kernels {

struct ConvLocal2dFastShape {
  std::int64_t batch = 1;                        // N
  std::int64_t in_height = 1, in_width = 1;      // Hp, Wp (after padding)
  std::int64_t in_features = 1;                  // C
  std::int64_t kernel_height = 1, kernel_width = 1;      // kh, kw
  std::int64_t dilation_height = 1, dilation_width = 1;  // dh, dw (kernel / rhs dilation)
  std::int64_t features = 8;                     // F

  std::int64_t out_height() const { return in_height - (kernel_height - 1) * dilation_height; }
  std::int64_t out_width() const { return in_width - (kernel_width - 1) * dilation_width; }
  std::int64_t patch_size() const { return in_features * kernel_height * kernel_width; }  // C·kh·kw
};

// True when the CPU has AVX2 and FMA, every size is positive, the output is
// non-empty and F % 8 == 0.
bool conv_local2d_fast_supported(const ConvLocal2dFastShape& shape);

// A process-wide switch for benchmarks and tests: disabled, the conv driver sends
// every local conv down the general path. Starts disabled when XGRAD_CONV_GENERAL_PATH is set.
void set_conv_local_fast_enabled(bool enabled);
bool conv_local_fast_enabled();

// The kernels use AVX-512 tiles where the CPU has AVX-512F, else AVX2 ones.
// Disallowing AVX-512 (for tests and benchmarks; also XGRAD_CONV_LOCAL_AVX2 set at
// start) forces the AVX2 tiles.
void set_conv_local_avx512_allowed(bool allowed);
bool conv_local_avx512_active();

// Layouts (row-major):  x (N, Hp, Wp, C)   kernel (OH, OW, C·kh·kw, F) with patch
// index i = c·kh·kw + ky·kw + kx   bias (OH, OW, F) or null   y (N, OH, OW, F).
//   y[n,oy,ox,f] = bias[oy,ox,f] + Σ_{c,ky,kx} x[n, oy+ky·dh, ox+kx·dw, c] · kernel[oy,ox,i,f]
void conv_local2d_forward_fast(const ConvLocal2dFastShape& shape, const float* x, const float* kernel,
                               const float* bias, float* y);

// Given dy = ∂L/∂y (N, OH, OW, F):
//   d_bias[oy,ox,f]     = Σ_n dy[n,oy,ox,f]                              (overwritten)
//   d_kernel[oy,ox,i,f] = Σ_n patch[n,oy,ox,i] · dy[n,oy,ox,f]           (overwritten)
//   d_x                += scatter of Σ_f kernel[oy,ox,i,f] · dy[n,oy,ox,f]  (accumulated: pass a
//                         zeroed (N, Hp, Wp, C) buffer for a plain gradient)
// Any of d_x, d_kernel, d_bias may be null when not needed (kernel may then be null
// too if d_x is). Runs on xgrad::num_threads() threads.
void conv_local2d_backward_fast(const ConvLocal2dFastShape& shape, const float* x, const float* kernel,
                                const float* dy, float* d_x, float* d_kernel, float* d_bias);

}  // namespace xgrad::kernels
