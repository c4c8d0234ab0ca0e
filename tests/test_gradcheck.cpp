// gradcheck itself: it passes correct gradients, catches wrong ones and names the worst entry.
#include <cmath>

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

// x^3 with a VJP that is right at first order but not differentiable as it should
// be: 3x^2 from a detached x, so its derivative in x is 0 instead of 6x.
Tensor cube_with_wrong_second_derivative(const Tensor& x) {
  Tensor out = (x * x * x).detach();
  return record("bad_cube", out, {x}, [x](const Tensor& g, const Tensor&) -> Grads {
    const Tensor constant_x = x.detach();
    return {g * (constant_x * constant_x * 3.0)};
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

TEST_CASE("gradgradcheck fails on a wrong second derivative that gradcheck cannot see") {
  Tensor x = from_vector({0.5, -1.0, 2.0}, {3}, DType::Float64);
  auto f = [](const std::vector<Tensor>& in) { return cube_with_wrong_second_derivative(in[0]); };
  const GradcheckReport first = gradcheck(f, {x});
  CHECK_MESSAGE(first.ok, first.to_string());
  const GradcheckReport second = gradgradcheck(f, {x});
  CHECK_FALSE(second.ok);
  CHECK(second.failure.empty());
  CHECK(second.input == 0);  // d vjp / d x is wrong; d vjp / d v (input 1) is right
  CHECK(second.analytic == 0.0);
  CHECK(std::abs(second.numeric) > 0.1);  // 6 x v at some x, v
  CHECK(second.to_string().find("FAILED") != std::string::npos);
}

TEST_CASE("a gradcheck that checked nothing fails and says why (issue 14.10)") {
  auto doubled = [](const std::vector<Tensor>& in) { return cast(in[0], DType::Float64) * 2.0; };
  const GradcheckReport integers = gradcheck(doubled, {from_vector({1, 2}, {2}, DType::Int32)});
  CHECK_FALSE(integers.ok);
  CHECK(integers.checked == 0);
  CHECK(integers.failure ==
        "gradcheck: nothing was checked: no input is floating-point, so none has a gradient (inputs: int32 [2])");
  CHECK(integers.to_string().find("no input is floating-point") != std::string::npos);

  const GradcheckReport empty = gradcheck(doubled, {zeros({0, 3}, DType::Float32)});
  CHECK_FALSE(empty.ok);
  CHECK(empty.failure == "gradcheck: nothing was checked: the Jacobian is empty (the floating inputs have 0 elements, "
                         "the output 0; inputs: float32 [0, 3])");

  const GradcheckReport no_projection =
      gradcheck(doubled, {ones({2}, DType::Float64)}, {.fast_mode = true, .projections = 0});
  CHECK_FALSE(no_projection.ok);
  CHECK(no_projection.failure == "gradcheck: fast mode needs at least one projection, got 0");

  const GradcheckReport second = gradgradcheck(doubled, {from_vector({1, 2}, {2}, DType::Int64)});
  CHECK_FALSE(second.ok);
  CHECK(second.failure ==
        "gradgradcheck: nothing was checked: no input is floating-point, so none has a gradient (inputs: int64 [2])");
}
