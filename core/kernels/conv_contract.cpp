#include "core/kernels/conv_contract.hpp"

#include "core/kernels/conv_gemm.hpp"

namespace xgrad::kernels {

// Per block b and group g the operands are:
//   A = patches block b, columns [g*Ig, (g+1)*Ig)       (rows x Ig, ld I)
//   B = kernel block b, columns [g*Fg, (g+1)*Fg)        (Ig x Fg, ld F)
//   Y = output block b, columns [g*Fg, (g+1)*Fg)        (rows x Fg, ld out_row_stride)

template <class T>
void contract_forward(const T* patches, const T* kernel, T* out, const ContractionLayout& l) {
  const std::int64_t Ig = l.patch_cols / l.groups, Fg = l.features / l.groups;
  for (std::int64_t b = 0; b < l.blocks; ++b) {
    const T* a = patches + b * l.rows * l.patch_cols;
    const T* k = kernel + b * l.kernel_block_stride;
    T* y = out + b * l.out_block_offset;
    for (std::int64_t g = 0; g < l.groups; ++g)
      conv_gemm<T>(false, false, l.rows, Fg, Ig, a + g * Ig, l.patch_cols, k + g * Fg, l.features, y + g * Fg,
                   l.out_row_stride);
  }
}

template <class T>
void contract_kernel_vjp(const T* patches, const T* g_out, T* dkernel, const ContractionLayout& l) {
  const std::int64_t Ig = l.patch_cols / l.groups, Fg = l.features / l.groups;
  for (std::int64_t b = 0; b < l.blocks; ++b) {
    const T* a = patches + b * l.rows * l.patch_cols;
    const T* gy = g_out + b * l.out_block_offset;
    T* dk = dkernel + b * l.kernel_block_stride;
    for (std::int64_t g = 0; g < l.groups; ++g)
      conv_gemm<T>(true, false, Ig, Fg, l.rows, a + g * Ig, l.patch_cols, gy + g * Fg, l.out_row_stride, dk + g * Fg,
                   l.features);
  }
}

template <class T>
void contract_patches_vjp(const T* g_out, const T* kernel, T* dpatches, const ContractionLayout& l) {
  const std::int64_t Ig = l.patch_cols / l.groups, Fg = l.features / l.groups;
  for (std::int64_t b = 0; b < l.blocks; ++b) {
    const T* gy = g_out + b * l.out_block_offset;
    const T* k = kernel + b * l.kernel_block_stride;
    T* dp = dpatches + b * l.rows * l.patch_cols;
    for (std::int64_t g = 0; g < l.groups; ++g)
      conv_gemm<T>(false, true, l.rows, Ig, Fg, gy + g * Fg, l.out_row_stride, k + g * Fg, l.features, dp + g * Ig,
                   l.patch_cols);
  }
}

template void contract_forward<float>(const float*, const float*, float*, const ContractionLayout&);
template void contract_forward<double>(const double*, const double*, double*, const ContractionLayout&);
template void contract_kernel_vjp<float>(const float*, const float*, float*, const ContractionLayout&);
template void contract_kernel_vjp<double>(const double*, const double*, double*, const ContractionLayout&);
template void contract_patches_vjp<float>(const float*, const float*, float*, const ContractionLayout&);
template void contract_patches_vjp<double>(const double*, const double*, double*, const ContractionLayout&);

}  // namespace xgrad::kernels
