// The 2-D stride-1 form of the fast conv kernels (core/kernels/conv/conv_local_fast.hpp,
// conv_shared_fast.hpp), which the kernel tests write their cases in: one shape for
// both, turned into the ConvGeometry the kernels take.
#pragma once

#include <cstdint>
#include <vector>

#include "core/kernels/conv/conv_local_fast.hpp"
#include "core/kernels/conv/conv_shared_fast.hpp"

namespace test_support {

struct Conv2dFastShape {
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
  std::int64_t patch_size() const { return in_features * kernel_height * kernel_width; }  // C·kh·kw

  xgrad::kernels::ConvGeometry geometry() const {
    xgrad::kernels::ConvGeometry g;
    g.batch = batch;
    g.channels = in_features;
    g.in_spatial = {in_height, in_width};
    g.window = {kernel_height, kernel_width};
    g.strides = {1, 1};
    g.lhs_dilation = {1, 1};
    g.rhs_dilation = {dilation_height, dilation_width};
    g.pads = {{pad_top, pad_bottom}, {pad_left, pad_right}};
    g.out_spatial = {out_height(), out_width()};
    return g;
  }
  bool valid() const { return kernel_height >= 1 && kernel_width >= 1 && dilation_height >= 1 && dilation_width >= 1; }
};

inline bool conv_local2d_fast_supported(const Conv2dFastShape& s) {
  return s.valid() && xgrad::kernels::conv_local_fast_supported(s.geometry(), s.features);
}
inline void conv_local2d_forward_fast(const Conv2dFastShape& s, const float* x, const float* kernel,
                                      const float* bias, float* y) {
  xgrad::kernels::conv_local_forward_fast(s.geometry(), s.features, x, kernel, bias, y);
}
// As conv_local_backward_fast, except that d_x is accumulated into.
inline void conv_local2d_backward_fast(const Conv2dFastShape& s, const float* x, const float* kernel,
                                       const float* dy, float* d_x, float* d_kernel, float* d_bias) {
  std::vector<float> dx;
  if (d_x) dx.resize(static_cast<std::size_t>(s.batch * s.in_height * s.in_width * s.in_features));
  xgrad::kernels::conv_local_backward_fast(s.geometry(), s.features, x, kernel, dy, d_x ? dx.data() : nullptr,
                                           d_kernel, d_bias);
  for (std::size_t i = 0; i < dx.size(); ++i) d_x[i] += dx[i];
}

inline bool conv_shared2d_fast_supported(const Conv2dFastShape& s) {
  return s.valid() && xgrad::kernels::conv_shared_fast_supported(s.geometry(), s.features);
}
inline void conv_shared2d_forward_fast(const Conv2dFastShape& s, const float* x, const float* kernel,
                                       const float* bias, float* y) {
  xgrad::kernels::conv_shared_forward_fast(s.geometry(), s.features, x, kernel, bias, y);
}
inline void conv_shared2d_input_vjp_fast(const Conv2dFastShape& s, const float* dy, const float* kernel, float* d_x) {
  xgrad::kernels::conv_shared_input_vjp_fast(s.geometry(), s.features, dy, kernel, d_x);
}
inline void conv_shared2d_kernel_vjp_fast(const Conv2dFastShape& s, const float* x, const float* dy, float* d_kernel,
                                          float* d_bias) {
  xgrad::kernels::conv_shared_kernel_vjp_fast(s.geometry(), s.features, x, dy, d_kernel, d_bias);
}

}  // namespace test_support
