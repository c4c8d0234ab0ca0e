// Define a differentiable function two ways and check both with gradcheck.
//
// 1. Composed from ops: the tape differentiates it for free, in reverse and
//    forward mode.
// 2. A new primitive with its own derivative, through the public custom-derivative
//    API (autograd/custom_derivatives.hpp, as jax.custom_vjp / jax.custom_jvp):
//    custom_vjp gives it a backward, custom_jvp a forward rule that drives both
//    modes. gradcheck compares the rules with central differences in float64
//    (check_forward_ad the JVP); a wrong rule is caught and the report names the
//    worst entry.
#include <fmt/format.h>

#include "xgrad.hpp"

using namespace xgrad;

// Swish-like gate, composed from existing ops: f(x, w) = x * sigmoid(w * x).
Tensor gated(const Tensor& x, const Tensor& w) { return x * sigmoid(w * x); }

// log(1 + x^2) as a primitive with a hand-written VJP: fwd keeps x as the residual,
// bwd gives d/dx = 2x / (1 + x^2) times the cotangent. bwd is written with ops, so
// second derivatives go through it too.
MultiFunction log1p_square_vjp(double slope_factor) {
  return custom_vjp(
      [](const std::vector<Tensor>& in) {
        return VjpForward{.outputs = {log(1.0 + in[0] * in[0])}, .residuals = {in[0]}};
      },
      [slope_factor](const std::vector<Tensor>& residuals, const std::vector<Tensor>& cotangents) {
        const Tensor& x = residuals[0];
        return std::vector<Tensor>{cotangents[0] * (slope_factor * x / (1.0 + x * x))};
      });
}

// The same primitive with a JVP rule instead: forward mode uses it directly, and
// reverse mode its transpose.
MultiFunction log1p_square_jvp(double slope_factor) {
  return custom_jvp([](const std::vector<Tensor>& in) { return std::vector<Tensor>{log(1.0 + in[0] * in[0])}; },
                    [slope_factor](const std::vector<Tensor>& x, const std::vector<Tensor>& t) {
                      return JvpResult{.outputs = {log(1.0 + x[0] * x[0])},
                                       .output_tangents = {t[0] * (slope_factor * x[0] / (1.0 + x[0] * x[0]))}};
                    });
}

GradcheckFunction single(const MultiFunction& f) {
  return [f](const std::vector<Tensor>& in) { return f(in)[0]; };
}

int main() {
  const Tensor x = random_normal(make_key(0), {3, 4});
  const Tensor w = random_normal(make_key(1), {4});  // broadcasts over the rows of x
  const GradcheckOptions with_forward{.check_forward_ad = true};

  GradcheckReport composed =
      gradcheck([](const std::vector<Tensor>& in) { return gated(in[0], in[1]); }, {x, w}, with_forward);
  fmt::print("composed gated(x, w):                {}\n", composed.to_string());

  GradcheckReport primitive = gradcheck(single(log1p_square_vjp(2.0)), {x});
  fmt::print("custom_vjp log1p_square(x):          {}\n", primitive.to_string());

  GradcheckReport second = gradgradcheck(single(log1p_square_vjp(2.0)), {x});
  fmt::print("second order through its bwd:        {}\n", second.to_string());

  GradcheckReport forward = gradcheck(single(log1p_square_jvp(2.0)), {x}, with_forward);
  fmt::print("custom_jvp log1p_square(x), both modes: {}\n", forward.to_string());

  GradcheckReport broken = gradcheck(single(log1p_square_vjp(3.0)), {x});
  fmt::print("with a deliberately wrong VJP:       {}\n", broken.to_string());

  GradcheckReport broken_jvp = check_forward_ad(single(log1p_square_jvp(3.0)), {x});
  fmt::print("with a deliberately wrong JVP:       {}\n", broken_jvp.to_string());

  return composed.ok && primitive.ok && second.ok && forward.ok && !broken.ok && !broken_jvp.ok ? 0 : 1;
}
