// Activations (values against their formulas, gradchecks), PReLU, ReLU, Dropout and Flatten.
#include <cmath>
#include <functional>
#include <limits>

#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;

namespace {

const std::vector<double> kPoints{-3.7, -1.2, -0.3, 0.4, 1.5, 4.2, 7.1};

struct Activation {
  const char* name;
  std::function<Tensor(const Tensor&)> f;
  std::function<double(double)> reference;
};

double relu6_ref(double x) { return std::min(std::max(x, 0.0), 6.0); }

}  // namespace

TEST_CASE("activations match their jax.nn formulas and gradients") {
  const double selu_alpha = 1.6732632423543772848170429916717, selu_scale = 1.0507009873554804934193349852946;
  const std::vector<Activation> cases{
      {"relu6", [](const Tensor& x) { return nn::relu6(x); }, relu6_ref},
      {"leaky_relu", [](const Tensor& x) { return nn::leaky_relu(x); }, [](double x) { return x >= 0 ? x : 0.01 * x; }},
      {"leaky_relu(0.2)", [](const Tensor& x) { return nn::leaky_relu(x, 0.2); },
       [](double x) { return x >= 0 ? x : 0.2 * x; }},
      {"elu(0.5)", [](const Tensor& x) { return nn::elu(x, 0.5); },
       [](double x) { return x > 0 ? x : 0.5 * std::expm1(x); }},
      {"celu(2)", [](const Tensor& x) { return nn::celu(x, 2.0); },
       [](double x) { return std::max(x, 0.0) + 2 * std::expm1(std::min(x, 0.0) / 2); }},
      {"selu", [](const Tensor& x) { return nn::selu(x); },
       [&](double x) { return selu_scale * (x > 0 ? x : selu_alpha * std::expm1(x)); }},
      {"silu", [](const Tensor& x) { return nn::silu(x); }, [](double x) { return x / (1 + std::exp(-x)); }},
      {"swish", [](const Tensor& x) { return nn::swish(x); }, [](double x) { return x / (1 + std::exp(-x)); }},
      {"soft_sign", [](const Tensor& x) { return nn::soft_sign(x); }, [](double x) { return x / (std::abs(x) + 1); }},
      {"hard_tanh", [](const Tensor& x) { return nn::hard_tanh(x); },
       [](double x) { return std::min(std::max(x, -1.0), 1.0); }},
      {"hard_sigmoid", [](const Tensor& x) { return nn::hard_sigmoid(x); },
       [](double x) { return relu6_ref(x + 3) / 6; }},
      {"hard_silu", [](const Tensor& x) { return nn::hard_silu(x); },
       [](double x) { return x * relu6_ref(x + 3) / 6; }},
      {"log_sigmoid", [](const Tensor& x) { return nn::log_sigmoid(x); },
       [](double x) { return -std::log1p(std::exp(-x)); }},
  };
  const Tensor x = from_vector(kPoints, {static_cast<std::int64_t>(kPoints.size())}, DType::Float64);
  for (const auto& a : cases) {
    CAPTURE(a.name);
    const auto y = a.f(x).to_vector();
    for (std::size_t i = 0; i < kPoints.size(); ++i) CHECK(y[i] == doctest::Approx(a.reference(kPoints[i])).epsilon(1e-9));
    GradcheckReport r = gradcheck([&](const std::vector<Tensor>& in) { return a.f(in[0]); }, {x}, {.check_forward_ad = true, .check_batched_grad = true});
    CHECK_MESSAGE(r.ok, r.to_string());
  }
}

TEST_CASE("relu6 has zero gradient at both kinks, as jax.nn.relu6") {
  Tensor x = from_vector({0.0, 3.0, 6.0}, {3}, DType::Float64);
  x.requires_grad_();
  nn::relu6(x).sum().backward();
  CHECK(x.grad().to_vector() == std::vector<double>{0, 1, 0});
}

TEST_CASE("log_sigmoid, elu and soft activations stay finite for large inputs") {
  Tensor x = from_vector({-1e4, 1e4}, {2});
  x.requires_grad_();
  CHECK(nn::log_sigmoid(x).to_vector() == std::vector<double>{-1e4, 0});
  (nn::elu(x) + nn::selu(x) + nn::celu(x)).sum().backward();
  for (double g : x.grad().to_vector()) CHECK(std::isfinite(g));
}

TEST_CASE("glu gates one half with the sigmoid of the other; standardize") {
  Tensor x = from_vector({1, 2, 0, -1, 3, 4, 1, 1}, {2, 4}, DType::Float64);
  Tensor y = nn::glu(x);
  CHECK(y.shape() == Shape{2, 2});
  CHECK(y.at({0, 1}) == doctest::Approx(2 / (1 + std::exp(1.0))));
  CHECK(y.at({1, 0}) == doctest::Approx(3 / (1 + std::exp(-1.0))));
  CHECK(nn::glu(x, 0).shape() == Shape{1, 4});
  CHECK_THROWS_WITH_AS(nn::glu(ones({2, 3})), "glu: axis -1 of [2, 3] has odd size 3; it must split into two halves",
                       ShapeError);
  GradcheckReport r = gradcheck([](const std::vector<Tensor>& in) { return nn::glu(in[0]); }, {x});
  CHECK_MESSAGE(r.ok, r.to_string());
  Tensor s = nn::standardize(from_vector({1, 2, 3, 4}, {4}, DType::Float64));
  const double d = std::sqrt(1.25 + 1e-5);
  CHECK(s.at({0}) == doctest::Approx(-1.5 / d));
  CHECK(s.at({3}) == doctest::Approx(1.5 / d));
}

