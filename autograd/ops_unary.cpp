// Unary elementwise ops, clip and cast, with their VJPs.
//
// VJPs use the op's output where that is cheaper (exp, sqrt, tanh, sigmoid) and
// are written with differentiable ops, so create_graph differentiates them again.
#include <numbers>

#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "autograd/relu_mask.hpp"
#include "autograd/tangents.hpp"
#include "core/kernels/elementwise.hpp"

namespace xgrad {

using kernels::Unary;

namespace {

Tensor zero_like_scalar(const Tensor& t) { return scalar(0.0, t.dtype()); }

}  // namespace

Tensor neg(const Tensor& x) {
  return record("neg", kernels::unary(Unary::Neg, x), {x}, [](const Tensor& g, const Tensor&) -> Grads {
    return {neg(g)};
  }, Saves::Nothing, [](const Grads&, const Grads& t, const Tensor&) -> Tensor {
    return neg(t[0]);
  });
}

Tensor exp(const Tensor& x) {
  return record("exp", kernels::unary(Unary::Exp, x), {x}, [](const Tensor& g, const Tensor& out) -> Grads {
    return {g * out};
  }, Saves::Output, [](const Grads&, const Grads& t, const Tensor& out) -> Tensor {
    return t[0] * out;
  });
}

Tensor log(const Tensor& x) {
  return record("log", kernels::unary(Unary::Log, x), {x}, [x](const Tensor& g, const Tensor&) -> Grads {
    return {g / x};
  }, Saves::Inputs, [](const Grads& in, const Grads& t, const Tensor&) -> Tensor {
    return t[0] / in[0];
  });
}

Tensor sqrt(const Tensor& x) {
  return record("sqrt", kernels::unary(Unary::Sqrt, x), {x}, [](const Tensor& g, const Tensor& out) -> Grads {
    return {g / (out * 2.0)};
  }, Saves::Output, [](const Grads&, const Grads& t, const Tensor& out) -> Tensor {
    return t[0] / (out * 2.0);
  });
}

// d x^(-1/2) / dx = -1/2 x^(-3/2) = -1/2 rsqrt(x) / x.
Tensor rsqrt(const Tensor& x) {
  return record("rsqrt", kernels::unary(Unary::Rsqrt, x), {x}, [x](const Tensor& g, const Tensor& out) -> Grads {
    return {g * (out / x * -0.5)};
  }, Saves::InputsAndOutput, [](const Grads& in, const Grads& t, const Tensor& out) -> Tensor {
    return t[0] * (out / in[0] * -0.5);
  });
}

Tensor abs(const Tensor& x) {
  return record("abs", kernels::unary(Unary::Abs, x), {x}, [x](const Tensor& g, const Tensor&) -> Grads {
    return {g * sign(x)};
  }, Saves::Inputs, [](const Grads& in, const Grads& t, const Tensor&) -> Tensor {
    return t[0] * sign(in[0]);
  });
}

Tensor square(const Tensor& x) {
  return record("square", kernels::unary(Unary::Square, x), {x}, [x](const Tensor& g, const Tensor&) -> Grads {
    return {g * (x * 2.0)};
  }, Saves::Inputs, [](const Grads& in, const Grads& t, const Tensor&) -> Tensor {
    return t[0] * (in[0] * 2.0);
  });
}

Tensor sign(const Tensor& x) { return kernels::unary(Unary::Sign, x); }

Tensor sin(const Tensor& x) {
  return record("sin", kernels::unary(Unary::Sin, x), {x}, [x](const Tensor& g, const Tensor&) -> Grads {
    return {g * cos(x)};
  }, Saves::Inputs, [](const Grads& in, const Grads& t, const Tensor&) -> Tensor {
    return t[0] * cos(in[0]);
  });
}

Tensor cos(const Tensor& x) {
  return record("cos", kernels::unary(Unary::Cos, x), {x}, [x](const Tensor& g, const Tensor&) -> Grads {
    return {neg(g * sin(x))};
  }, Saves::Inputs, [](const Grads& in, const Grads& t, const Tensor&) -> Tensor {
    return neg(t[0] * sin(in[0]));
  });
}

Tensor tanh(const Tensor& x) {
  return record("tanh", kernels::unary(Unary::Tanh, x), {x}, [](const Tensor& g, const Tensor& out) -> Grads {
    return {g * (1.0 - square(out))};
  }, Saves::Output, [](const Grads&, const Grads& t, const Tensor& out) -> Tensor {
    return t[0] * (1.0 - square(out));
  });
}

Tensor sigmoid(const Tensor& x) {
  return record("sigmoid", kernels::unary(Unary::Sigmoid, x), {x}, [](const Tensor& g, const Tensor& out) -> Grads {
    return {g * (out * (1.0 - out))};
  }, Saves::Output, [](const Grads&, const Grads& t, const Tensor& out) -> Tensor {
    return t[0] * (out * (1.0 - out));
  });
}

// g masked by out > 0 in one pass. Linear in g, and the mask's derivative is 0
// almost everywhere, so its own VJP is the same mask (second order works).
Tensor relu_mask(const Tensor& g, const Tensor& out) {
  if (g.shape() != out.shape() || g.dtype() != out.dtype())
    return where(greater(out, zero_like_scalar(out)), g, zero_like_scalar(g));
  return record("relu_mask", kernels::relu_grad(g, out), {g},
                [out](const Tensor& gg, const Tensor&) -> Grads { return {relu_mask(gg, out)}; }, Saves::Inputs,
                [&](const Grads&, const Grads& t, const Tensor&) { return relu_mask(t[0], out); });
}

// Slope 0 at x = 0, as jax.nn.relu.
Tensor relu(const Tensor& x) {
  // Forward mode, output not on the tape: the rule t * (x > 0) is deferred (the
  // tangent is t masked by the output > 0), so a pool that follows masks only what it
  // selects and t * (x > 0) is never written whole.
  if (const Tensor t = forward_ad::fusable_tangent(x);
      t.defined() && !(GradMode::is_enabled() && x.requires_grad()) && t.shape() == x.shape() &&
      t.dtype() == x.dtype() && (x.dtype() == DType::Float32 || x.dtype() == DType::Float64)) {
    Tensor out = forward_ad::record_with_tangent("relu", kernels::unary(Unary::Relu, x), {x},
                                                 [](const Tensor& g, const Tensor& out) -> Grads {
                                                   return {relu_mask(g, out)};
                                                 }, Saves::Output, Tensor());
    forward_ad::set_tangent_masked_by_positive(out, t);
    return out;
  }
  // Otherwise the output and its tangent from one pass over x and its tangent.
  if (const Tensor t = forward_ad::fusable_tangent(x); t.defined())
    if (auto both = kernels::relu_with_tangent(x, t)) {
      return forward_ad::record_with_tangent("relu", std::move(both->first), {x},
                                             [](const Tensor& g, const Tensor& out) -> Grads {
                                               return {relu_mask(g, out)};
                                             }, Saves::Output, both->second);
    }
  return record("relu", kernels::unary(Unary::Relu, x), {x}, [](const Tensor& g, const Tensor& out) -> Grads {
    return {relu_mask(g, out)};
  }, Saves::Output, [](const Grads&, const Grads& t, const Tensor& out) -> Tensor {
    return relu_mask(t[0], out);
  });
}

Tensor softplus(const Tensor& x) {
  return record("softplus", kernels::unary(Unary::Softplus, x), {x}, [x](const Tensor& g, const Tensor&) -> Grads {
    return {g * sigmoid(x)};
  }, Saves::Inputs, [](const Grads& in, const Grads& t, const Tensor&) -> Tensor {
    return t[0] * sigmoid(in[0]);
  });
}

// Tanh form: gelu(x) = x (1 + tanh(u)) / 2 = x s, with u = c (x + k x^3), c = sqrt(2/pi),
// k = 0.044715, s = sigmoid(2u) and q = s (1 - s) (so 1 - tanh(u)^2 = 4q):
//   gelu'(x)  = s + 2c x q (1 + 3k x^2),
//   gelu''(x) = q (4c (1 + 6k x^2) + 4c^2 x (1 + 3k x^2)^2 (1 - 2s)).
// Exact form: gelu(x) = x Phi(x), Phi(x) = (1 + erf(x/sqrt 2))/2, phi(x) = exp(-x^2/2)/sqrt(2 pi):
//   gelu'(x)  = Phi(x) + x phi(x),
//   gelu''(x) = phi(x) (2 - x^2).
// gelu' is one fused kernel (the first-order hot path), recorded as an op whose own
// VJP, gelu'', is written with differentiable ops for higher orders.
namespace {

Tensor gelu_derivative(const Tensor& x, bool approximate) {
  constexpr double c = std::numbers::sqrt2 * std::numbers::inv_sqrtpi;
  constexpr double k = 0.044715;
  if (approximate) {
    return record("gelu_derivative", kernels::unary(Unary::GeluTanhDerivative, x), {x},
                  [x](const Tensor& g, const Tensor&) -> Grads {
                    const Tensor x2 = square(x);
                    const Tensor s = sigmoid((x + x * x2 * k) * (2.0 * c));
                    const Tensor slope = 1.0 + x2 * (3.0 * k);  // u'(x) / c
                    const Tensor bracket =
                        (1.0 + x2 * (6.0 * k)) * (4.0 * c) + x * square(slope) * (1.0 - s * 2.0) * (4.0 * c * c);
                    return {g * (s * (1.0 - s) * bracket)};
                  }, Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {
                    const Tensor x2 = square(x);
                    const Tensor s = sigmoid((x + x * x2 * k) * (2.0 * c));
                    const Tensor slope = 1.0 + x2 * (3.0 * k);
                    const Tensor bracket =
                        (1.0 + x2 * (6.0 * k)) * (4.0 * c) + x * square(slope) * (1.0 - s * 2.0) * (4.0 * c * c);
                    return t[0] * (s * (1.0 - s) * bracket);
                  });
  }
  return record("gelu_derivative", kernels::unary(Unary::GeluErfDerivative, x), {x},
                [x](const Tensor& g, const Tensor&) -> Grads {
                  const Tensor x2 = square(x);
                  return {g * (exp(x2 * -0.5) * (0.5 * c) * (2.0 - x2))};  // 1/sqrt(2 pi) = c/2
                }, Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {
                  const Tensor x2 = square(x);
                  return t[0] * (exp(x2 * -0.5) * (0.5 * c) * (2.0 - x2));
                });
}

}  // namespace

Tensor gelu(const Tensor& x, bool approximate) {
  return record("gelu", kernels::unary(approximate ? Unary::GeluTanh : Unary::GeluErf, x), {x},
                [x, approximate](const Tensor& g, const Tensor&) -> Grads {
                  return {g * gelu_derivative(x, approximate)};
                }, Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {
                  return t[0] * gelu_derivative(x, approximate);
                });
}

// jnp.clip is minimum(maximum(x, lo), hi), and maximum and minimum split a tie's
// gradient evenly: the slope is 1 strictly inside (lo, hi), 1/2 on a bound, 1/4
// where lo == x == hi, and 0 outside, for NaN, and everywhere when lo > hi (the
// result is then hi whatever x).
Tensor clip(const Tensor& x, double lo, double hi) {
  return record("clip", kernels::clip(x, lo, hi), {x}, [x, lo, hi](const Tensor& g, const Tensor& out) -> Grads {
    // The bounds as the forward compared them: weak scalars, in x's dtype.
    const Tensor low = scalar(lo, x.dtype()), high = scalar(hi, x.dtype());
    const Tensor raised = kernels::binary(kernels::Binary::Maximum, x, low);
    return {g * (kernels::tie_weight(x, raised, low) * kernels::tie_weight(raised, out, high))};
  }, Saves::InputsAndOutput, [&](const Grads&, const Grads& t, const Tensor& out) {
    const Tensor low = scalar(lo, x.dtype()), high = scalar(hi, x.dtype());
    const Tensor raised = kernels::binary(kernels::Binary::Maximum, x, low);
    return t[0] * (kernels::tie_weight(x, raised, low) * kernels::tie_weight(raised, out, high));
  });
}

Tensor cast(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = kernels::cast(x, dtype);
  if (!is_floating(dtype) || !is_floating(x.dtype())) return out;  // no gradient through int/bool casts
  return record("cast", out, {x}, [from = x.dtype()](const Tensor& g, const Tensor&) -> Grads {
    return {cast(g, from)};
  }, Saves::Nothing, [&](const Grads&, const Grads& t, const Tensor&) { return cast(t[0], dtype); });
}

}  // namespace xgrad
