// The cotangent of a conv + max pool (+ relu) pass's pooled output, as the shared and
// the local conv's backward passes take it (conv_shared_fast.hpp, conv_local_fast.hpp).
// Internal to core/kernels.
#pragma once

#include <bit>
#include <cstdint>

namespace xgrad::kernels {

// dy of the conv is zero but g[j] at index[j] (the pool's VJP), g[j] first masked by
// relu_out[j] > 0 (relu_grad's mask: NaN gives zero) when the pass applied a relu;
// else relu_out is null.
struct PooledCotangent {
  const float* g = nullptr;
  const std::int32_t* index = nullptr;
  const float* relu_out = nullptr;
  std::int64_t window_h = 1, window_w = 1;  // the pooling window

  // Writes entries [begin, end) into dy (zeroed by the caller), whose first element is
  // the conv output's element `base`.
  void scatter(std::int64_t begin, std::int64_t end, std::int64_t base, float* dy) const {
    if (!relu_out) {
      for (std::int64_t j = begin; j < end; ++j) dy[index[j] - base] = g[j];
      return;
    }
    // The mask as bits (all ones where out > 0): as a select, GCC made it a branch
    // mispredicted on about half the elements (the main job's backward 4 % slower).
    for (std::int64_t j = begin; j < end; ++j) {
      const std::uint32_t keep = 0u - static_cast<std::uint32_t>(relu_out[j] > 0.0f);
      dy[index[j] - base] = std::bit_cast<float>(std::bit_cast<std::uint32_t>(g[j]) & keep);
    }
  }
};

}  // namespace xgrad::kernels
