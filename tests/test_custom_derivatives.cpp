// custom_vjp and custom_jvp: rules deliberately different from autodiff are the
// ones used (a clipped gradient), higher orders go through a bwd made of ops, and
// misuse is a typed error.
#include <cmath>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using test_support::error_of;

namespace {

using Inputs = std::vector<Tensor>;

Tensor f64(const std::vector<double>& v, const Shape& shape) { return from_vector(v, shape, DType::Float64); }

void check_close(const Tensor& actual, const std::vector<double>& expected, double tolerance = 1e-12) {
  const std::vector<double> a = actual.to_vector();
  REQUIRE(a.size() == expected.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK_MESSAGE(std::abs(a[i] - expected[i]) <= tolerance,
                                                           "element " << i << ": " << a[i] << " vs " << expected[i]);
}

// The identity whose backward clips the cotangent to [-1, 1] (jax's clip_gradient example).
MultiFunction clip_gradient() {
  return custom_vjp([](const Inputs& in) { return VjpForward{.outputs = {in[0] * 1.0}, .residuals = {}}; },
                    [](const Inputs&, const Inputs& cotangents) { return Inputs{clip(cotangents[0], -1.0, 1.0)}; });
}

// x^3 with fwd keeping x and bwd = 3 x^2 g, written with ops.
MultiFunction cube_vjp() {
  return custom_vjp([](const Inputs& in) { return VjpForward{.outputs = {in[0] * in[0] * in[0]}, .residuals = {in[0]}}; },
                    [](const Inputs& res, const Inputs& g) { return Inputs{g[0] * square(res[0]) * 3.0}; });
}

// x^2 whose JVP rule uses 2 clip(x, -1, 1) instead of 2x: a clipped slope.
MultiFunction square_clipped_slope() {
  return custom_jvp([](const Inputs& in) { return Inputs{square(in[0])}; },
                    [](const Inputs& x, const Inputs& t) {
                      return JvpResult{.outputs = {square(x[0])}, .output_tangents = {t[0] * clip(x[0], -1.0, 1.0) * 2.0}};
                    });
}

}  // namespace

TEST_CASE("custom_vjp: the clipped cotangent is what backward delivers, not autodiff's") {
  const MultiFunction f = clip_gradient();
  Tensor x = f64({0.5, -2.0, 3.0}, {3}).requires_grad_();
  const Tensor y = f({x})[0];
  check_close(y, {0.5, -2.0, 3.0});
  (y * 3.0).sum().backward();  // the cotangent 3 is clipped to 1 (autodiff would give 3)
  check_close(x.grad(), {1.0, 1.0, 1.0});
  Tensor z = f64({1.0, 2.0}, {2}).requires_grad_();
  (f({z})[0] * f64({0.25, -5.0}, {2})).sum().backward();
  check_close(z.grad(), {0.25, -1.0});
  // Without the tape, just the forward.
  NoGradGuard off;
  check_close(f({f64({7.0}, {1})})[0], {7.0});
}

TEST_CASE("custom_vjp: gradcheck and gradgradcheck through a bwd made of ops; the second derivative is 6x") {
  const MultiFunction f = cube_vjp();
  const GradcheckFunction g = [f](const Inputs& in) { return f(in)[0]; };
  // gradcheck and gradgradcheck without check_forward_ad: a custom_vjp function has no forward mode.
  const GradcheckReport first = gradcheck(g, {f64({0.3, -1.1, 2.0}, {3})}, {.check_batched_grad = true});
  CHECK_MESSAGE(first.ok, first.to_string());
  const GradcheckReport second = gradgradcheck(g, {f64({0.3, -1.1, 2.0}, {3})});
  CHECK_MESSAGE(second.ok, second.to_string());
  Tensor x = f64({0.3, -1.1, 2.0}, {3}).requires_grad_();
  const Tensor dx = grad({sum(f({x})[0])}, {x}, {}, {.create_graph = true})[0];
  check_close(dx, {3 * 0.09, 3 * 1.21, 12.0});
  const Tensor ddx = grad({sum(dx)}, {x})[0];
  check_close(ddx, {6 * 0.3, 6 * -1.1, 12.0});
}

TEST_CASE("custom_vjp: several outputs, a wrong bwd is caught, misuse is typed") {
  // (sin x, x y) with bwd written by hand.
  const MultiFunction f = custom_vjp(
      [](const Inputs& in) { return VjpForward{.outputs = {sin(in[0]), in[0] * in[1]}, .residuals = {in[0], in[1]}}; },
      [](const Inputs& r, const Inputs& g) {
        return Inputs{g[0] * cos(r[0]) + g[1] * r[1], g[1] * r[0]};
      });
  const GradcheckReport ok = gradcheck([f](const Inputs& in) { const Inputs o = f(in); return o[0] + o[1]; },
                                       {f64({0.2, 0.9}, {2}), f64({-1.0, 0.5}, {2})});
  CHECK_MESSAGE(ok.ok, ok.to_string());
  const MultiFunction wrong = custom_vjp([](const Inputs& in) { return VjpForward{.outputs = {sin(in[0])}}; },
                                         [](const Inputs&, const Inputs& g) { return Inputs{g[0]}; });
  CHECK_FALSE(gradcheck([wrong](const Inputs& in) { return wrong(in)[0]; }, {f64({0.2, 0.9}, {2})}).ok);
  const MultiFunction miscounted = custom_vjp([](const Inputs& in) { return VjpForward{.outputs = {in[0] * 2.0}}; },
                                              [](const Inputs&, const Inputs& g) { return Inputs{g[0], g[0]}; });
  Tensor x = f64({1.0}, {1}).requires_grad_();
  CHECK(error_of<AutogradError>([&] { miscounted({x})[0].sum().backward(); }).find("2 cotangents for 1 inputs") !=
        std::string::npos);
  // No forward mode for a custom_vjp function, as in JAX.
  CHECK(error_of<NotImplementedError>([&] { jvp(cube_vjp(), {f64({1.0}, {1})}, {f64({1.0}, {1})}); })
            .find("custom_jvp") != std::string::npos);
  CHECK(error_of<ValueError>([] { custom_vjp(nullptr, nullptr); }).find("custom_vjp") != std::string::npos);
}

TEST_CASE("custom_jvp: the clipped slope drives jvp, grad and jacobians; the second derivative follows the rule") {
  const MultiFunction f = square_clipped_slope();
  const Tensor x = f64({0.5, 3.0, -2.0}, {3});
  const JvpResult r = jvp(f, {x}, {f64({1.0, 1.0, 2.0}, {3})});
  check_close(r.outputs[0], {0.25, 9.0, 4.0});
  check_close(r.output_tangents[0], {1.0, 2.0, -4.0});  // 2 clip(x) t; autodiff would give 1, 6, -8
  // Reverse mode uses the rule's transpose.
  Tensor leaf = x.clone().requires_grad_();
  const Tensor g = grad({sum(f({leaf})[0])}, {leaf}, {}, {.create_graph = true})[0];
  check_close(g, {1.0, 2.0, -2.0});
  // d/dx 2 clip(x, -1, 1): 2 inside, 0 outside.
  check_close(grad({sum(g)}, {leaf})[0], {2.0, 0.0, 0.0});
  auto scalar_fn = [f](const Tensor& t) { return f({t})[0]; };
  check_close(jacfwd(scalar_fn, x), jacrev(scalar_fn, x).to_vector());
  check_close(jacfwd(scalar_fn, x), {1.0, 0, 0, 0, 2.0, 0, 0, 0, -2.0});
  // hvp: forward over reverse through the transposed rule.
  check_close(hvp([f](const Tensor& t) { return sum(f({t})[0]); }, x, f64({1.0, 1.0, 1.0}, {3})), {2.0, 0.0, 0.0});
}

TEST_CASE("custom_jvp: a correct rule passes every check, a wrong one is caught, a misshapen tangent is typed") {
  const MultiFunction softplus_rule = custom_jvp(
      [](const Inputs& in) { return Inputs{softplus(in[0] * in[1])}; },
      [](const Inputs& x, const Inputs& t) {
        const Tensor z = x[0] * x[1];
        return JvpResult{.outputs = {softplus(z)}, .output_tangents = {sigmoid(z) * (t[0] * x[1] + x[0] * t[1])}};
      });
  const GradcheckFunction g = [softplus_rule](const Inputs& in) { return softplus_rule(in)[0]; };
  const Inputs inputs{f64({0.3, -0.8, 1.4}, {3}), f64({1.1, 0.6, -0.2}, {3})};
  const GradcheckReport all = gradcheck(g, inputs, {.check_forward_ad = true, .check_batched_grad = true});
  CHECK_MESSAGE(all.ok, all.to_string());
  const GradcheckReport second = gradgradcheck(g, inputs);
  CHECK_MESSAGE(second.ok, second.to_string());
  const MultiFunction wrong = custom_jvp([](const Inputs& in) { return Inputs{exp(in[0])}; },
                                         [](const Inputs& x, const Inputs& t) {
                                           return JvpResult{.outputs = {exp(x[0])}, .output_tangents = {t[0]}};
                                         });
  CHECK_FALSE(check_forward_ad([wrong](const Inputs& in) { return wrong(in)[0]; }, {f64({0.5}, {1})}).ok);
  CHECK_FALSE(gradcheck([wrong](const Inputs& in) { return wrong(in)[0]; }, {f64({0.5}, {1})}).ok);
  const MultiFunction misshapen = custom_jvp([](const Inputs& in) { return Inputs{in[0] * 2.0}; },
                                             [](const Inputs& x, const Inputs&) {
                                               return JvpResult{.outputs = {x[0] * 2.0}, .output_tangents = {ones({5}, DType::Float64)}};
                                             });
  CHECK(error_of<ShapeError>([&] { jvp(misshapen, {f64({1.0, 2.0}, {2})}, {f64({1.0, 1.0}, {2})}); })
            .find("tangent for output 0 has shape [5]") != std::string::npos);
}
