// Patch extraction (im2col) and its adjoint (col2im) on raw buffers.
//
// A patch row holds, for one (batch entry b, output position o), the C*S input
// values its window reads, channel-major: column c*S + r, r the row-major ravel
// of the window offset (docs/convlocal.md §5.2). Padding and lhs-dilation holes read as zero.
#pragma once

#include <cstdint>
#include <vector>

#include "core/kernels/conv/conv_geometry.hpp"

namespace xgrad::kernels {

// The (N, O..., C*S) patch matrix of conv_general_dilated_patches and of the
// shared conv's one GEMM: patches[b*P + o][c*S + r] = x[b, source(o, r), c] (0 where
// the table says -1), converted from T to A. `table` is patch_source_table(g).
template <class T, class A>
void extract_patches(const T* x, const ConvGeometry& g, const std::vector<std::int64_t>& table, A* patches);

// The adjoint: dx[b, source(o, r), c] += patches[b*P + o][c*S + r]; entries that
// read padding or dilation holes are dropped. dx is not cleared first.
template <class A>
void scatter_add_patches(const A* patches, const ConvGeometry& g, const std::vector<std::int64_t>& table,
                         A* dx);

// One output position's N patch rows (row b = patch row (b, o)), for the local
// conv's per-position pass.
template <class T, class A>
void extract_position_patches(const T* x, const ConvGeometry& g, const std::vector<std::int64_t>& table,
                              std::int64_t o, A* block);

// The adjoint of extract_position_patches: scatter-adds `block` into dx.
template <class A>
void scatter_add_position_patches(const A* block, const ConvGeometry& g, const std::vector<std::int64_t>& table,
                                  std::int64_t o, A* dx);

}  // namespace xgrad::kernels
