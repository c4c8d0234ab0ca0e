// The contraction of a patch matrix with a conv kernel, and its two adjoints, as
// blocks of GEMMs (float/double buffers).
//
// Local conv: one block per output position o, Y[:, o, :] = P_o (N x I) * K_o (I x F),
// written in place into Y (N, O..., F) with leading dimension P*F.
// Shared conv: one block of N*P rows, Y = P (N*P x I) * W (I x F).
// With G feature groups, output features [g*F/G, (g+1)*F/G) read only patch
// columns [g*I/G, (g+1)*I/G) (channel-major patches keep a group's columns
// together) and the kernel block is (I/G x F).
#pragma once

#include <cstdint>

namespace xgrad::kernels {

struct ContractionLayout {
  std::int64_t blocks = 1;               // GEMM blocks
  std::int64_t rows = 0;                 // patch rows per block
  std::int64_t patch_cols = 0;           // I = C*S
  std::int64_t features = 0;             // F
  std::int64_t groups = 1;               // G
  std::int64_t kernel_block_stride = 0;  // elements between blocks' (I/G x F) kernels
  std::int64_t out_block_offset = 0;     // offset of block b's first output element, per block
  std::int64_t out_row_stride = 0;       // leading dimension of the output (and of its cotangent)
};

// out = patches . kernel (every output element written).
template <class T>
void contract_forward(const T* patches, const T* kernel, T* out, const ContractionLayout& l);

// dkernel = patches^T . g, per block and group (every kernel element written).
template <class T>
void contract_kernel_vjp(const T* patches, const T* g, T* dkernel, const ContractionLayout& l);

// dpatches = g . kernel^T, per block and group (every patch element written).
template <class T>
void contract_patches_vjp(const T* g, const T* kernel, T* dpatches, const ContractionLayout& l);

}  // namespace xgrad::kernels
