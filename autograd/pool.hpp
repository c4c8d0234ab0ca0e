// Differentiable window pooling over [batch, spatial..., channels] (one batch
// axis, channels last; layers/pooling.hpp adds Flax's batch-dim handling and
// padding strings). Max/min send each output's gradient to the first extreme
// element of its window; mean spreads it evenly over the window.
#pragma once

#include "core/padding.hpp"
#include "core/tensor.hpp"

namespace xgrad {

// The reduction of a pooling window: its maximum, minimum or mean.
enum class PoolReduction { Max, Min, Mean };

// `pads` holds (lo, hi) per spatial dim. For Mean, count_include_pad divides by
// the full window size; otherwise by the number of non-padding elements.
Tensor pool(const Tensor& x, PoolReduction reduction, const Shape& window, const Shape& strides,
            const PadPairs& pads, bool count_include_pad = true);

}  // namespace xgrad
