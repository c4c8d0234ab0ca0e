// The tape: recording, accumulation, retain_graph, version checks, deep chains.
#include <cmath>
#include <memory>

#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;

TEST_CASE("backward of a small expression accumulates into leaves") {
  Tensor x = from_vector({1, 2, 3}, {3}, DType::Float64).requires_grad_();
  Tensor y = from_vector({4, 5, 6}, {3}, DType::Float64).requires_grad_();
  Tensor loss = (x * y + x).sum();  // d/dx = y + 1, d/dy = x
  CHECK(loss.item() == doctest::Approx(1 * 4 + 2 * 5 + 3 * 6 + 6));
  loss.backward();
  CHECK(x.grad().to_vector() == std::vector<double>{5, 6, 7});
  CHECK(y.grad().to_vector() == std::vector<double>{1, 2, 3});
  // A second, independent backward accumulates.
  (x * 2.0).sum().backward();
  CHECK(x.grad().to_vector() == std::vector<double>{7, 8, 9});
}

TEST_CASE("a freed graph cannot be walked twice; retain_graph keeps it") {
  Tensor x = from_vector({1, 2}, {2}, DType::Float64).requires_grad_();
  Tensor loss = (x * x).sum();
  loss.backward({}, /*retain_graph=*/true);
  loss.backward();
  CHECK(x.grad().to_vector() == std::vector<double>{4, 8});
  CHECK_THROWS_AS(loss.backward(), AutogradError);
  try {
    loss.backward();
  } catch (const AutogradError& e) {
    CHECK(std::string(e.what()).find("second time") != std::string::npos);
  }
}

TEST_CASE("modifying a saved tensor in place is detected at backward") {
  Tensor x = from_vector({1, 2}, {2}, DType::Float64).requires_grad_();
  Tensor w = from_vector({3, 4}, {2}, DType::Float64);
  Tensor loss = (x * w).sum();
  w.fill_(0.0);
  try {
    loss.backward();
    FAIL("expected an AutogradError");
  } catch (const AutogradError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("'mul'") != std::string::npos);
    CHECK(msg.find("modified in place") != std::string::npos);
  }
}

TEST_CASE("a chain of 200000 ops runs backward without recursion") {
  Tensor x = scalar(1.0, DType::Float64).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 200000; ++i) y = y + 1e-6;
  y.backward();
  CHECK(x.grad().item() == 1.0);
  CHECK(y.item() == doctest::Approx(1.2));
}

TEST_CASE("grad() returns gradients without touching .grad and supports second order") {
  Tensor x = scalar(3.0, DType::Float64).requires_grad_();
  Tensor y = x * x * x;  // y = x^3, y' = 3x^2 = 27, y'' = 6x = 18
  auto [dy] = std::array<Tensor, 1>{grad({y}, {x}, {}, {.create_graph = true})[0]};
  CHECK(dy.item() == doctest::Approx(27.0));
  CHECK_FALSE(x.grad().defined());
  Tensor d2y = grad({dy}, {x})[0];
  CHECK(d2y.item() == doctest::Approx(18.0));
}

TEST_CASE("no two gradients a backward or grad() hands out share storage (issue 14.1)") {
  // add of equal shapes returns {g, g}: each leaf must still get a buffer of its own,
  // so that writing one gradient in place leaves the other alone.
  Tensor p1 = ones({4}).requires_grad_(), p2 = ones({4}).requires_grad_();
  (p1 + p2).sum().backward();
  CHECK(p1.grad().data<float>() != p2.grad().data<float>());
  p1.grad().fill_(5.0);
  CHECK(p2.grad().to_vector() == std::vector<double>(4, 1.0));

  // A leaf that is itself the output gets a copy of the caller's cotangent, not the cotangent.
  Tensor leaf = zeros({2}).requires_grad_();
  Tensor cotangent = from_vector({3, 4}, {2});
  leaf.backward(cotangent);
  cotangent.fill_(0.0);
  CHECK(leaf.grad().to_vector() == std::vector<double>{3, 4});

  // Under create_graph the gradients stay differentiable and still do not alias.
  Tensor q1 = ones({3}).requires_grad_(), q2 = ones({3}).requires_grad_();
  ((q1 + q2) * (q1 + q2)).sum().backward({}, false, /*create_graph=*/true);
  CHECK(q1.grad().data<float>() != q2.grad().data<float>());
  CHECK(q1.grad().requires_grad());
  CHECK(q2.grad().to_vector() == std::vector<double>(3, 4.0));
  const std::vector<Tensor> second = grad({q1.grad().sum()}, {q1, q2});
  CHECK(second[0].to_vector() == std::vector<double>(3, 2.0));  // d/dq (2 (q1 + q2)) = 2
  CHECK(second[1].to_vector() == std::vector<double>(3, 2.0));

  // grad() returns one buffer per input too.
  Tensor r1 = ones({2}).requires_grad_(), r2 = ones({2}).requires_grad_();
  const std::vector<Tensor> gs = grad({(r1 + r2).sum()}, {r1, r2});
  CHECK(gs[0].data<float>() != gs[1].data<float>());
}

