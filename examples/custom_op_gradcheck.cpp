// Define a differentiable function two ways and check both with gradcheck.
//
// 1. Composed from ops: the tape differentiates it for free.
// 2. A new primitive with a hand-written VJP, recorded on the tape with record().
//    gradcheck compares that VJP with central differences in float64; a wrong VJP
//    is caught and the report names the worst entry.
#include <fmt/format.h>

#include "xgrad.hpp"

using namespace xgrad;

// Swish-like gate, composed from existing ops: f(x, w) = x * sigmoid(w * x).
Tensor gated(const Tensor& x, const Tensor& w) { return x * sigmoid(w * x); }

// log(1 + x^2) as a primitive: forward computed without the tape, then recorded
// with its VJP d/dx = 2x / (1 + x^2), itself written with ops so that
// second derivatives work too.
Tensor log1p_square(const Tensor& x, bool wrong_vjp = false) {
  Tensor out;
  {
    NoGradGuard forward_only;
    out = log(1.0 + x * x);
  }
  return record("log1p_square", out, {x}, [x, wrong_vjp](const Tensor& g, const Tensor&) -> Grads {
    const Tensor slope = (wrong_vjp ? 3.0 : 2.0) * x / (1.0 + x * x);
    return {g * slope};
  });
}

int main() {
  const Tensor x = random_normal(make_key(0), {3, 4});
  const Tensor w = random_normal(make_key(1), {4});  // broadcasts over the rows of x

  GradcheckReport composed =
      gradcheck([](const std::vector<Tensor>& in) { return gated(in[0], in[1]); }, {x, w});
  fmt::print("composed gated(x, w):       {}\n", composed.to_string());

  GradcheckReport primitive = gradcheck([](const std::vector<Tensor>& in) { return log1p_square(in[0]); }, {x});
  fmt::print("primitive log1p_square(x):  {}\n", primitive.to_string());

  GradcheckReport second = gradgradcheck([](const std::vector<Tensor>& in) { return log1p_square(in[0]); }, {x});
  fmt::print("second order of the same:   {}\n", second.to_string());

  GradcheckReport broken =
      gradcheck([](const std::vector<Tensor>& in) { return log1p_square(in[0], /*wrong_vjp=*/true); }, {x});
  fmt::print("with a deliberately wrong VJP: {}\n", broken.to_string());

  return composed.ok && primitive.ok && second.ok && !broken.ok ? 0 : 1;
}
