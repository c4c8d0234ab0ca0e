// Custom ops written the way autograd/node.hpp recommends: forward under
// NoGradGuard, then record() with a VJP; identity-like ops; user VJP errors.
#include <cmath>
#include <string>

#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using test_support::error_of;

namespace {

// Identity forward, -lambda * g backward (a domain-adversarial gradient-reversal layer).
Tensor grad_reverse(const Tensor& h, double lambda) {
  return record("grad_reverse", h, {h}, [lambda](const Tensor& g, const Tensor&) -> Grads { return {g * -lambda}; },
                Saves::Nothing);
}

// a * tanh(x), the VJP reading the saved output; the JVP rule (forward mode) is the
// same derivative times the tangent.
Tensor scaled_tanh(const Tensor& x, double a) {
  Tensor out;
  {
    NoGradGuard forward_only;
    out = tanh(x) * a;
  }
  return record("scaled_tanh", out, {x},
                [a](const Tensor& g, const Tensor& y) -> Grads { return {g * (a - y * y / a)}; }, Saves::Output,
                [a](const Grads&, const Grads& t, const Tensor& y) { return t[0] * (a - y * y / a); });
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("record: an op whose output is its input (gradient reversal) on a leaf") {
  Tensor x = from_vector({1, -2, 3}, {3}, DType::Float64).requires_grad_();
  Tensor y = grad_reverse(x, 0.5);
  CHECK(x.is_leaf());  // the input keeps its own identity
  CHECK(!y.is_leaf());
  CHECK(y.to_vector() == std::vector<double>{1, -2, 3});
  (y * from_vector({1, 2, 3}, {3}, DType::Float64)).sum().backward();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().to_vector() == std::vector<double>{-0.5, -1, -1.5});
  // The leaf is still usable as a leaf: a plain backward through it accumulates.
  (x * 2.0).sum().backward();
  CHECK(x.grad().to_vector() == std::vector<double>{1.5, 1, 0.5});
}

TEST_CASE("record: gradient reversal inside a graph, and its VJP against gradcheck's numeric Jacobian") {
  Tensor x = from_vector({0.5, -1.0}, {2}, DType::Float64).requires_grad_();
  Tensor h = x * 3.0;
  Tensor loss = square(grad_reverse(h, 2.0)).sum();  // d/dx = -2 * (2 h) * 3
  loss.backward();
  CHECK(x.grad().to_vector() == std::vector<double>{-18.0, 36.0});
  CHECK(h.grad_fn() != nullptr);
  CHECK(std::string(h.grad_fn()->op) == "mul");  // h still belongs to its own op

  // gradcheck measures the true derivative (1); the reversed VJP gives -lambda.
  const auto report = gradcheck([](const std::vector<Tensor>& in) { return grad_reverse(in[0], 2.0); },
                                {from_vector({0.3}, {1}, DType::Float64)});
  CHECK(!report.ok);
  CHECK(report.numeric == doctest::Approx(1.0));
  CHECK(report.analytic == doctest::Approx(-2.0));
}

TEST_CASE("record: a custom op with a forward under NoGradGuard passes gradcheck and gradgradcheck") {
  Tensor x = from_vector({0.3, -1.2, 2.0}, {3}, DType::Float64);
  Tensor y = scaled_tanh(x.detach().requires_grad_(), 1.5);
  CHECK(y.grad_fn() != nullptr);
  CHECK(std::string(y.grad_fn()->op) == "scaled_tanh");  // one node, not tanh and mul
  CHECK(y.to_vector()[1] == doctest::Approx(1.5 * std::tanh(-1.2)));
  test_support::check_first_and_second_order(
      "scaled_tanh", [](const std::vector<Tensor>& in) { return scaled_tanh(in[0], 1.5); }, {x});
  // Forward mode reaches it through its rule: d/dx 1.5 tanh(x) at x.
  const JvpResult r = jvp([](const std::vector<Tensor>& in) { return std::vector<Tensor>{scaled_tanh(in[0], 1.5)}; },
                          {x}, {ones({3}, DType::Float64)});
  const std::vector<double> xs = x.to_vector(), ts = r.output_tangents[0].to_vector();
  for (std::size_t i = 0; i < 3; ++i)
    CHECK(ts[i] == doctest::Approx(1.5 * (1 - std::tanh(xs[i]) * std::tanh(xs[i]))).epsilon(1e-12));
}

TEST_CASE("a user VJP returning the wrong shape is reported as that op's VJP, with the expected shape") {
  Tensor x = from_vector({1, 2, 3}, {3}, DType::Float64).requires_grad_();
  Tensor y = record("bad_vjp", x * 1.0, {x}, [](const Tensor& g, const Tensor&) -> Grads { return {g.sum()}; });
  const std::string msg = error_of<AutogradError>([&] { y.sum().backward(); });
  CHECK(msg ==
        "backward: the VJP of 'bad_vjp' returned a gradient of shape [] for its input 0, expected that input's "
        "shape [3] (a VJP returns one gradient per input, shaped like it; sum_to(g, shape) undoes a broadcast)");
  CHECK(!contains(msg, "xgrad bug"));
}

TEST_CASE("backward on a non-scalar loss says how to reduce it") {
  Tensor logits = from_vector({1, 2, 3, 4}, {2, 2}).requires_grad_();
  Tensor loss = losses::softmax_cross_entropy(logits, from_vector({0, 1}, {2}, DType::Int64));  // Reduction::None
  CHECK(contains(error_of<AutogradError>([&] { loss.backward(); }),
                 "(reduce the loss, e.g. Reduction::Mean, or pass a cotangent)"));
}

TEST_CASE("gradgradcheck's report calls itself gradgradcheck") {
  const auto f = [](const std::vector<Tensor>& in) { return (in[0] * in[0] * in[0]).sum(); };
  const Tensor x = from_vector({0.5, -1.5}, {2}, DType::Float64);
  const GradcheckReport second = gradgradcheck(f, {x});
  CHECK(second.ok);
  CHECK(second.to_string().rfind("gradgradcheck passed: ", 0) == 0);
  CHECK(gradcheck(f, {x}).to_string().rfind("gradcheck passed: ", 0) == 0);
  // A wrong second derivative is named too: d/dx of this VJP is wrong (6x expected, 0 given).
  const auto wrong = [](const std::vector<Tensor>& in) {
    Tensor cube;
    {
      NoGradGuard forward_only;
      cube = in[0] * in[0] * in[0];
    }
    // First derivative 3x^2 computed from a detached x: correct values, but no second order.
    return record("cube", cube, {in[0]}, [x = in[0].detach()](const Tensor& g, const Tensor&) -> Grads {
      return {g * 3.0 * x * x};
    }).sum();
  };
  const GradcheckReport bad = gradgradcheck(wrong, {x});
  CHECK(!bad.ok);
  CHECK(bad.to_string().rfind("gradgradcheck ", 0) == 0);

}
