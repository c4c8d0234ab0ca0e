// Forward mode: jvp, hvp, jacfwd and jacrev against closed forms, every op family's
// JVP rule against finite differences and the VJP (check_forward_ad), composition
// with reverse mode both ways, and the typed errors (tangent shape and dtype, an op
// without a JVP rule); jvp inside jvp is tests/test_forward_over_forward.cpp.
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

// Deterministic values in [lo, hi) (a golden-ratio sequence), float64.
Tensor spread(const Shape& shape, double offset, double lo = -1.5, double hi = 1.5) {
  return f64(test_support::golden_spread(numel(shape), offset, lo, hi), shape);
}

void check_close(const Tensor& actual, const std::vector<double>& expected, double tolerance = 1e-12) {
  const std::vector<double> a = actual.to_vector();
  REQUIRE(a.size() == expected.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK_MESSAGE(std::abs(a[i] - expected[i]) <= tolerance,
                                                           "element " << i << ": " << a[i] << " vs " << expected[i]);
}

void check_forward(const std::string& name, const GradcheckFunction& f, const Inputs& inputs,
                   const GradcheckOptions& options = {}) {
  CAPTURE(name);
  const GradcheckReport r = check_forward_ad(f, inputs, options);
  CHECK_MESSAGE(r.ok, name << ": " << r.to_string());
  CHECK(r.checked > 0);
}

MultiFunction single(const std::function<Tensor(const Tensor&)>& f) {
  return [f](const Inputs& in) { return Inputs{f(in[0])}; };
}

}  // namespace

TEST_CASE("jvp: sin(x) * x has tangent (cos(x) x + sin(x)) v, and the primal output is f(x)") {
  const Tensor x = f64({0.3, -1.2, 2.0}, {3});
  const Tensor v = f64({1.0, 0.5, -2.0}, {3});
  const JvpResult r = jvp(single([](const Tensor& t) { return sin(t) * t; }), {x}, {v});
  REQUIRE(r.outputs.size() == 1);
  REQUIRE(r.output_tangents.size() == 1);
  std::vector<double> value, tangent;
  for (int i = 0; i < 3; ++i) {
    const double xi = x.to_vector()[i], vi = v.to_vector()[i];
    value.push_back(std::sin(xi) * xi);
    tangent.push_back((std::cos(xi) * xi + std::sin(xi)) * vi);
  }
  check_close(r.outputs[0], value);
  check_close(r.output_tangents[0], tangent);
  // The scope leaves no tangent behind.
  const JvpResult probe = jvp([&](const Inputs&) { return Inputs{x * 1.0}; }, {}, {});
  check_close(probe.output_tangents[0], {0.0, 0.0, 0.0});
}

TEST_CASE("jvp: several primals and outputs; undefined tangents are zero; an unused output's tangent is zeros") {
  const Tensor a = f64({1.0, 2.0}, {2}), b = f64({3.0, -1.0}, {2});
  const MultiFunction f = [](const Inputs& in) { return Inputs{in[0] * in[1], sum(in[1]), in[0] * 0.0 + 5.0}; };
  const JvpResult r = jvp(f, {a, b}, {f64({1.0, 1.0}, {2}), Tensor()});
  check_close(r.output_tangents[0], {3.0, -1.0});  // d(a b) = b da
  check_close(r.output_tangents[1], {0.0});
  check_close(r.output_tangents[2], {0.0, 0.0});
  // An integer output has no tangent.
  const JvpResult ints = jvp([](const Inputs& in) { return Inputs{argmax(in[0], 0)}; }, {a}, {a});
  CHECK_FALSE(ints.output_tangents[0].defined());
}

