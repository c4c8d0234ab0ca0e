// Internal (not installed): a max or min pool's selection as differentiable ops, for
// ops that select like pool() without calling it (the conv + max pool of
// autograd/ops_conv.cpp, whose kernel selects while it convolves).
#pragma once

#include <memory>

#include "core/kernels/pool.hpp"
#include "core/tensor.hpp"

namespace xgrad {

// Zeros shaped like the pool's input with each output's value g at the element its
// window selected (`indices`: pool_select's flat indices): the VJP of a max/min pool.
// Recorded, with gather_at as its VJP, so gradients of any order are available.
Tensor scatter_to(const Tensor& g, const Tensor& indices, const std::shared_ptr<const kernels::PoolGeometry>& geometry);
// x at the selected elements, shaped like `indices`: the transpose of scatter_to (and
// a max/min pool's JVP). Recorded, with scatter_to as its VJP.
Tensor gather_at(const Tensor& x, const Tensor& indices, const std::shared_ptr<const kernels::PoolGeometry>& geometry);

}  // namespace xgrad
