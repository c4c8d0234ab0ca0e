// Forward over forward: jvp of a function that itself calls jvp gives second (and
// higher) directional derivatives, as jax.jvp of jax.jvp. Checked against closed
// forms (sin, x^3, a quadratic form, logsumexp's Hessian through hvp), against
// central differences of the inner jvp for a conv -> relu -> max_pool -> tanh net,
// and for what nesting must not do (leak tangents, take custom_jvp's one-level rule,
// run a VJP whose saved outputs carry one level's tangents only).
#include <cmath>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using test_support::error_of;
using test_support::golden_spread;

namespace {

using Inputs = std::vector<Tensor>;

Tensor f64(const std::vector<double>& v, const Shape& shape) { return from_vector(v, shape, DType::Float64); }


// x -> (the tangent of f at x along u), through an inner jvp.
std::function<Tensor(const Tensor&)> directional(const std::function<Tensor(const Tensor&)>& f, const Tensor& u) {
  return [f, u](const Tensor& x) {
    return jvp([&](const Inputs& in) { return Inputs{f(in[0])}; }, {x}, {u}).output_tangents[0];
  };
}

// The outer jvp of g at x along v: {g(x), g'(x) v}.
JvpResult outer(const std::function<Tensor(const Tensor&)>& g, const Tensor& x, const Tensor& v) {
  return jvp([&](const Inputs& in) { return Inputs{g(in[0])}; }, {x}, {v});
}

void check_close(const Tensor& actual, const std::vector<double>& expected, double tolerance) {
  const std::vector<double> a = actual.to_vector();
  REQUIRE(a.size() == expected.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    CHECK_MESSAGE(std::abs(a[i] - expected[i]) <= tolerance, "element " << i << ": " << a[i] << " vs " << expected[i]);
}

}  // namespace

TEST_CASE("jvp of jvp: d2/dt2 sin(x + t v) = -sin(x) v^2, and the mixed derivative -sin(x) u v") {
  const Tensor x = f64({0.3, -1.2, 2.0, 0.0}, {4});
  const Tensor u = f64({1.0, 0.5, -2.0, 3.0}, {4}), v = f64({-0.7, 2.0, 0.25, 1.5}, {4});
  const auto s = [](const Tensor& t) { return sin(t); };
  for (const bool same_direction : {true, false}) {
    CAPTURE(same_direction);
    const Tensor& w = same_direction ? u : v;
    const JvpResult r = outer(directional(s, u), x, w);
    std::vector<double> first, second;
    for (std::size_t i = 0; i < 4; ++i) {
      const double xi = x.to_vector()[i], ui = u.to_vector()[i], wi = w.to_vector()[i];
      first.push_back(std::cos(xi) * ui);
      second.push_back(-std::sin(xi) * ui * wi);
    }
    check_close(r.outputs[0], first, 1e-15);
    check_close(r.output_tangents[0], second, 1e-15);
  }
}

TEST_CASE("jvp of jvp of jvp: x^3 gives 3 x^2 v, 6 x v^2 and 6 v^3") {
  const Tensor x = f64({0.5, -2.0, 3.0}, {3});
  const Tensor v = f64({2.0, 0.5, -1.0}, {3});
  const auto cube = [](const Tensor& t) { return t * t * t; };
  const auto d1 = directional(cube, v);
  const auto d2 = [&](const Tensor& t) { return outer(d1, t, v).output_tangents[0]; };
  const JvpResult second = outer(d1, x, v);
  const JvpResult third = outer(d2, x, v);
  std::vector<double> e1, e2, e3;
  for (std::size_t i = 0; i < 3; ++i) {
    const double xi = x.to_vector()[i], vi = v.to_vector()[i];
    e1.push_back(3 * xi * xi * vi);
    e2.push_back(6 * xi * vi * vi);
    e3.push_back(6 * vi * vi * vi);
  }
  check_close(second.outputs[0], e1, 1e-12);
  check_close(second.output_tangents[0], e2, 1e-12);
  check_close(third.outputs[0], e2, 1e-12);
  check_close(third.output_tangents[0], e3, 1e-12);
}

TEST_CASE("jvp of jvp: u^T H v equals <u, hvp(f, x, v)> for x^T A x and logsumexp") {
  const Tensor a = f64({2.0, -1.0, 0.5, 0.0, 3.0, 1.0, -0.5, 0.25, 1.5}, {3, 3});
  const Tensor x = f64({0.4, -0.3, 1.1}, {3});
  const Tensor u = f64({1.0, 2.0, -1.0}, {3}), v = f64({-0.5, 0.75, 2.0}, {3});
  const std::function<Tensor(const Tensor&)> quadratic = [&](const Tensor& t) {
    return sum(t * matmul(a, reshape(t, {3, 1})).reshape({3}));
  };
  const std::function<Tensor(const Tensor&)> lse = [](const Tensor& t) { return logsumexp(t, {0}); };
  for (const auto& [name, f] : {std::pair{"quadratic form", quadratic}, std::pair{"logsumexp", lse}}) {
    CAPTURE(name);
    const double nested = outer(directional(f, u), x, v).output_tangents[0].item();
    const double by_hvp = sum(u * hvp(f, x, v)).item();
    CHECK(std::abs(nested - by_hvp) < 1e-12);
  }
  // The quadratic form's closed form: u^T (A + A^T) v.
  const double closed = sum(u * matmul(a + transpose(a), reshape(v, {3, 1})).reshape({3})).item();
  CHECK(std::abs(outer(directional(quadratic, u), x, v).output_tangents[0].item() - closed) < 1e-12);
}

TEST_CASE("jvp of jvp through conv, relu, max_pool and tanh equals central differences of the inner jvp") {
  const Tensor x = f64(golden_spread(2 * 6 * 6 * 2, 0.1, -1.0, 1.0), {2, 6, 6, 2});
  const Tensor w = f64(golden_spread(3 * 3 * 2 * 8, 0.2, -0.5, 0.5), {3, 3, 2, 8});
  const Tensor u = f64(golden_spread(x.numel(), 0.6, -1.0, 1.0), x.shape()), v = f64(golden_spread(x.numel(), 0.8, -1.0, 1.0), x.shape());
  const std::function<Tensor(const Tensor&)> net = [&](const Tensor& t) {
    const Tensor h = relu(conv_general_dilated(t, w, {1, 1}, Padding("VALID")));
    return tanh(nn::max_pool(h, {2, 2}, {2, 2}) * 0.7);
  };
  const auto inner = directional(net, u);
  const JvpResult r = outer(inner, x, v);
  const double step = 1e-5;
  const std::vector<double> plus = inner(x + v * step).to_vector(), minus = inner(x - v * step).to_vector();
  std::vector<double> expected(plus.size());
  for (std::size_t i = 0; i < plus.size(); ++i) expected[i] = (plus[i] - minus[i]) / (2 * step);
  check_close(r.output_tangents[0], expected, 1e-7);
  check_close(r.outputs[0], inner(x).to_vector(), 1e-14);
  // The second derivative is not identically zero here (tanh), so the check has teeth.
  double largest = 0;
  for (const double e : expected) largest = std::max(largest, std::abs(e));
  CHECK(largest > 1e-3);
}

TEST_CASE("nested jvps leave no tangent behind; custom_jvp and grad under nesting are typed errors") {
  const Tensor x = f64({0.5, 1.5}, {2});
  const Tensor v = f64({1.0, -1.0}, {2});
  (void)outer(directional([](const Tensor& t) { return exp(t); }, v), x, v);
  CHECK(forward_ad::level() == 0);
  // A fresh jvp after the nested one sees only its own tangents.
  const JvpResult again = jvp([](const Inputs& in) { return Inputs{in[0] * 2.0}; }, {x}, {v});
  check_close(again.output_tangents[0], {2.0, -2.0}, 0);
  const MultiFunction clipped = custom_jvp([](const Inputs& in) { return Inputs{in[0] * 1.0}; },
                                           [](const Inputs& p, const Inputs& t) {
                                             return JvpResult{{p[0] * 1.0}, {t[0] * 0.5}};
                                           });
  const std::string message = error_of<NotImplementedError>([&] {
    outer([&](const Tensor& t) { return jvp(clipped, {t}, {v}).output_tangents[0]; }, x, v);
  });
  CHECK(message.find("custom_jvp") != std::string::npos);
  CHECK(message.find("nested") != std::string::npos);
  // A gradient inside nested jvps (hvp under a jvp) is refused, not silently missing the outer tangents.
  const std::string reverse = error_of<NotImplementedError>([&] {
    outer([&](const Tensor& t) { return hvp([](const Tensor& y) { return sum(exp(y)); }, t, v); }, x, v);
  });
  CHECK(reverse.find("reverse mode inside nested jvps") != std::string::npos);
  // Under one jvp the same custom_jvp still works.
  check_close(jvp(clipped, {x}, {v}).output_tangents[0], {0.5, -0.5}, 0);
}

TEST_CASE("jacfwd of jacfwd: the Hessian of logsumexp is diag(p) - p p^T, as jacfwd of jacrev gives it") {
  const Tensor x = f64({0.2, -1.0, 0.7, 1.3}, {4});
  const std::vector<double> xv = x.to_vector();
  double z = 0;
  for (const double e : xv) z += std::exp(e);
  std::vector<double> p, expected;
  for (const double e : xv) p.push_back(std::exp(e) / z);
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 4; ++j) expected.push_back((i == j ? p[i] : 0.0) - p[i] * p[j]);
  const auto lse = [](const Tensor& t) { return logsumexp(t); };
  const Tensor hessian = jacfwd([&](const Tensor& t) { return jacfwd(lse, t); }, x);
  CHECK(hessian.shape() == Shape{4, 4});
  check_close(hessian, expected, 1e-15);
}