TEST_CASE("jvp: tangent count, shape and dtype mismatches are typed errors naming the primal") {
  const Tensor x = f64({1.0, 2.0}, {2});
  const MultiFunction f = single([](const Tensor& t) { return t * 2.0; });
  CHECK(error_of<ValueError>([&] { jvp(f, {x}, {}); }).find("1 primals but 0 tangents") != std::string::npos);
  const std::string shape = error_of<ShapeError>([&] { jvp(f, {x}, {f64({1, 2, 3}, {3})}); });
  CHECK(shape.find("tangent 0 has shape [3] but its primal has shape [2]") != std::string::npos);
  const std::string dtype = error_of<DTypeError>([&] { jvp(f, {x}, {ones({2}, DType::Float32)}); });
  CHECK(dtype.find("float64") != std::string::npos);
  const Tensor i = arange(2);
  CHECK(error_of<DTypeError>([&] { jvp(f, {i}, {ones({2}, DType::Int64)}); }).find("not floating") !=
        std::string::npos);
  CHECK(error_of<ValueError>([&] { jvp(f, {x, x}, {x, x}); }).find("same tensor") != std::string::npos);
}

TEST_CASE("jvp: a function that throws ends the scope: the next jvp starts clean, primals keep no tangent") {
  const Tensor x = f64({1.0, 2.0}, {2});
  CHECK(error_of<ValueError>([&] {
          jvp([](const Inputs& in) -> Inputs {
            (void)exp(in[0]);
            throw ValueError("inside f");
          }, {x}, {x});
        }) == "inside f");
  CHECK(forward_ad::level() == 0);
  const JvpResult r = jvp([&](const Inputs& in) { return Inputs{in[0] * x}; }, {f64({3.0, 4.0}, {2})},
                          {f64({1.0, 1.0}, {2})});
  check_close(r.output_tangents[0], {1.0, 2.0});  // x is a constant here: its old tangent is gone
}

TEST_CASE("jvp: an op recorded without a JVP rule raises NotImplementedError naming it, never a zero tangent") {
  auto no_rule = [](const Tensor& t) {
    Tensor out;
    {
      NoGradGuard forward_only;
      out = t * 3.0;
    }
    return record("triple_without_rule", out, {t}, [](const Tensor& g, const Tensor&) -> Grads { return {g * 3.0}; });
  };
  const Tensor x = f64({1.0}, {1});
  const std::string message = error_of<NotImplementedError>([&] { jvp(single(no_rule), {x}, {x}); });
  CHECK(message.find("'triple_without_rule' has no JVP rule") != std::string::npos);
  // Outside a jvp scope the op works as before, in reverse mode too.
  Tensor leaf = x.clone().requires_grad_();
  no_rule(leaf).sum().backward();
  check_close(leaf.grad(), {3.0});
}

TEST_CASE("hvp of the quadratic form x^T A x is (A + A^T) v") {
  const Tensor A = f64({1.0, 2.0, 0.5, -1.0, 3.0, 0.0, 4.0, 1.5, -2.0}, {3, 3});
  const Tensor x = f64({0.2, -0.7, 1.1}, {3});
  const Tensor v = f64({1.0, -2.0, 0.5}, {3});
  const Tensor hv = hvp([&](const Tensor& t) { return sum(t * matmul(A, t)); }, x, v);
  const std::vector<double> a = A.to_vector(), vv = v.to_vector();
  std::vector<double> expected(3, 0.0);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) expected[i] += (a[i * 3 + j] + a[j * 3 + i]) * vv[j];
  check_close(hv, expected);
}

TEST_CASE("the Hessian of logsumexp is diag(p) - p p^T, by hvp columns and by jacfwd of jacrev") {
  const Tensor x = f64({0.5, -1.0, 2.0, 0.1}, {4});
  const std::vector<double> xv = x.to_vector();
  double z = 0;
  for (double e : xv) z += std::exp(e);
  std::vector<double> p, expected;
  for (double e : xv) p.push_back(std::exp(e) / z);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) expected.push_back((i == j ? p[i] : 0.0) - p[i] * p[j]);
  auto lse = [](const Tensor& t) { return logsumexp(t); };
  std::vector<double> by_columns(16);
  for (int j = 0; j < 4; ++j) {
    std::vector<double> e(4, 0.0);
    e[j] = 1.0;
    const std::vector<double> column = hvp(lse, x, f64(e, {4})).to_vector();
    for (int i = 0; i < 4; ++i) by_columns[i * 4 + j] = column[i];
  }
  check_close(f64(by_columns, {4, 4}), expected);
  const Tensor hessian = jacfwd([&](const Tensor& t) { return jacrev(lse, t); }, x);
  CHECK(hessian.shape() == Shape{4, 4});
  check_close(hessian, expected);
}

