// Per-thread scratch buffers for the conv kernels, kept between calls: a training
// step reuses the pages of the previous one instead of touching fresh memory
// (~2.2 us per 4 KiB page on this machine). The blocks come from the caching
// allocator (core/allocator.hpp): a buffer grows to the largest request seen on
// its thread, and release_cached_memory() makes every thread give its blocks back
// at its next request.
#pragma once

#include <cstddef>

namespace xgrad::kernels {

// Kernels use distinct slots for buffers that are alive at the same time.
// PatchBlock, KernelBlock, PatchGradBlock and Accumulator are the per-thread buffers of the
// local conv's per-position pass (core/kernels/conv/conv_local_general.cpp);
// KernelResult and Bias hold the kernel and bias (or their gradients) next to Result;
// PositionOffsets holds the shared conv kernel gradient's table of patch origins;
// PooledRows the conv outputs of one pooled row (conv_shared_forward_max_pool_fast) or
// of one pooled position (conv_local_forward_max_pool_fast).
enum class ConvScratch {
  Patches,
  Kernel,
  Cotangent,
  Result,
  KernelResult,
  Bias,
  PatchBlock,
  KernelBlock,
  PatchGradBlock,
  Accumulator,
  Input,
  PositionOffsets,
  PooledRows,
  Count
};

// At least `count` elements of T, uninitialised, valid until the next request
// for the same slot on this thread.
template <class T>
T* conv_scratch(ConvScratch slot, std::size_t count);

}  // namespace xgrad::kernels
