// Losses: values against hand-computed formulas, stability for large logits,
// reductions, gradchecks (fused kernel and its differentiable fallback), accuracy.
#include <cmath>

#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;
using losses::Reduction;

namespace {

void check_grad(const GradcheckFunction& f, const std::vector<Tensor>& inputs) {
  GradcheckReport r = gradcheck(f, inputs, {.check_forward_ad = true, .check_batched_grad = true});
  CHECK_MESSAGE(r.ok, r.to_string());
}

}  // namespace

TEST_CASE("softmax_cross_entropy with integer labels: values, reductions and errors") {
  Tensor logits = from_vector({1, 2, 3, 0, 0, 0}, {2, 3});
  Tensor labels = from_vector({2, 0}, {2}, DType::Int64);
  const double l0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3, l1 = std::log(3.0);
  Tensor loss = losses::softmax_cross_entropy(logits, labels);
  CHECK(loss.shape() == Shape{2});
  CHECK(loss.at({0}) == doctest::Approx(l0));
  CHECK(loss.at({1}) == doctest::Approx(l1));
  CHECK(losses::softmax_cross_entropy(logits, labels, Reduction::Mean).item() == doctest::Approx((l0 + l1) / 2));
  CHECK(losses::softmax_cross_entropy(logits, labels.astype(DType::Int32), Reduction::Sum).item() ==
        doctest::Approx(l0 + l1));
  CHECK_THROWS_WITH_AS(losses::softmax_cross_entropy(logits, from_vector({2, 3}, {2}, DType::Int64)),
                       "softmax_cross_entropy: label 3 at index 1 is out of range for 3 classes", ValueError);
  CHECK_THROWS_WITH_AS(losses::softmax_cross_entropy(logits, from_vector({2}, {1}, DType::Int64)),
                       "softmax_cross_entropy: labels [1] must have the logits' shape [2, 3] without the class axis",
                       ShapeError);
}

TEST_CASE("softmax_cross_entropy is stable for logits of +-1e4, integer and probability targets") {
  Tensor logits = from_vector({1e4, -1e4, -1e4, 1e4}, {2, 2});
  Tensor labels = from_vector({1, 1}, {2}, DType::Int64);
  CHECK(losses::softmax_cross_entropy(logits, labels).to_vector() == std::vector<double>{2e4, 0});
  Tensor one_hot = from_vector({0, 1, 0, 1}, {2, 2});
  CHECK(losses::softmax_cross_entropy(logits, one_hot).to_vector() == std::vector<double>{2e4, 0});
  logits.requires_grad_();
  losses::softmax_cross_entropy(logits, labels, Reduction::Sum).backward();
  CHECK(logits.grad().to_vector() == std::vector<double>{1, -1, 0, 0});
}

TEST_CASE("softmax_cross_entropy with probability targets equals -sum(p log_softmax)") {
  Tensor logits = from_vector({0.5, -1, 2}, {1, 3}, DType::Float64);
  Tensor targets = from_vector({0.2, 0.3, 0.5}, {1, 3}, DType::Float64);
  const double lse = std::log(std::exp(0.5) + std::exp(-1.0) + std::exp(2.0));
  const double expected = -(0.2 * (0.5 - lse) + 0.3 * (-1 - lse) + 0.5 * (2 - lse));
  CHECK(losses::softmax_cross_entropy(logits, targets).item() == doctest::Approx(expected));
  check_grad([](const std::vector<Tensor>& in) { return losses::softmax_cross_entropy(in[0], in[1]); },
             {logits, targets});
}

TEST_CASE("the fused cross-entropy gradient is softmax - one_hot, first and second order") {
  Tensor logits = random_normal(make_key(1), {4, 5}, DType::Float64);
  Tensor labels = from_vector({0, 4, 2, 2}, {4}, DType::Int64);
  auto f = [&](const std::vector<Tensor>& in) { return losses::softmax_cross_entropy(in[0], labels); };
  check_grad(f, {logits});
  GradcheckReport r = gradgradcheck(f, {logits});
  CHECK_MESSAGE(r.ok, r.to_string());
  // Extra leading dims, float32.
  Tensor l3 = random_normal(make_key(2), {2, 3, 4});
  l3.requires_grad_();
  Tensor y3 = from_vector({0, 1, 2, 3, 0, 1}, {2, 3}, DType::Int32);
  losses::softmax_cross_entropy(l3, y3, Reduction::Mean).backward();
  Tensor expected = (softmax(l3.detach(), -1) - one_hot(y3, 4)) / 6.0;
  const auto a = l3.grad().to_vector(), b = expected.to_vector();
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-5));
}