TEST_CASE("jacfwd and jacrev agree with the closed form, in JAX's output-then-input layout") {
  const Tensor W = f64({1.0, -2.0, 0.5, 3.0, 0.0, 1.5}, {2, 3});
  const Tensor x = f64({0.3, -0.4, 0.9}, {3});
  auto f = [&](const Tensor& t) { return tanh(matmul(W, t)); };  // J = diag(1 - y^2) W
  const std::vector<double> w = W.to_vector(), xv = x.to_vector();
  std::vector<double> expected;
  for (int i = 0; i < 2; ++i) {
    double s = 0;
    for (int j = 0; j < 3; ++j) s += w[i * 3 + j] * xv[j];
    const double slope = 1.0 - std::tanh(s) * std::tanh(s);
    for (int j = 0; j < 3; ++j) expected.push_back(slope * w[i * 3 + j]);
  }
  const Tensor forward = jacfwd(f, x), reverse = jacrev(f, x);
  CHECK(forward.shape() == Shape{2, 3});
  CHECK(reverse.shape() == Shape{2, 3});
  check_close(forward, expected);
  check_close(reverse, expected);
  // Matrix input: shape f(x).shape + x.shape.
  const Tensor m = spread({2, 2}, 0.1);
  CHECK(jacfwd([](const Tensor& t) { return sum(t * t, {1}); }, m).shape() == Shape{2, 2, 2});
  check_close(jacfwd([](const Tensor& t) { return sum(t * t, {1}); }, m),
              jacrev([](const Tensor& t) { return sum(t * t, {1}); }, m).to_vector());
}

TEST_CASE("reverse over forward: the gradient of <grad f, v> computed by jvp is H v") {
  const Tensor x0 = f64({0.4, -0.3, 1.2}, {3});
  const Tensor v = f64({1.0, 2.0, -1.0}, {3});
  auto f = [](const Tensor& t) { return sum(exp(t) * sin(t)); };
  Tensor x = x0.clone().requires_grad_();
  // jvp's tangent is recorded on the tape: grad of it w.r.t. x is d/dx (grad f . v) = H v.
  const Tensor directional = jvp(single(f), {x}, {v}).output_tangents[0];
  REQUIRE(directional.requires_grad());
  const Tensor reverse = grad({directional}, {x})[0];
  check_close(reverse, hvp(f, x0, v).to_vector(), 1e-12);
  // Closed form: f'' = 2 e^x cos x, diagonal.
  std::vector<double> expected;
  for (int i = 0; i < 3; ++i) expected.push_back(2 * std::exp(x0.to_vector()[i]) * std::cos(x0.to_vector()[i]) *
                                                 v.to_vector()[i]);
  check_close(reverse, expected, 1e-12);
}