TEST_CASE("forward over reverse of a function with an inner jvp: hvp of sum(jvp(exp, x, u)) is exp(x) u v") {
  // The inner jvp's ops are recorded at two levels; the backward that hvp runs after
  // it, inside hvp's one scope, needs the saved outputs' (exp's) outer tangents.
  const Tensor x = f64({0.1, -0.6, 1.2}, {3});
  const Tensor u = f64({1.5, -2.0, 0.5}, {3}), v = f64({0.3, 1.0, -2.5}, {3});
  const auto f = [&](const Tensor& t) {
    return sum(jvp([](const Inputs& in) { return Inputs{exp(in[0])}; }, {t}, {u}).output_tangents[0]);
  };
  std::vector<double> expected;
  for (std::size_t i = 0; i < 3; ++i)
    expected.push_back(std::exp(x.to_vector()[i]) * u.to_vector()[i] * v.to_vector()[i]);
  check_close(hvp(f, x, v), expected, 1e-14);
}

TEST_CASE("jvp of jvp after relu: the outer level's deferred mask is applied when the inner jvp reads it") {
  // relu runs under the outer jvp alone (its mask deferred), then an inner jvp reads
  // it: d/dx along v of cos(relu(x)) u is -sin(relu(x)) u (x > 0) v.
  const Tensor x = f64({-0.5, 0.4, 1.3, -2.0, 0.0}, {5});
  const Tensor u = f64({1.0, -1.5, 2.0, 0.5, 1.0}, {5}), v = f64({2.0, 0.5, -1.0, 3.0, 1.0}, {5});
  NoGradGuard off;  // relu's output is not recorded, so its rule is deferred
  const JvpResult r = jvp([&](const Inputs& in) {
    const Tensor y = relu(in[0]);
    return Inputs{jvp([](const Inputs& z) { return Inputs{sin(z[0])}; }, {y}, {u}).output_tangents[0]};
  }, {x}, {v});
  std::vector<double> first, second;
  for (std::size_t i = 0; i < 5; ++i) {
    const double xi = x.to_vector()[i], yi = std::max(xi, 0.0), ui = u.to_vector()[i], vi = v.to_vector()[i];
    first.push_back(std::cos(yi) * ui);
    second.push_back(xi > 0 ? -std::sin(yi) * ui * vi : 0.0);
  }
  check_close(r.outputs[0], first, 1e-15);
  check_close(r.output_tangents[0], second, 1e-15);
}
