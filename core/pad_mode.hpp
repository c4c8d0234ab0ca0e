// How pad() fills the new border (see autograd/ops.hpp: pad).
#pragma once

namespace xgrad {

// Constant: a fixed value. Wrap: periodic, x[(j - lo) mod M]. Reflect: mirrored
// without repeating the edge (period 2(M - 1)). Edge: the nearest edge element.
enum class PadMode { Constant, Wrap, Reflect, Edge };

}  // namespace xgrad