TEST_CASE("check_forward_ad: every op family's JVP against finite differences and the VJP in float64") {
  const Tensor a = spread({2, 3}, 0.0), b = spread({3}, 0.4), pos = spread({2, 3}, 0.2, 0.3, 2.0);
  check_forward("add/sub/mul/div broadcast", [](const Inputs& in) { return (in[0] + in[1]) * in[0] / (in[1] - 3.0); },
                {a, b});
  check_forward("pow tensor", [](const Inputs& in) { return pow(in[0], in[1]); }, {pos, spread({3}, 0.1, 0.5, 2.0)});
  check_forward("pow scalar, scalar ops", [](const Inputs& in) { return 2.0 / pow(in[0], 1.5) - 1.0; }, {pos});
  check_forward("maximum/minimum/where",
                [](const Inputs& in) {
                  return where(greater(in[0], scalar(0.0, DType::Float64)), maximum(in[0], in[1]),
                               minimum(in[0], in[1]));
                },
                {a, b});
  check_forward("smooth unary", [](const Inputs& in) {
    const Tensor& x = in[0];
    return exp(x) + log(x) + sqrt(x) + rsqrt(x) + square(x) + sin(x) + cos(x) + tanh(x) + sigmoid(x) + softplus(x) +
           gelu(x) + gelu(x, false) - neg(x);
  }, {pos});
  check_forward("abs, relu, clip away from kinks", [](const Inputs& in) {
    return abs(in[0]) + relu(in[0]) + clip(in[0], -0.9, 0.8);
  }, {a});
  // Linear, so a large step is exact up to float32 rounding (6e-8 / 1e-2).
  check_forward("cast", [](const Inputs& in) { return cast(cast(in[0], DType::Float32), DType::Float64); }, {a},
                {.eps = 1e-2});
  check_forward("reductions", [](const Inputs& in) {
    return sum(in[0], {1}) + mean(in[0], {1}) + max(in[0], {1}) + min(in[0], {1}) + logsumexp(in[0], {1}) +
           var(in[0], {1}, false, 1);
  }, {a});
  check_forward("softmax and log_softmax", [](const Inputs& in) {
    return softmax(in[0], 1) * log_softmax(in[0], 0);
  }, {a});
  check_forward("shape ops", [](const Inputs& in) {
    const Tensor t = transpose(reshape(in[0], {3, 2}));
    return concat({slice(t, 1, 2, -1000, -1), broadcast_to(unsqueeze(in[1], 0), {2, 3})}, 1) * 1.0;
  }, {a, b});
  check_forward("stack, squeeze, flatten, swapaxes", [](const Inputs& in) {
    return flatten(swapaxes(stack({in[0], in[0] * 2.0}, 0), 0, 2)) + squeeze(reshape(sum(in[0]), {1, 1}));
  }, {a});
  check_forward("pad in every mode", [](const Inputs& in) {
    return sum(pad(in[0], {{1, 2}, {2, 1}}, PadMode::Reflect)) * pad(in[0], {{1, 0}, {0, 1}}, PadMode::Constant, 3.0) +
           sum(pad(in[0], {{2, 2}, {1, 1}}, PadMode::Wrap)) + sum(pad(in[0], {{1, 1}, {1, 1}}, PadMode::Edge));
  }, {a});
  const Tensor idx = from_vector({2, 0, 2}, {3}, DType::Int64);
  const Tensor along = from_vector({1, 0, 2, 2, 1, 0}, {2, 3}, DType::Int64);
  check_forward("take, take_along_axis", [idx, along](const Inputs& in) {
    return take(in[0], idx, 1) + take_along_axis(in[0] * in[0], along, 1);
  }, {a});
  check_forward("at().set, at().add, at().get", [](const Inputs& in) {
    return in[0].at({1}).set(in[1] * 2.0) + in[0].at({0}).add(in[1]).at({0}).get();
  }, {a, b});
  check_forward("matmul patterns", [](const Inputs& in) {
    return matmul(in[0], matmul(transpose(in[0]), in[0])) + sum(matmul(in[1], transpose(in[0])));
  }, {a, b});
}

TEST_CASE("check_forward_ad: convolutions (shared, local, biased, input VJP, patches), pooling and losses") {
  const Tensor x = spread({2, 4, 4, 2}, 0.0);
  check_forward("conv_general_dilated SAME stride 2", [](const Inputs& in) {
    return conv_general_dilated(in[0], in[1], {2, 2}, "SAME");
  }, {x, spread({3, 3, 2, 3}, 0.3)});
  check_forward("conv_general_dilated_bias dilated", [](const Inputs& in) {
    return conv_general_dilated_bias(in[0], in[1], in[2], {1, 1}, "VALID", {}, {2, 2});
  }, {x, spread({2, 2, 2, 2}, 0.5), spread({2}, 0.7)});
  check_forward("conv_general_dilated_local_bias", [](const Inputs& in) {
    return conv_general_dilated_local_bias(in[0], in[1], in[2], {1, 1}, "VALID", {2, 2});
  }, {x, spread({3, 3, 8, 3}, 0.2), spread({3, 3, 3}, 0.9)});
  check_forward("conv_general_dilated_input_vjp (bilinear in g and w)", [](const Inputs& in) {
    return conv_general_dilated_input_vjp(in[0], in[1], {2, 4, 4, 2}, {1, 1}, "SAME");
  }, {spread({2, 4, 4, 3}, 0.1), spread({3, 3, 2, 3}, 0.6)});
  check_forward("conv_general_dilated_patches", [](const Inputs& in) {
    return conv_general_dilated_patches(in[0], {2, 2}, {1, 1}, "SAME") * 1.5;
  }, {x});
  check_forward("max pool (tangent at the argmax), min and mean pool", [](const Inputs& in) {
    return pool(in[0], PoolReduction::Max, {2, 2}, {2, 2}, {{0, 0}, {0, 0}}) +
           pool(in[0], PoolReduction::Min, {2, 2}, {2, 2}, {{0, 0}, {0, 0}}) +
           pool(in[0], PoolReduction::Mean, {3, 3}, {2, 2}, {{1, 0}, {1, 0}}, false);
  }, {x});
  const Tensor labels = from_vector({2, 0, 1}, {3}, DType::Int32);
  check_forward("softmax_cross_entropy with integer labels", [labels](const Inputs& in) {
    return losses::softmax_cross_entropy(in[0], labels, losses::Reduction::None);
  }, {spread({3, 4}, 0.2)});
  check_forward("softmax_cross_entropy with soft targets, mse, sigmoid_binary_cross_entropy", [](const Inputs& in) {
    const Tensor targets = softmax(in[1], -1);
    return losses::softmax_cross_entropy(in[0], targets, losses::Reduction::Mean) +
           losses::mse(in[0], in[1], losses::Reduction::Sum) +
           losses::sigmoid_binary_cross_entropy(in[0], sigmoid(in[1]), losses::Reduction::Mean);
  }, {spread({3, 4}, 0.2), spread({3, 4}, 0.6)});
}

