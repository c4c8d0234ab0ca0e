#include "layers/matmul.hpp"

#include "autograd/ops.hpp"

namespace xgrad::nn {

Tensor matmul(const Tensor& a, const Tensor& b, Precision precision) {
  const DType d = promote_types(a.dtype(), b.dtype());
  if (precision != Precision::Highest || d == DType::Float64 || !is_floating(d)) return xgrad::matmul(a, b);
  return cast(xgrad::matmul(cast(a, DType::Float64), cast(b, DType::Float64)), d);
}

}  // namespace xgrad::nn
