// The contraction of a batch-major patch matrix with a shared conv kernel, and its
// two adjoints, as GEMMs (float/double buffers): Y = P (N*P x I) * W (I x F).
// With G feature groups, output features [g*F/G, (g+1)*F/G) read only patch
// columns [g*I/G, (g+1)*I/G) (channel-major patches keep a group's columns
// together) and the kernel is (I/G x F): one GEMM per group.
// (The local conv contracts per output position: conv_local_general.*.)
#pragma once

#include <cstdint>

namespace xgrad::kernels {

struct ContractionLayout {
  std::int64_t rows = 0;        // patch rows
  std::int64_t patch_cols = 0;  // I = C*S
  std::int64_t features = 0;    // F
  std::int64_t groups = 1;      // G
};

// out = patches . kernel (every output element written).
template <class T>
void contract_forward(const T* patches, const T* kernel, T* out, const ContractionLayout& l);

// dkernel = patches^T . g, per group (every kernel element written).
template <class T>
void contract_kernel_vjp(const T* patches, const T* g, T* dkernel, const ContractionLayout& l);

// dpatches = g . kernel^T, per group (every patch element written).
template <class T>
void contract_patches_vjp(const T* g, const T* kernel, T* dpatches, const ContractionLayout& l);

}  // namespace xgrad::kernels