TEST_CASE("check_forward_ad and check_batched_grad catch wrong rules") {
  // A JVP rule off by a factor: finite differences disagree.
  auto wrong_jvp = [](const Tensor& t) {
    Tensor out;
    {
      NoGradGuard forward_only;
      out = t * t;
    }
    return record("square_bad_jvp", out, {t}, [t](const Tensor& g, const Tensor&) -> Grads { return {g * t * 2.0}; },
                  Saves::Inputs, [](const Grads& in, const Grads& tan, const Tensor&) { return tan[0] * in[0] * 3.0; });
  };
  const GradcheckReport r = check_forward_ad([&](const Inputs& in) { return wrong_jvp(in[0]); }, {spread({3}, 0.1)});
  CHECK_FALSE(r.ok);
  CHECK(r.to_string().find("check_forward_ad FAILED") != std::string::npos);
  // A VJP that is not linear in its cotangent (it squares it).
  auto nonlinear_vjp = [](const Tensor& t) {
    Tensor out;
    {
      NoGradGuard forward_only;
      out = t * 2.0;
    }
    return record("nonlinear_vjp", out, {t}, [](const Tensor& g, const Tensor&) -> Grads { return {g * g * 2.0}; },
                  Saves::Nothing, [](const Grads&, const Grads& tan, const Tensor&) { return tan[0] * 2.0; });
  };
  const GradcheckReport batched =
      check_batched_grad([&](const Inputs& in) { return nonlinear_vjp(in[0]); }, {spread({4}, 0.3)});
  CHECK_FALSE(batched.ok);
  CHECK(batched.to_string().find("check_batched_grad FAILED") != std::string::npos);
  // gradcheck runs both when asked, and a correct op passes them.
  const GradcheckReport both = gradcheck([](const Inputs& in) { return tanh(in[0]) * in[0]; }, {spread({4}, 0.3)},
                                         {.check_forward_ad = true, .check_batched_grad = true});
  CHECK_MESSAGE(both.ok, both.to_string());
  const GradcheckReport caught = gradcheck([&](const Inputs& in) { return wrong_jvp(in[0]); }, {spread({3}, 0.1)},
                                           {.check_forward_ad = true});
  CHECK_FALSE(caught.ok);
}

