#include "core/kernels/conv/conv_contract.hpp"

#include "core/kernels/gemm.hpp"

namespace xgrad::kernels {

// Per group g the operands are (row-major, leading dimensions):
//   A = patches, columns [g*Ig, (g+1)*Ig)   (rows x Ig, ld I)
//   B = kernel, columns [g*Fg, (g+1)*Fg)    (Ig x Fg, ld F)
//   Y = output, columns [g*Fg, (g+1)*Fg)    (rows x Fg, ld F)

template <class T>
void contract_forward(const T* patches, const T* kernel, T* out, const ContractionLayout& l) {
  const std::int64_t Ig = l.patch_cols / l.groups, Fg = l.features / l.groups;
  for (std::int64_t g = 0; g < l.groups; ++g)
    gemm<T>(false, false, l.rows, Fg, Ig, patches + g * Ig, l.patch_cols, kernel + g * Fg, l.features,
                 out + g * Fg, l.features);
}

template <class T>
void contract_kernel_vjp(const T* patches, const T* g_out, T* dkernel, const ContractionLayout& l) {
  const std::int64_t Ig = l.patch_cols / l.groups, Fg = l.features / l.groups;
  for (std::int64_t g = 0; g < l.groups; ++g)
    gemm<T>(true, false, Ig, Fg, l.rows, patches + g * Ig, l.patch_cols, g_out + g * Fg, l.features,
                 dkernel + g * Fg, l.features);
}

template <class T>
void contract_patches_vjp(const T* g_out, const T* kernel, T* dpatches, const ContractionLayout& l) {
  const std::int64_t Ig = l.patch_cols / l.groups, Fg = l.features / l.groups;
  for (std::int64_t g = 0; g < l.groups; ++g)
    gemm<T>(false, true, l.rows, Ig, Fg, g_out + g * Fg, l.features, kernel + g * Fg, l.features,
                 dpatches + g * Ig, l.patch_cols);
}

template void contract_forward<float>(const float*, const float*, float*, const ContractionLayout&);
template void contract_forward<double>(const double*, const double*, double*, const ContractionLayout&);
template void contract_kernel_vjp<float>(const float*, const float*, float*, const ContractionLayout&);
template void contract_kernel_vjp<double>(const double*, const double*, double*, const ContractionLayout&);
template void contract_patches_vjp<float>(const float*, const float*, float*, const ContractionLayout&);
template void contract_patches_vjp<double>(const double*, const double*, double*, const ContractionLayout&);

}  // namespace xgrad::kernels