TEST_CASE("sigmoid_binary_cross_entropy matches the formula and is stable") {
  Tensor logits = from_vector({0.3, -2.0, 1e4, -1e4}, {4}, DType::Float64);
  Tensor labels = from_vector({1, 0, 0, 1}, {4}, DType::Float64);
  const auto v = losses::sigmoid_binary_cross_entropy(logits, labels).to_vector();
  CHECK(v[0] == doctest::Approx(std::log1p(std::exp(-0.3))));
  CHECK(v[1] == doctest::Approx(std::log1p(std::exp(-2.0))));
  CHECK(v[2] == doctest::Approx(1e4));
  CHECK(v[3] == doctest::Approx(1e4));
  check_grad([](const std::vector<Tensor>& in) { return losses::sigmoid_binary_cross_entropy(in[0], in[1]); },
             {from_vector({0.3, -2.0, 1.5}, {3}, DType::Float64), from_vector({1, 0.25, 0}, {3}, DType::Float64)});
}

TEST_CASE("regression losses: mse, l1, huber") {
  Tensor p = from_vector({1, 2, 5, -1}, {4}, DType::Float64);
  Tensor t = from_vector({0, 2.5, 1, -1.25}, {4}, DType::Float64);
  CHECK(losses::mse(p, t).to_vector() == std::vector<double>{1, 0.25, 16, 0.0625});
  CHECK(losses::mse(p, t, Reduction::Mean).item() == doctest::Approx((1 + 0.25 + 16 + 0.0625) / 4));
  CHECK(losses::l1(p, t, Reduction::Sum).item() == doctest::Approx(1 + 0.5 + 4 + 0.25));
  // Errors 1, 0.5, 4, 0.25 with delta 1: quadratic up to 1, then linear.
  CHECK(losses::huber(p, t).to_vector() == std::vector<double>{0.5, 0.125, 3.5, 0.03125});
  CHECK(losses::huber(p, t, 2.0).to_vector() == std::vector<double>{0.5, 0.125, 6, 0.03125});
  for (auto f : {+[](const Tensor& a, const Tensor& b) { return losses::mse(a, b); },
                 +[](const Tensor& a, const Tensor& b) { return losses::l1(a, b); },
                 +[](const Tensor& a, const Tensor& b) { return losses::huber(a, b, 1.5); }})
    check_grad([f](const std::vector<Tensor>& in) { return f(in[0], in[1]); }, {p, t});
  CHECK_THROWS_WITH_AS(losses::mse(p, ones({3})),
                       "mse: predictions [4] and targets [3] must have the same shape", ShapeError);
}

TEST_CASE("accuracy counts argmax hits") {
  Tensor logits = from_vector({0.1, 0.9, 0.8, 0.2, 0.3, 0.7, 0.5, 0.4}, {4, 2});
  CHECK(losses::accuracy(logits, from_vector({1, 0, 0, 0}, {4}, DType::Int64)) == 0.75);
  CHECK_THROWS_WITH_AS(losses::accuracy(logits, ones({4})), "accuracy: labels must be integers, got float32",
                       DTypeError);
}

TEST_CASE("losses compute in float32 whatever the input dtype (bfloat16 and float16 logits)") {
  const Tensor logits32 = from_vector({0.3, -1.7, 2.1, 0.9, 0.05, -0.4}, {2, 3});
  const Tensor labels = from_vector({2, 0}, {2}, DType::Int64);
  for (DType half : {DType::BFloat16, DType::Float16}) {
    CAPTURE(dtype_name(half));
    Tensor logits = logits32.astype(half).detach().requires_grad_();
    // The float32 reference sees the same (rounded) logits.
    const Tensor rounded = logits.detach().astype(DType::Float32);
    Tensor loss = losses::softmax_cross_entropy(logits, labels, Reduction::Mean);
    CHECK(loss.dtype() == DType::Float32);
    CHECK(loss.item() == losses::softmax_cross_entropy(rounded, labels, Reduction::Mean).item());
    loss.backward();
    CHECK(logits.grad().dtype() == half);  // gradients come back in the logits' own dtype
    const Tensor targets = one_hot(labels, 3, half);
    CHECK(losses::softmax_cross_entropy(logits, targets).dtype() == DType::Float32);
    CHECK(losses::sigmoid_binary_cross_entropy(logits, targets).dtype() == DType::Float32);
    CHECK(losses::mse(logits, targets).dtype() == DType::Float32);
    CHECK(losses::l1(logits, targets).dtype() == DType::Float32);
    CHECK(losses::huber(logits, targets).dtype() == DType::Float32);
    CHECK(losses::mse(logits, targets, Reduction::Sum).item() ==
          losses::mse(rounded, targets.astype(DType::Float32), Reduction::Sum).item());
  }
  // float64 stays float64.
  CHECK(losses::mse(ones({2}, DType::Float64), zeros({2}, DType::Float64)).dtype() == DType::Float64);
}