TEST_CASE("forward over reverse through every conv path, pooling and the fused cross-entropy backward") {
  // hvp runs the VJPs inside the jvp scope: the fused (non-differentiable) backward
  // kernels must step aside there, or the tangent would silently be lost.
  const Tensor x = spread({1, 4, 4, 2}, 0.2);
  const Tensor w = spread({3, 3, 8, 2}, 0.4);
  const Tensor labels = from_vector({1}, {1}, DType::Int32);
  auto loss = [&](const Inputs& in) {
    const Tensor h = tanh(conv_general_dilated_local(in[0], in[1], {1, 1}, "VALID", {2, 2}));
    const Tensor pooled = pool(h, PoolReduction::Max, {3, 3}, {1, 1}, {{0, 0}, {0, 0}});
    return losses::softmax_cross_entropy(reshape(pooled, {1, 2}), labels, losses::Reduction::Mean);
  };
  const Tensor vx = spread({1, 4, 4, 2}, 0.8), vw = spread({3, 3, 8, 2}, 0.9);
  const std::vector<Tensor> hv = hvp(loss, {x, w}, {vx, vw});
  // Against central differences of the gradient along (vx, vw).
  const double eps = 1e-6;
  auto gradient_at = [&](double s) {
    Tensor xs = (x + vx * s).detach().requires_grad_(), ws = (w + vw * s).detach().requires_grad_();
    return grad({loss({xs, ws})}, {xs, ws});
  };
  const auto plus = gradient_at(eps), minus = gradient_at(-eps);
  for (int k = 0; k < 2; ++k) {
    const auto hp = plus[k].to_vector(), hm = minus[k].to_vector(), analytic = hv[k].to_vector();
    for (std::size_t i = 0; i < analytic.size(); ++i)
      CHECK(std::abs(analytic[i] - (hp[i] - hm[i]) / (2 * eps)) <= 1e-5 + 1e-4 * std::abs(analytic[i]));
  }
}

TEST_CASE("linearize: outputs are f(x), the linear map equals jvp for several tangents, f runs once") {
  // A small CNN in float64: conv (biased) -> relu -> max pool -> dense, plus a smooth second output.
  const Tensor x = spread({2, 6, 6, 2}, 0.1), w = spread({3, 3, 2, 8}, 0.4), b = spread({8}, 0.8);
  const Tensor dense = spread({32, 3}, 0.3);
  int calls = 0;
  const MultiFunction f = [&](const Inputs& in) {
    ++calls;
    const Tensor h = relu(conv_general_dilated_bias(in[0], in[1], in[2], {1, 1}, "VALID"));
    const Tensor p = pool(h, PoolReduction::Max, {2, 2}, {2, 2}, {{0, 0}, {0, 0}});
    return Inputs{matmul(reshape(p, {2, -1}), dense), sum(tanh(in[0]) * exp(in[0] * 0.1), {1, 2})};
  };
  const LinearizeResult lin = linearize(f, {x, w, b});
  CHECK(calls == 1);
  const JvpResult direct_value = jvp(f, {x, w, b}, {Tensor(), Tensor(), Tensor()});
  REQUIRE(lin.outputs.size() == 2);
  for (std::size_t k = 0; k < 2; ++k) {
    CHECK_FALSE(lin.outputs[k].requires_grad());
    CHECK(test_support::max_abs_diff(lin.outputs[k], direct_value.outputs[k]) == 0.0);
  }
  calls = 0;
  for (int probe = 0; probe < 3; ++probe) {
    CAPTURE(probe);
    const Inputs tangents{spread(x.shape(), 0.2 + probe), probe == 1 ? Tensor() : spread(w.shape(), 0.5 + probe),
                          spread(b.shape(), 0.9 + probe)};
    const Inputs linear = lin.jvp(tangents);
    CHECK(calls == 0);  // the linear map never runs f
    const JvpResult direct = jvp(f, {x, w, b}, tangents);
    calls = 0;
    REQUIRE(linear.size() == 2);
    for (std::size_t k = 0; k < 2; ++k) {
      CHECK(linear[k].shape() == direct.output_tangents[k].shape());
      CHECK(linear[k].dtype() == DType::Float64);
      CHECK(test_support::max_abs_diff(linear[k], direct.output_tangents[k]) < 1e-12);
      CHECK(test_support::max_abs_diff(linear[k], zeros_like(linear[k])) > 1e-3);  // not a vacuous zero
    }
  }
  // Linear: J (2u + v) = 2 J u + J v.
  const Inputs u{spread(x.shape(), 1.1), spread(w.shape(), 1.2), spread(b.shape(), 1.3)};
  const Inputs v{spread(x.shape(), 2.1), spread(w.shape(), 2.2), spread(b.shape(), 2.3)};
  const Inputs combined = lin.jvp({u[0] * 2.0 + v[0], u[1] * 2.0 + v[1], u[2] * 2.0 + v[2]});
  const Inputs ju = lin.jvp(u), jv = lin.jvp(v);
  for (std::size_t k = 0; k < 2; ++k) CHECK(test_support::max_abs_diff(combined[k], ju[k] * 2.0 + jv[k]) < 1e-12);
}

