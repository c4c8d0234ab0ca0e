// gradcheck itself: it passes correct gradients, catches wrong ones and names the worst entry.
#include <doctest/doctest.h>

#include "autograd/node.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

// x * x with a deliberately wrong VJP (2x + 1 instead of 2x), to prove gradcheck can fail.
Tensor square_with_wrong_vjp(const Tensor& x) {
  Tensor out = (x * x).detach();
  return record("bad_square", out, {x}, [x](const Tensor& g, const Tensor&) -> Grads {
    return {g * (x * 2.0 + 1.0)};
  });
}

}  // namespace

TEST_CASE("gradcheck passes a correct composite and reports what it compared") {
  Tensor a = from_vector({0.5, -1.5, 2.0}, {3}, DType::Float32);
  Tensor b = from_vector({1.0, 2.0, -3.0}, {3}, DType::Float32);
  auto f = [](const std::vector<Tensor>& in) { return in[0] * in[1] / (in[1] * in[1] + 1.0); };
  GradcheckReport r = gradcheck(f, {a, b});
  CHECK_MESSAGE(r.ok, r.to_string());
  CHECK(r.checked == 2 * 3 * 3);  // two inputs of 3 elements, 3 outputs
  CHECK(r.to_string().find("gradcheck passed") == 0);
}

TEST_CASE("gradcheck catches a wrong VJP and names input, element, analytic and numeric values") {
  Tensor x = from_vector({1.0, 2.0}, {2}, DType::Float64);
  GradcheckReport r = gradcheck([](const std::vector<Tensor>& in) { return square_with_wrong_vjp(in[0]); }, {x});
  CHECK_FALSE(r.ok);
  CHECK(r.input == 0);
  // Diagonal entries are wrong by exactly 1; off-diagonals are right.
  CHECK(r.analytic - r.numeric == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(r.input_element == r.output_element);
  CHECK(r.to_string().find("FAILED") != std::string::npos);
  CHECK(r.to_string().find("input 0, element") != std::string::npos);
}

TEST_CASE("gradcheck fast mode agrees: passes correct, fails wrong") {
  Tensor x = from_vector({1.0, 2.0, 3.0}, {3}, DType::Float64);
  GradcheckOptions fast{.fast_mode = true};
  CHECK(gradcheck([](const std::vector<Tensor>& in) { return in[0] * in[0] * in[0]; }, {x}, fast).ok);
  CHECK_FALSE(gradcheck([](const std::vector<Tensor>& in) { return square_with_wrong_vjp(in[0]); }, {x}, fast).ok);
}

TEST_CASE("gradgradcheck checks second derivatives") {
  Tensor x = from_vector({0.5, -1.0, 2.0}, {3}, DType::Float64);
  Tensor w = from_vector({1.0, 3.0, -2.0}, {3}, DType::Float64);
  GradcheckReport r = gradgradcheck([](const std::vector<Tensor>& in) { return in[0] * in[0] * in[1]; }, {x, w});
  CHECK_MESSAGE(r.ok, r.to_string());
  CHECK(r.checked > 0);
}

TEST_CASE("gradcheck reports an exception thrown by f instead of crashing") {
  Tensor x = ones({2}, DType::Float64);
  GradcheckReport r = gradcheck([](const std::vector<Tensor>& in) { return in[0] + ones({3}, DType::Float64); }, {x});
  CHECK_FALSE(r.ok);
  CHECK(r.failure.find("add: shapes [2] and [3] cannot be broadcast") != std::string::npos);
}