TEST_CASE("PReLU learns its negative slope, initialised to 0.01") {
  nn::PReLU prelu({.param_dtype = DType::Float64});
  Tensor x = from_vector({-2, 3}, {2}, DType::Float64);
  CHECK(prelu(x).to_vector() == std::vector<double>{-0.02, 3});
  Tensor slope = prelu.state_dict().at("negative_slope");
  CHECK(slope.shape() == Shape{});
  slope.fill_(0.5);
  CHECK(prelu(x).to_vector() == std::vector<double>{-1, 3});
  GradcheckReport r = gradcheck(
      [&](const std::vector<Tensor>& in) { return prelu.functional_call({{"negative_slope", in[1]}}, in[0]); },
      {from_vector({-2.0, -0.5, 0.7, 3.0}, {4}, DType::Float64), slope});
  CHECK_MESSAGE(r.ok, r.to_string());
}

TEST_CASE("the ReLU module is relu: max(x, 0) with NaN passing, slope 0 at 0, no parameters") {
  nn::ReLU layer;
  CHECK(layer.describe() == "ReLU");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const auto y = layer(from_vector({-2.0, 0.0, 0.5, nan, 3.0}, {5}, DType::Float64)).to_vector();
  CHECK(y[0] == 0.0);
  CHECK(y[1] == 0.0);
  CHECK(y[2] == 0.5);
  CHECK(std::isnan(y[3]));
  CHECK(y[4] == 3.0);
  CHECK(layer.state_dict().empty());
  Tensor x = from_vector({-2.0, 0.0, 0.5, 3.0}, {2, 2}, DType::Float64).requires_grad_();
  sum(layer(x)).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{0, 0, 1, 1});
  GradcheckReport r = gradcheck([&](const std::vector<Tensor>& in) { return layer(in[0]); },
                                {from_vector({-2.0, -0.5, 0.7, 3.0}, {2, 2}, DType::Float64)},
                                {.check_forward_ad = true});
  CHECK_MESSAGE(r.ok, r.to_string());
}

TEST_CASE("Dropout keeps 1 - rate of the elements, scaled by 1 / (1 - rate)") {
  nn::Dropout dropout({.rate = 0.25});
  Tensor x = ones({100000});
  x.requires_grad_();
  Tensor y = dropout(x);
  const auto v = y.to_vector();
  std::int64_t kept = 0, other = 0;
  for (double e : v) {
    kept += e == static_cast<float>(1 / 0.75);
    other += e != 0.0 && e != static_cast<float>(1 / 0.75);
  }
  CHECK(other == 0);
  CHECK(static_cast<double>(kept) / 100000 == doctest::Approx(0.75).epsilon(0.01));
  // The gradient is the same mask and scale.
  y.sum().backward();
  CHECK(x.grad().to_vector() == v);
  CHECK(dropout.describe() == "Dropout, rate=0.25");
}

TEST_CASE("Dropout masks come from seed, path and call count; identity in eval and init") {
  Tensor x = ones({64});
  nn::Dropout a({.rate = 0.5}), b({.rate = 0.5});
  const auto first = a(x).to_vector();
  CHECK(b(x).to_vector() == first);        // same seed, path and call number
  CHECK(a(x).to_vector() != first);        // the next call draws a new mask
  nn::Dropout c({.rate = 0.5});
  c.set_seed(1);
  CHECK(c(x).to_vector() != first);
  nn::Dropout d({.rate = 0.5});
  d.init(x);                               // init neither drops nor consumes the stream
  CHECK(d(x).to_vector() == first);
  d.eval();
  CHECK(d(x).to_vector() == x.to_vector());
  nn::Dropout forced({.rate = 0.5, .deterministic = true});
  CHECK(forced(x).to_vector() == x.to_vector());
  CHECK(nn::Dropout({.rate = 1.0})(x).to_vector() == std::vector<double>(64, 0.0));
  CHECK(nn::Dropout({.rate = 0.0})(x).to_vector() == x.to_vector());
  CHECK_THROWS_WITH_AS(nn::Dropout({.rate = 1.5}), "Dropout: rate must be in [0, 1], got 1.5", ValueError);
}

TEST_CASE("Dropout broadcast_dims share the mask along those axes") {
  nn::Dropout spatial({.rate = 0.5, .broadcast_dims = {0}});
  Tensor y = spatial(ones({4, 50}));
  for (int r = 1; r < 4; ++r)
    for (int c = 0; c < 50; ++c) CHECK(y.at({r, c}) == y.at({0, c}));
}

TEST_CASE("Flatten merges the axes from start_axis to end_axis") {
  Tensor x = arange(0.0, 24.0, 1.0).reshape({2, 3, 4});
  CHECK(nn::Flatten()(x).shape() == Shape{2, 12});
  CHECK(nn::Flatten({.start_axis = 0})(x).shape() == Shape{24});
  CHECK(nn::Flatten({.start_axis = 0, .end_axis = 1})(x).shape() == Shape{6, 4});
  CHECK(nn::Flatten()(x).to_vector() == x.to_vector());
  CHECK_THROWS_WITH_AS(nn::Flatten({.start_axis = 2, .end_axis = 1})(x),
                       "Flatten: start_axis 2 comes after end_axis 1 for input [2, 3, 4]", ShapeError);
}
