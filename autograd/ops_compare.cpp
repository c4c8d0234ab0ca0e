// Comparisons and logical_not: Bool results, never recorded (no gradient).
#include "autograd/ops.hpp"
#include "core/kernels/elementwise.hpp"

namespace xgrad {

using kernels::Compare;

Tensor equal(const Tensor& a, const Tensor& b) { return kernels::compare(Compare::Equal, a, b); }
Tensor not_equal(const Tensor& a, const Tensor& b) { return kernels::compare(Compare::NotEqual, a, b); }
Tensor less(const Tensor& a, const Tensor& b) { return kernels::compare(Compare::Less, a, b); }
Tensor less_equal(const Tensor& a, const Tensor& b) { return kernels::compare(Compare::LessEqual, a, b); }
Tensor greater(const Tensor& a, const Tensor& b) { return kernels::compare(Compare::Greater, a, b); }
Tensor greater_equal(const Tensor& a, const Tensor& b) { return kernels::compare(Compare::GreaterEqual, a, b); }
Tensor logical_not(const Tensor& a) { return kernels::unary(kernels::Unary::LogicalNot, a); }

}  // namespace xgrad
