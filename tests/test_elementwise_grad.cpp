// Every differentiable elementwise op is gradchecked (float64 central differences)
// and gradgradchecked, with broadcasting so that the VJPs' sum_to is exercised;
// inputs stay away from the points where an op is not smooth. The conventions at
// those points (ties, kinks, 0^0) are checked by value.
#include <cmath>
#include <functional>
#include <string>

#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

using Inputs = std::vector<Tensor>;

// Deterministic, well-spread values in [lo, hi) (a golden-ratio sequence).
Tensor spread(const Shape& shape, double offset, double lo, double hi) {
  return from_vector(test_support::golden_spread(numel(shape), offset, lo, hi), shape, DType::Float64);
}

// Values with both signs and |x| in [0.2, 1.7): away from the kinks at 0.
Tensor signed_spread(const Shape& shape, double offset) {
  Tensor t = spread(shape, offset, 0.2, 1.7);
  double* p = t.data<double>();
  for (std::int64_t i = 0; i < t.numel(); i += 2) p[i] = -p[i];
  return t;
}

void check_gradients(const std::string& name, const GradcheckFunction& f, const Inputs& inputs) {
  CAPTURE(name);
  const GradcheckReport first = gradcheck(f, inputs, {.check_forward_ad = true, .check_batched_grad = true});
  CHECK_MESSAGE(first.ok, name << ": " << first.to_string());
  CHECK(first.checked > 0);
  const GradcheckReport second = gradgradcheck(f, inputs, {.check_forward_ad = true, .check_batched_grad = true});
  CHECK_MESSAGE(second.ok, name << " (second order): " << second.to_string());
  CHECK(second.checked > 0);
}

using BinaryFn = std::function<Tensor(const Tensor&, const Tensor&)>;
using UnaryFn = std::function<Tensor(const Tensor&)>;

// The binary op on [2,1,3] x [4,1] (both sides broadcast), [3] x 0-d, and equal shapes.
void check_binary(const std::string& name, const BinaryFn& op, double lo_a, double hi_a, double lo_b, double hi_b) {
  const GradcheckFunction f = [op](const Inputs& in) { return op(in[0], in[1]); };
  check_gradients(name + " [2,1,3] x [4,1]", f, {spread({2, 1, 3}, 0.0, lo_a, hi_a), spread({4, 1}, 0.3, lo_b, hi_b)});
  check_gradients(name + " [3] x 0-d", f, {spread({3}, 0.1, lo_a, hi_a), spread({}, 0.7, lo_b, hi_b)});
  check_gradients(name + " 0-d x [2,2]", f, {spread({}, 0.2, lo_a, hi_a), spread({2, 2}, 0.5, lo_b, hi_b)});
}

void check_unary(const std::string& name, const UnaryFn& op, const Tensor& x) {
  check_gradients(name, [op](const Inputs& in) { return op(in[0]); }, {x});
}

Tensor grad_of(const std::function<Tensor(const Tensor&)>& f, Tensor x) {
  x.requires_grad_();
  return grad({f(x).sum()}, {x})[0];
}

}  // namespace

