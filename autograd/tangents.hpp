// Helpers for JVP rules (internal): an undefined tangent is zero, so sums and
// products skip it instead of materialising zeros.
#pragma once

#include "autograd/ops.hpp"
#include "core/tensor.hpp"

namespace xgrad::tangents {

// a + b where an undefined operand is zero (undefined when both are).
inline Tensor plus(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return add(a, b);
}

// t * factor(), or zero (undefined) without evaluating the factor when t is zero.
template <class F>
Tensor times(const Tensor& t, F&& factor) {
  return t.defined() ? mul(t, factor()) : Tensor();
}

// t, or zeros shaped and typed like `like` when t is zero.
inline Tensor or_zeros(const Tensor& t, const Tensor& like) {
  return t.defined() ? t : zeros(like.shape(), like.dtype());
}

}  // namespace xgrad::tangents