TEST_CASE("after backward the tape holds no activation, though the loss is still held (issue 14.7)") {
  Tensor x = from_vector({1, 2}, {1, 2});
  Tensor w = from_vector({0.5, -1, 1, 0.5}, {2, 2}).requires_grad_();
  Tensor b = from_vector({0.5, -1}, {2}).requires_grad_();
  Tensor loss;
  std::vector<std::weak_ptr<TensorImpl>> activations;
  {
    Tensor z = matmul(x, w);  // [2.5, 0]
    Tensor a = z + b;         // [3, -1]: add's VJP needs neither input, yet its node held both
    Tensor h = relu(a);       // [3, 0]
    Tensor y = h * h;         // [9, 0]
    loss = y.mean();          // 4.5
    activations = {z.impl_ptr(), a.impl_ptr(), h.impl_ptr(), y.impl_ptr()};
  }
  for (const auto& activation : activations) CHECK_FALSE(activation.expired());  // backward will need them
  loss.backward();
  for (std::size_t i = 0; i < activations.size(); ++i) {
    INFO("activation ", i);
    CHECK(activations[i].expired());
  }
  CHECK(loss.item() == 4.5);
  CHECK(b.grad().to_vector() == std::vector<double>{3, 0});  // d loss / d a = h * relu'(a)
  CHECK(w.grad().to_vector() == std::vector<double>{3, 0, 6, 0});
  CHECK_THROWS_AS(loss.backward(), AutogradError);  // the freed graph still says so
}

TEST_CASE("NoGradGuard stops recording") {
  Tensor x = scalar(2.0).requires_grad_();
  Tensor y;
  {
    NoGradGuard guard;
    y = x * x;
  }
  CHECK_FALSE(y.requires_grad());
  CHECK_THROWS_AS(y.backward(), AutogradError);
}

TEST_CASE("weak scalars keep the tensor dtype") {
  CHECK((ones({2}, DType::Float16) * 2.0).dtype() == DType::Float16);
  CHECK((ones({2}, DType::Int32) * 2).dtype() == DType::Int32);
  CHECK((ones({2}, DType::Int32) * 2.5).dtype() == DType::Float32);
  CHECK((ones({2}, DType::BFloat16) + ones({2}, DType::Float16)).dtype() == DType::Float32);
}

TEST_CASE("detect_anomaly names the op whose backward produced a NaN and the input's creator") {
  Tensor x = from_vector({0.0, 1.0}, {2}, DType::Float64).requires_grad_();
  Tensor y = x * x;                   // 'mul'
  Tensor z = y / y;                   // 0/0 at x = 0: the div VJP yields NaN for y
  {
    DetectAnomalyGuard anomaly;
    try {
      z.sum().backward({}, /*retain_graph=*/true);
      FAIL("expected an AutogradError");
    } catch (const AutogradError& e) {
      const std::string msg = e.what();
      CHECK(msg.find("backward of 'div'") != std::string::npos);
      CHECK(msg.find("the output of 'mul'") != std::string::npos);
    }
  }
  // Without the guard the NaN flows through silently, as in every framework.
  z.sum().backward();
  CHECK(std::isnan(x.grad().at({0})));
}