TEST_CASE("gradcheck: add, sub, mul, div with broadcasting") {
  check_binary("add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, -2, 2, -2, 2);
  check_binary("sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, -2, 2, -2, 2);
  check_binary("mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, -2, 2, -2, 2);
  check_binary("div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, -2, 2, 0.5, 2);
  check_binary("div (negative divisor)", [](const Tensor& a, const Tensor& b) { return a / b; }, -2, 2, -2, -0.5);
}

TEST_CASE("gradcheck: operators with weak scalars on either side") {
  const Tensor x = spread({2, 3}, 0.0, 0.5, 2.5);
  check_unary("x + 2", [](const Tensor& t) { return t + 2; }, x);
  check_unary("1.5 + x", [](const Tensor& t) { return 1.5 + t; }, x);
  check_unary("x - 0.5", [](const Tensor& t) { return t - 0.5; }, x);
  check_unary("3 - x", [](const Tensor& t) { return 3 - t; }, x);
  check_unary("x * -1.5", [](const Tensor& t) { return t * -1.5; }, x);
  check_unary("2 * x", [](const Tensor& t) { return 2 * t; }, x);
  check_unary("x / 4", [](const Tensor& t) { return t / 4; }, x);
  check_unary("2.5 / x", [](const Tensor& t) { return 2.5 / t; }, x);
  check_unary("(1 - x) / (x * x)", [](const Tensor& t) { return (1.0 - t) / (t * t); }, x);
}

TEST_CASE("gradcheck: pow with tensor and scalar exponents") {
  check_binary("pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }, 0.3, 2.5, -1.5, 2.5);
  check_unary("pow 2.5", [](const Tensor& x) { return pow(x, 2.5); }, spread({2, 3}, 0.1, 0.3, 2.0));
  check_unary("pow -1.5", [](const Tensor& x) { return pow(x, -1.5); }, spread({2, 3}, 0.2, 0.3, 2.0));
  check_unary("pow 3 (negative bases)", [](const Tensor& x) { return pow(x, 3.0); }, signed_spread({5}, 0.3));
  check_unary("pow 2", [](const Tensor& x) { return pow(x, 2.0); }, signed_spread({5}, 0.4));
  check_unary("pow 1", [](const Tensor& x) { return pow(x, 1.0); }, signed_spread({5}, 0.5));
}

TEST_CASE("gradcheck: maximum and minimum away from ties") {
  // a in [-2, -0.1) U ... : spread values of the two sides never come within 1e-3 of each other here.
  check_binary("maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }, -2, 2, -1.9, 2.1);
  check_binary("minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }, -2, 2, -1.9, 2.1);
}

TEST_CASE("gradcheck: where broadcasts condition, x and y") {
  const Tensor condition = from_vector({1, 0, 1, 0, 0, 1}, {2, 1, 3}, DType::Bool);
  const GradcheckFunction f = [](const Inputs& in) { return where(in[0], in[1], in[2]); };
  check_gradients("where [2,1,3] ? [4,3] : [3]", f, {condition, spread({4, 3}, 0.1, -2, 2), spread({3}, 0.4, -2, 2)});
  check_gradients("where [2,1,3] ? 0-d : [4,1]", f, {condition, spread({}, 0.1, -2, 2), spread({4, 1}, 0.4, -2, 2)});
}

TEST_CASE("gradcheck: smooth unary ops") {
  const Tensor anywhere = spread({2, 3}, 0.0, -3, 3);
  check_unary("neg", [](const Tensor& x) { return neg(x); }, anywhere);
  check_unary("operator-", [](const Tensor& x) { return -x; }, anywhere);
  check_unary("exp", [](const Tensor& x) { return exp(x); }, anywhere);
  check_unary("log", [](const Tensor& x) { return log(x); }, spread({2, 3}, 0.0, 0.2, 3));
  check_unary("sqrt", [](const Tensor& x) { return sqrt(x); }, spread({2, 3}, 0.0, 0.2, 3));
  check_unary("rsqrt", [](const Tensor& x) { return rsqrt(x); }, spread({2, 3}, 0.0, 0.2, 3));
  check_unary("square", [](const Tensor& x) { return square(x); }, anywhere);
  check_unary("sin", [](const Tensor& x) { return sin(x); }, anywhere);
  check_unary("cos", [](const Tensor& x) { return cos(x); }, anywhere);
  check_unary("tanh", [](const Tensor& x) { return tanh(x); }, anywhere);
  check_unary("sigmoid", [](const Tensor& x) { return sigmoid(x); }, spread({2, 4}, 0.0, -8, 8));
  check_unary("softplus", [](const Tensor& x) { return softplus(x); }, spread({2, 4}, 0.0, -8, 8));
  check_unary("gelu (tanh)", [](const Tensor& x) { return gelu(x); }, spread({2, 4}, 0.0, -4, 4));
  check_unary("gelu (erf)", [](const Tensor& x) { return gelu(x, false); }, spread({2, 4}, 0.0, -4, 4));
}

TEST_CASE("gradcheck: abs, relu and clip away from their kinks") {
  const Tensor x = signed_spread({2, 4}, 0.1);
  check_unary("abs", [](const Tensor& t) { return abs(t); }, x);
  check_unary("relu", [](const Tensor& t) { return relu(t); }, x);
  // x's magnitudes avoid 0.15 and 1.1 by more than the step.
  check_unary("clip", [](const Tensor& t) { return clip(t, -1.1, 0.15); }, x);
}

TEST_CASE("gradcheck: composites and casts") {
  // Inputs of the composites are reused several times, so the gradients accumulate.
  check_gradients("x * y / (y * y + 1) - exp(-x)",
                  [](const Inputs& in) { return in[0] * in[1] / (in[1] * in[1] + 1.0) - exp(-in[0]); },
                  {spread({3, 1}, 0.0, -2, 2), spread({1, 4}, 0.5, -2, 2)});
  check_gradients("sigmoid(x) * tanh(x) + square(x)",
                  [](const Inputs& in) { return sigmoid(in[0]) * tanh(in[0]) + square(in[0]); },
                  {spread({4}, 0.0, -2, 2)});
  // float64 -> float32 -> float64 loses precision: a larger step keeps the rounding error small.
  const GradcheckReport r = gradcheck([](const Inputs& in) { return cast(cast(in[0], DType::Float32) * 3.0,
                                                                         DType::Float64); },
                                      {spread({3}, 0.0, -2, 2)}, {.eps = 1e-2, .atol = 1e-4});
  CHECK_MESSAGE(r.ok, r.to_string());
  const GradcheckReport rr = gradgradcheck([](const Inputs& in) { return square(cast(in[0], DType::Float64)); },
                                           {spread({3}, 0.0, -2, 2)});
  CHECK_MESSAGE(rr.ok, rr.to_string());
}

TEST_CASE("conventions at non-smooth points match JAX") {
  // maximum / minimum split ties evenly; maximum(x, x) has slope 1.
  const Tensor a = from_vector({1, 2, 3}, {3}, DType::Float64).requires_grad_();
  const Tensor b = from_vector({1, 5, 0}, {3}, DType::Float64).requires_grad_();
  auto g = grad({maximum(a, b).sum()}, {a, b});
  CHECK(g[0].to_vector() == std::vector<double>{0.5, 0, 1});
  CHECK(g[1].to_vector() == std::vector<double>{0.5, 1, 0});
  g = grad({minimum(a, b).sum()}, {a, b});
  CHECK(g[0].to_vector() == std::vector<double>{0.5, 1, 0});
  CHECK(g[1].to_vector() == std::vector<double>{0.5, 0, 1});
  CHECK(grad_of([](const Tensor& x) { return maximum(x, x); }, from_vector({2, -1}, {2}, DType::Float64))
            .to_vector() == std::vector<double>{1, 1});
  // A tie against a broadcast scalar: maximum(x, 0) at x = 0 gets 1/2.
  CHECK(grad_of([](const Tensor& x) { return maximum(x, zeros({}, DType::Float64)); },
                from_vector({-1, 0, 2}, {3}, DType::Float64))
            .to_vector() == std::vector<double>{0, 0.5, 1});
  // relu and abs have slope 0 at 0.
  const Tensor kinks = from_vector({-1, 0, 1}, {3}, DType::Float64);
  CHECK(grad_of([](const Tensor& x) { return relu(x); }, kinks).to_vector() == std::vector<double>{0, 0, 1});
  CHECK(grad_of([](const Tensor& x) { return abs(x); }, kinks).to_vector() == std::vector<double>{-1, 0, 1});
  // clip is jnp.clip = minimum(maximum(x, lo), hi): 1/2 on a bound, 1/4 where lo == x == hi,
  // 0 outside, for NaN, and everywhere when lo > hi.
  const Tensor around = from_vector({-2, -1, 0, 0.5, 1, std::nan("")}, {6}, DType::Float64);
  CHECK(grad_of([](const Tensor& x) { return clip(x, -1, 0.5); }, around).to_vector() ==
        std::vector<double>{0, 0.5, 1, 0.5, 0, 0});
  const auto as_jax = [](const Tensor& x) {
    return minimum(maximum(x, scalar(-1.0, DType::Float64)), scalar(0.5, DType::Float64));
  };
  CHECK(grad_of(as_jax, around).to_vector() == std::vector<double>{0, 0.5, 1, 0.5, 0, 0});
  CHECK(grad_of([](const Tensor& x) { return clip(x, 0, 0); }, kinks).to_vector() == std::vector<double>{0, 0.25, 0});
  CHECK(grad_of([](const Tensor& x) { return clip(x, 1, -1); }, kinks).to_vector() == std::vector<double>{0, 0, 0});
  // A float16 bound is compared as it rounds in float16 (0.1 -> 0.0999755859375), as jnp.clip does.
  const Tensor near = from_vector({0.1}, {1}, DType::Float16);
  CHECK(grad_of([](const Tensor& x) { return clip(x, 0.1, 1); }, near).to_vector() == std::vector<double>{0.5});
  // pow at 0: slope 0 for a zero exponent (0^0), and no NaN for the exponent's gradient at a zero base.
  const Tensor base = from_vector({0, 0, 2}, {3}, DType::Float64).requires_grad_();
  const Tensor exponent = from_vector({0, 2, 3}, {3}, DType::Float64).requires_grad_();
  g = grad({pow(base, exponent).sum()}, {base, exponent});
  CHECK(g[0].to_vector() == std::vector<double>{0, 0, 12});
  CHECK(g[1].to_vector() == std::vector<double>{0, 0, 8 * std::log(2.0)});
  CHECK(grad_of([](const Tensor& x) { return pow(x, 0.0); }, kinks).to_vector() == std::vector<double>{0, 0, 0});
  // sign and the comparisons record nothing.
  CHECK_FALSE(sign(a).requires_grad());
  CHECK_FALSE(less(a, b).requires_grad());
  CHECK_FALSE(logical_not(a).requires_grad());
}

TEST_CASE("gradients reach only floating inputs and arrive in their dtype") {
  const Tensor x = from_vector({1, 2}, {2}, DType::Float16).requires_grad_();
  const Tensor n = from_vector({3, 4}, {2}, DType::Int32);
  const Tensor y = x * n + pow(n, x);
  CHECK(y.dtype() == DType::Float16);
  y.sum().backward();
  CHECK(x.grad().dtype() == DType::Float16);
  // d/dx (x n + n^x) = n + n^x log n
  const std::vector<double> got = x.grad().to_vector();
  CHECK(got[0] == doctest::Approx(3 + 3 * std::log(3.0)).epsilon(2e-3));
  CHECK(got[1] == doctest::Approx(4 + 16 * std::log(4.0)).epsilon(2e-3));
  // where's condition and integer operands get no gradient; the float operand does.
  const Tensor w = from_vector({0.5, -0.5}, {2}, DType::Float32).requires_grad_();
  where(from_vector({1, 0}, {2}, DType::Bool), w, n).sum().backward();
  CHECK(w.grad().to_vector() == std::vector<double>{1, 0});
}
