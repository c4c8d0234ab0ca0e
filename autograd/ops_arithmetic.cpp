// Broadcasting binary ops, where, the operators and weak scalars, with their VJPs.
//
// A VJP returns the cotangent summed back to each input's shape (sum_to undoes the
// broadcast) and skips inputs that need no gradient (integer operands, constants).
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "autograd/tangents.hpp"
#include "core/error.hpp"
#include "core/kernels/elementwise.hpp"

namespace xgrad {

using kernels::Binary;
using tangents::plus;
using tangents::times;

namespace {

template <class F>
Tensor grad_for(const Tensor& input, F&& compute) {
  return input.requires_grad() ? sum_to(compute(), input.shape()) : Tensor();
}

Tensor zero_like_scalar(const Tensor& t) { return scalar(0.0, t.dtype()); }

// d(a + b) = da + db; d(a - b) = da - db.
Tensor add_jvp(const Grads&, const Grads& t, const Tensor&) { return plus(t[0], t[1]); }
Tensor sub_jvp(const Grads&, const Grads& t, const Tensor&) {
  return plus(t[0], t[1].defined() ? neg(t[1]) : Tensor());
}

}  // namespace

// With equal shapes (the common case) there is nothing to sum away, and a closure
// without the operands fits std::function's inline buffer: no allocation per op.
Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(Binary::Add, a, b);
  if (a.shape() == b.shape())
    return record("add", out, {a, b}, [](const Tensor& g, const Tensor&) -> Grads { return {g, g}; },
                  Saves::Nothing, add_jvp);
  return record("add", out, {a, b}, [a, b](const Tensor& g, const Tensor&) -> Grads {
    return {grad_for(a, [&] { return g; }), grad_for(b, [&] { return g; })};
  }, Saves::Nothing, add_jvp);
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(Binary::Sub, a, b);
  if (a.shape() == b.shape())
    return record("sub", out, {a, b}, [b_needs = b.requires_grad()](const Tensor& g, const Tensor&) -> Grads {
      return {g, b_needs ? neg(g) : Tensor()};
    }, Saves::Nothing, sub_jvp);
  return record("sub", out, {a, b}, [a, b](const Tensor& g, const Tensor&) -> Grads {
    return {grad_for(a, [&] { return g; }), grad_for(b, [&] { return neg(g); })};
  }, Saves::Nothing, sub_jvp);
}

Tensor mul(const Tensor& a, const Tensor& b) {
  return record("mul", kernels::binary(Binary::Mul, a, b), {a, b}, [a, b](const Tensor& g, const Tensor&) -> Grads {
    return {grad_for(a, [&] { return g * b; }), grad_for(b, [&] { return g * a; })};
  }, Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {  // product rule
    return plus(times(t[0], [&] { return b; }), times(t[1], [&] { return a; }));
  });
}

// d(a/b)/da = 1/b; d(a/b)/db = -a/b^2 = -(a/b)/b.
Tensor div(const Tensor& a, const Tensor& b) {
  return record("div", kernels::binary(Binary::Div, a, b), {a, b},
                [a, b](const Tensor& g, const Tensor& out) -> Grads {
                  return {grad_for(a, [&] { return g / b; }), grad_for(b, [&] { return -(g * out / b); })};
                },
                Saves::InputsAndOutput, [&](const Grads&, const Grads& t, const Tensor& out) {
                  return plus(t[0].defined() ? t[0] / b : Tensor(), t[1].defined() ? -(t[1] * out / b) : Tensor());
                });
}

// JAX's pow rules: d/da = b a^(b-1), taken as 0 where b == 0 (so 0^0 has slope 0);
// d/db = log(a) a^b, with log(0) replaced by 0 (the limit a^b log a -> 0 for b > 0).
Tensor pow(const Tensor& a, const Tensor& b) {
  return record("pow", kernels::binary(Binary::Pow, a, b), {a, b},
                [a, b](const Tensor& g, const Tensor& out) -> Grads {
                  return {grad_for(a, [&] {
                            const Tensor slope = b * pow(a, b - 1.0);
                            return g * where(equal(b, zero_like_scalar(b)), zero_like_scalar(slope), slope);
                          }),
                          grad_for(b, [&] {
                            const Tensor safe_a = where(equal(a, zero_like_scalar(a)), ones({}, a.dtype()), a);
                            return g * out * log(safe_a);
                          })};
                },
                Saves::InputsAndOutput, [&](const Grads&, const Grads& t, const Tensor& out) {
                  return plus(times(t[0], [&] {
                                const Tensor slope = b * pow(a, b - 1.0);
                                return where(equal(b, zero_like_scalar(b)), zero_like_scalar(slope), slope);
                              }),
                              times(t[1], [&] {
                                const Tensor safe_a = where(equal(a, zero_like_scalar(a)), ones({}, a.dtype()), a);
                                return out * log(safe_a);
                              }));
                });
}

