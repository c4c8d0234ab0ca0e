// Gradients of the reductions and softmax: hand values, gradcheck and gradgradcheck in float64.
#include <doctest/doctest.h>

#include <cmath>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

using Fn = GradcheckFunction;

// Distinct values with gaps far above gradcheck's eps, so max/min have no ties.
Tensor distinct(const Shape& shape) {
  std::vector<double> v(static_cast<std::size_t>(numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::sin(1.7 * static_cast<double>(i) + 0.3) * 2.0;
  return from_vector(v, shape, DType::Float64);
}

}  // namespace

TEST_CASE("max and min share the gradient equally among ties") {
  Tensor x = from_vector({1, 5, 5, 7, -2, 7}, {2, 3}, DType::Float64).requires_grad_();
  max(x, {1}).sum().backward();
  CHECK(x.grad().to_vector() == std::vector<double>{0, 0.5, 0.5, 0.5, 0, 0.5});
  x.zero_grad();
  max(x).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{0, 0, 0, 0.5, 0, 0.5});
  x.zero_grad();
  Tensor m = min(x, {0}, true);  // [1, -2, 5]: the 5 is not a tie along axis 0
  m.backward(from_vector({1, 2, 3}, {1, 3}, DType::Float64));
  CHECK(x.grad().to_vector() == std::vector<double>{1, 0, 3, 0, 2, 0});
}

TEST_CASE("hand-computed gradients of mean, var, logsumexp and softmax") {
  Tensor x = from_vector({1, 2, 3, 6}, {2, 2}, DType::Float64).requires_grad_();
  mean(x, {0}).sum().backward();
  CHECK(x.grad().to_vector() == std::vector<double>{0.5, 0.5, 0.5, 0.5});
  x.zero_grad();
  var(x, {1}, false, 1).sum().backward();  // 2 (x - mean) / (n - 1): rows means 1.5 and 4.5
  CHECK(x.grad().to_vector() == std::vector<double>{-1, 1, -3, 3});
  x.zero_grad();
  Tensor z = from_vector({0, std::log(3.0)}, {2}, DType::Float64).requires_grad_();
  logsumexp(z).backward();
  CHECK(z.grad().at({0}) == doctest::Approx(0.25));
  CHECK(z.grad().at({1}) == doctest::Approx(0.75));
  z.zero_grad();
  // d softmax_1 / dz = s_1 (e_1 - s) = 0.75 * [-0.25, 0.25]
  softmax(z).backward(from_vector({0, 1}, {2}, DType::Float64));
  CHECK(z.grad().at({0}) == doctest::Approx(-0.1875));
  CHECK(z.grad().at({1}) == doctest::Approx(0.1875));
}

TEST_CASE("gradcheck and gradgradcheck: sum and mean over axis patterns") {
  const Tensor x = distinct({2, 3, 2});
  test_support::check_first_and_second_order("sum all", [](const std::vector<Tensor>& in) { return sum(in[0]); }, {x});
  test_support::check_first_and_second_order("sum (0, 2) keepdims", [](const std::vector<Tensor>& in) { return sum(in[0], {0, 2}, true); }, {x});
  test_support::check_first_and_second_order("sum -1 of a square", [](const std::vector<Tensor>& in) { return sum(in[0] * in[0], {-1}); }, {x});
  test_support::check_first_and_second_order("mean 1", [](const std::vector<Tensor>& in) { return mean(in[0] * in[0], {1}); }, {x});
  test_support::check_first_and_second_order("sum_to", [](const std::vector<Tensor>& in) { return sum_to(in[0] * in[0], {3, 1}); }, {x});
}

TEST_CASE("gradcheck and gradgradcheck: max and min") {
  const Tensor x = distinct({2, 3, 2});
  test_support::check_first_and_second_order("max all", [](const std::vector<Tensor>& in) { return max(in[0] * in[0]); }, {x});
  test_support::check_first_and_second_order("max 1", [](const std::vector<Tensor>& in) { return max(in[0] * in[0], {1}); }, {x});
  test_support::check_first_and_second_order("min (0, 2)", [](const std::vector<Tensor>& in) { return min(in[0] * in[0], {0, 2}, true); }, {x});
}

TEST_CASE("gradcheck and gradgradcheck: logsumexp and var") {
  const Tensor x = distinct({2, 3, 2});
  test_support::check_first_and_second_order("logsumexp -1", [](const std::vector<Tensor>& in) { return logsumexp(in[0], {-1}); }, {x});
  test_support::check_first_and_second_order("logsumexp (0, 2)", [](const std::vector<Tensor>& in) { return logsumexp(in[0], {0, 2}, true); }, {x});
  test_support::check_first_and_second_order("logsumexp all", [](const std::vector<Tensor>& in) { return logsumexp(in[0]); }, {x});
  test_support::check_first_and_second_order("var 1", [](const std::vector<Tensor>& in) { return var(in[0], {1}); }, {x});
  test_support::check_first_and_second_order("var (0, 2) ddof 1", [](const std::vector<Tensor>& in) { return var(in[0], {0, 2}, false, 1); }, {x});
}

TEST_CASE("gradcheck and gradgradcheck: softmax and log_softmax") {
  const Tensor x = distinct({2, 3, 2});
  test_support::check_first_and_second_order("softmax -1", [](const std::vector<Tensor>& in) { return softmax(in[0], -1); }, {x});
  test_support::check_first_and_second_order("softmax 1", [](const std::vector<Tensor>& in) { return softmax(in[0], 1); }, {x});
  test_support::check_first_and_second_order("log_softmax -1", [](const std::vector<Tensor>& in) { return log_softmax(in[0]); }, {x});
  test_support::check_first_and_second_order("log_softmax 0", [](const std::vector<Tensor>& in) { return log_softmax(in[0], 0); }, {x});
}

TEST_CASE("reduction gradients flow back into float32 leaves in their dtype") {
  Tensor x = from_vector({1, 4, 2, 3}, {2, 2}).requires_grad_();
  (max(x, {1}) + logsumexp(x, {0}) + var(x)).sum().backward();
  CHECK(x.grad().dtype() == DType::Float32);
  CHECK(x.grad().shape() == Shape{2, 2});
}