TEST_CASE("linearize: zero, unused and integer outputs; tangents are checked like jvp's") {
  const Tensor a = f64({1.0, 2.0}, {2}), idx = arange(2);
  const MultiFunction f = [](const Inputs& in) {
    return Inputs{in[0] * in[0], argmax(in[0], 0), in[0] * 0.0 + 5.0, f64({7.0}, {1})};
  };
  const LinearizeResult lin = linearize(f, {a, idx});
  const Inputs out = lin.jvp({f64({1.0, -1.0}, {2}), Tensor()});
  REQUIRE(out.size() == 4);
  check_close(out[0], {2.0, -4.0});  // d(a²) = 2a da
  CHECK_FALSE(out[1].defined());     // an integer output has no tangent
  check_close(out[2], {0.0, 0.0});
  check_close(out[3], {0.0});
  check_close(lin.jvp({Tensor(), Tensor()})[0], {0.0, 0.0});
  CHECK(error_of<ValueError>([&] { lin.jvp({a}); }).find("linearize (the linear map): 2 primals but 1 tangents") !=
        std::string::npos);
  CHECK(error_of<ShapeError>([&] { lin.jvp({f64({1.0}, {1}), Tensor()}); })
            .find("tangent 0 has shape [1] but its primal has shape [2]") != std::string::npos);
  CHECK(error_of<DTypeError>([&] { lin.jvp({a, ones({2}, DType::Int64)}); }).find("not floating") !=
        std::string::npos);
  CHECK(error_of<ValueError>([&] { linearize(f, {Tensor()}); }).find("linearize: primal 0 is undefined") !=
        std::string::npos);
}

TEST_CASE("jvp's fused relu and max-pool kernels give the rules' tangents bit for bit (ties, NaN, zeros)") {
  // Under grad mode with a tangent that requires grad, relu and pool take their JVP
  // rules (recorded, for reverse-over-forward); otherwise one kernel computes value and
  // tangent together. Both must agree exactly, at every dtype and channel count.
  for (const DType dtype : {DType::Float32, DType::Float64}) {
    for (const std::int64_t channels : {3, 8, 16, 24, 64}) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(channels);
      const Shape shape{2, 5, 6, channels};
      // Values on a coarse grid, so windows hold ties; a NaN and exact zeros.
      std::vector<double> values = spread(shape, 0.3, -3.0, 3.0).to_vector();
      for (double& v : values) v = std::round(v);
      values[7] = std::nan("");
      values[11] = 0.0;
      const Tensor x = from_vector(values, shape, dtype), t = cast(spread(shape, 0.7), dtype);
      const MultiFunction f = [](const Inputs& in) {
        return Inputs{relu(in[0]), pool(in[0], PoolReduction::Max, {2, 2}, {2, 2}, {{0, 0}, {0, 1}}),
                      pool(in[0], PoolReduction::Min, {3, 2}, {2, 2}, {{0, 0}, {0, 0}})};
      };
      JvpResult fused, by_rule;
      {
        NoGradGuard off;
        fused = jvp(f, {x}, {t});
      }
      {
        GradModeGuard on(true);
        by_rule = jvp(f, {x}, {t.clone().requires_grad_()});
      }
      for (std::size_t k = 0; k < 3; ++k) {
        CAPTURE(k);
        const std::vector<double> a = fused.output_tangents[k].to_vector(), b = by_rule.output_tangents[k].to_vector();
        const std::vector<double> ya = fused.outputs[k].to_vector(), yb = by_rule.outputs[k].to_vector();
        REQUIRE(a.size() == b.size());
        for (std::size_t i = 0; i < a.size(); ++i) {
          CHECK(a[i] == b[i]);
          CHECK((ya[i] == yb[i] || (std::isnan(ya[i]) && std::isnan(yb[i]))));
        }
      }
    }
  }
}
