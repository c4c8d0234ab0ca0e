// Elementwise ops and their VJPs.
#include <fmt/format.h>

#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "core/kernels/elementwise.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad {

using kernels::Binary;

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(Binary::Add, a, b);
  return record("add", out, {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g, const Tensor&) -> Grads {
    return {sum_to(g, sa), sum_to(g, sb)};
  }, Saves::Nothing);
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(Binary::Sub, a, b);
  return record("sub", out, {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g, const Tensor&) -> Grads {
    return {sum_to(g, sa), sum_to(neg(g), sb)};
  }, Saves::Nothing);
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(Binary::Mul, a, b);
  return record("mul", out, {a, b}, [a, b](const Tensor& g, const Tensor&) -> Grads {
    return {sum_to(g * b, a.shape()), sum_to(g * a, b.shape())};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(Binary::Div, a, b);
  // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -out/b
  return record("div", out, {a, b}, [a, b](const Tensor& g, const Tensor&) -> Grads {
    const Tensor ga = g / b;
    return {sum_to(ga, a.shape()), sum_to(neg(ga * a / b), b.shape())};
  });
}

Tensor neg(const Tensor& x) {
  Tensor out = kernels::binary(Binary::Mul, x, weak_scalar(-1.0, false, x));
  return record("neg", out, {x}, [](const Tensor& g, const Tensor&) -> Grads { return {neg(g)}; }, Saves::Nothing);
}

Tensor cast(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = kernels::cast(x, dtype);
  if (!is_floating(dtype) || !is_floating(x.dtype())) return out;  // no gradient through int/bool casts
  return record("cast", out, {x}, [from = x.dtype()](const Tensor& g, const Tensor&) -> Grads {
    return {cast(g, from)};
  }, Saves::Nothing);
}

Tensor weak_scalar(double value, bool is_floating_scalar, const Tensor& like) {
  return scalar(value, promote_with_scalar(like.dtype(), is_floating_scalar));
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }

}  // namespace xgrad
