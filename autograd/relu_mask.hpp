// Internal (not installed): relu's VJP as a differentiable op, for ops that apply a
// relu inside their own kernel (the conv + max pool + relu of autograd/ops_conv.cpp).
#pragma once

#include "core/tensor.hpp"

namespace xgrad {

// g where out > 0, else zero: relu's VJP given its output (NaN gives zero). Recorded,
// with the same mask as its own VJP and JVP, so gradients of any order are available.
Tensor relu_mask(const Tensor& g, const Tensor& out);

}  // namespace xgrad