Tensor pow(const Tensor& x, double exponent) {
  return record("pow", kernels::pow_scalar(x, exponent), {x}, [x, exponent](const Tensor& g, const Tensor&) -> Grads {
    if (exponent == 0.0) return {zeros_like(g)};
    return {g * (pow(x, exponent - 1.0) * exponent)};
  }, Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {
    return exponent == 0.0 ? Tensor() : t[0] * (pow(x, exponent - 1.0) * exponent);
  });
}

namespace {

// The tangent follows the selected operand; a tie averages both (the balanced rule).
Tensor extremum_jvp(const Grads& x, const Grads& t, const Tensor& out) {
  return plus(times(t[0], [&] { return kernels::tie_weight(x[0], out, x[1]); }),
              times(t[1], [&] { return kernels::tie_weight(x[1], out, x[0]); }));
}

}  // namespace

// Ties split the gradient evenly (JAX's balanced rule), so maximum(x, x) has slope 1.
Tensor maximum(const Tensor& a, const Tensor& b) {
  return record("maximum", kernels::binary(Binary::Maximum, a, b), {a, b},
                [a, b](const Tensor& g, const Tensor& out) -> Grads {
                  return {grad_for(a, [&] { return g * kernels::tie_weight(a, out, b); }),
                          grad_for(b, [&] { return g * kernels::tie_weight(b, out, a); })};
                },
                Saves::InputsAndOutput, extremum_jvp);
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  return record("minimum", kernels::binary(Binary::Minimum, a, b), {a, b},
                [a, b](const Tensor& g, const Tensor& out) -> Grads {
                  return {grad_for(a, [&] { return g * kernels::tie_weight(a, out, b); }),
                          grad_for(b, [&] { return g * kernels::tie_weight(b, out, a); })};
                },
                Saves::InputsAndOutput, extremum_jvp);
}

Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b) {
  return record("where", kernels::where(condition, a, b), {condition, a, b},
                [condition, a, b](const Tensor& g, const Tensor&) -> Grads {
                  return {Tensor(), grad_for(a, [&] { return where(condition, g, zero_like_scalar(g)); }),
                          grad_for(b, [&] { return where(condition, zero_like_scalar(g), g); })};
                }, Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor& out) {
                  if (!t[1].defined() && !t[2].defined()) return Tensor();
                  const Tensor zero = zero_like_scalar(out);
                  return where(condition, t[1].defined() ? t[1] : zero, t[2].defined() ? t[2] : zero);
                });
}

// d(t + s) = d(s + t) = g; d(t - s) = g, d(s - t) = -g; d(t s) = g s; d(t / s) = g / s;
// d(s / t)/dt = -s / t^2 = -(s / t) / t.
Tensor scalar_op(ScalarOp op, const Tensor& t, double s, bool s_is_floating, bool scalar_first) {
  switch (op) {
    case ScalarOp::Add:
      return record("add", kernels::binary_scalar(Binary::Add, t, s, s_is_floating, scalar_first), {t},
                    [](const Tensor& g, const Tensor&) -> Grads { return {g}; }, Saves::Nothing,
                    [](const Grads&, const Grads& tt, const Tensor&) { return tt[0]; });
    case ScalarOp::Sub:
      return record("sub", kernels::binary_scalar(Binary::Sub, t, s, s_is_floating, scalar_first), {t},
                    [scalar_first](const Tensor& g, const Tensor&) -> Grads { return {scalar_first ? neg(g) : g}; },
                    Saves::Nothing,
                    [&](const Grads&, const Grads& tt, const Tensor&) { return scalar_first ? neg(tt[0]) : tt[0]; });
    case ScalarOp::Mul:
      return record("mul", kernels::binary_scalar(Binary::Mul, t, s, s_is_floating, scalar_first), {t},
                    [s](const Tensor& g, const Tensor&) -> Grads { return {g * s}; }, Saves::Nothing,
                    [&](const Grads&, const Grads& tt, const Tensor&) { return tt[0] * s; });
    case ScalarOp::Div:
      if (!scalar_first)
        return record("div", kernels::binary_scalar(Binary::Div, t, s, s_is_floating, false), {t},
                      [s](const Tensor& g, const Tensor&) -> Grads { return {g / s}; }, Saves::Nothing,
                      [&](const Grads&, const Grads& tt, const Tensor&) { return tt[0] / s; });
      return record("div", kernels::binary_scalar(Binary::Div, t, s, s_is_floating, true), {t},
                    [t](const Tensor& g, const Tensor& out) -> Grads { return {-(g * out / t)}; },
                    Saves::InputsAndOutput,
                    [&](const Grads&, const Grads& tt, const Tensor& out) { return -(tt[0] * out / t); });
  }
  throw ValueError("scalar_op: unknown op");
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
