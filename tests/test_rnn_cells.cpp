// Recurrent cells (LSTMCell, OptimizedLSTMCell, GRUCell) and the fused
// lstm_cell_update op: parameter trees and initializers as Flax's, values against
// the Flax formulas computed by hand, first and second order gradients in float64,
// and the typed errors.
#include <cmath>

#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;
namespace init = xgrad::nn::initializers;

namespace {

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// Sets every parameter of `m` (float64) to a fixed pseudo-random pattern.
void fill_params(nn::Module& m, double scale = 0.4) {
  int k = 0;
  for (auto& [name, t] : m.state_dict()) {
    std::vector<double> v(static_cast<std::size_t>(t.numel()));
    for (auto& e : v) e = scale * std::sin(1.7 * ++k + 0.3);
    t.copy_(from_vector(v, t.shape(), DType::Float64));
  }
}

Tensor pattern(const Shape& shape, double phase, double scale = 0.8) {
  std::vector<double> v(static_cast<std::size_t>(numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = scale * std::cos(0.9 * static_cast<double>(i) + phase);
  return from_vector(v, shape, DType::Float64);
}

// Gradchecks (first and second order) of a cell's output and new carry with respect
// to its inputs, carry and every parameter.
void check_cell_gradients(nn::RNNCellBase& cell, const Tensor& x, const nn::Carry& carry) {
  const nn::NamedTensors params = cell.named_parameters();
  std::vector<Tensor> inputs{x};
  inputs.insert(inputs.end(), carry.begin(), carry.end());
  for (const auto& [name, t] : params) inputs.push_back(t.detach().clone());
  const std::size_t n_carry = carry.size();
  auto f = [&](const std::vector<Tensor>& in) {
    nn::StateDict substitutes;
    for (std::size_t i = 0; i < params.size(); ++i) substitutes[params[i].first] = in[1 + n_carry + i];
    return cell.functional_call(substitutes, [&] {
      const nn::Carry c(in.begin() + 1, in.begin() + 1 + static_cast<std::ptrdiff_t>(n_carry));
      auto [next, y] = cell(c, in[0]);
      std::vector<Tensor> parts{reshape(y, {-1})};
      for (const Tensor& t : next) parts.push_back(reshape(t, {-1}) * 0.5);
      return concat(parts, 0);
    });
  };
  test_support::check_first_and_second_order(cell.describe().c_str(), f, inputs);
}

// Flax's LSTMCell on one row, from the state dict: the reference for the values.
std::pair<std::vector<double>, std::vector<double>> lstm_by_hand(const nn::StateDict& s, const std::vector<double>& x,
                                                                 const std::vector<double>& c,
                                                                 const std::vector<double>& h) {
  const std::size_t H = c.size(), I = x.size();
  auto gate = [&](char g, std::size_t j) {
    const std::string n(1, g);
    double v = s.at("h" + n + ".bias").at({static_cast<std::int64_t>(j)});
    for (std::size_t k = 0; k < I; ++k)
      v += x[k] * s.at("i" + n + ".kernel").at({static_cast<std::int64_t>(k), static_cast<std::int64_t>(j)});
    for (std::size_t k = 0; k < H; ++k)
      v += h[k] * s.at("h" + n + ".kernel").at({static_cast<std::int64_t>(k), static_cast<std::int64_t>(j)});
    return v;
  };
  std::vector<double> c_new(H), h_new(H);
  for (std::size_t j = 0; j < H; ++j) {
    const double i = sigmoid(gate('i', j)), f = sigmoid(gate('f', j)), g = std::tanh(gate('g', j)),
                 o = sigmoid(gate('o', j));
    c_new[j] = f * c[j] + i * g;
    h_new[j] = o * std::tanh(c_new[j]);
  }
  return {c_new, h_new};
}

void check_close(const Tensor& t, const std::vector<double>& expected, double tol = 1e-12) {
  const std::vector<double> v = t.to_vector();
  REQUIRE(v.size() == expected.size());
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(v[i] == doctest::Approx(expected[i]).epsilon(tol));
}

}  // namespace

TEST_CASE("LSTMCell has Flax's parameter tree and initializers") {
  nn::LSTMCell cell({.features = 3});
  const Tensor x = ones({2, 5});
  const nn::Carry carry = cell.initialize_carry(make_key(1), x.shape());
  REQUIRE(carry.size() == 2);
  CHECK(carry[0].shape() == Shape{2, 3});
  CHECK(carry[1].to_vector() == std::vector<double>(6, 0.0));
  auto [next, y] = cell(carry, x);
  CHECK(y.shape() == Shape{2, 3});
  const nn::StateDict s = cell.state_dict();
  std::vector<std::string> names;
  for (const auto& [name, t] : cell.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"ii.kernel", "hi.kernel", "hi.bias", "if.kernel", "hf.kernel", "hf.bias",
                                          "ig.kernel", "hg.kernel", "hg.bias", "io.kernel", "ho.kernel", "ho.bias"});
  CHECK(s.at("ii.kernel").shape() == Shape{5, 3});
  CHECK(s.at("ho.kernel").shape() == Shape{3, 3});
  CHECK(s.at("hf.bias").to_vector() == std::vector<double>{0, 0, 0});
  CHECK(s.at("ig.kernel").to_vector() ==
        init::lecun_normal()(fold_in(make_key(0), "ig.kernel"), {5, 3}, DType::Float32).to_vector());
  CHECK(s.at("hg.kernel").to_vector() ==
        init::orthogonal()(fold_in(make_key(0), "hg.kernel"), {3, 3}, DType::Float32).to_vector());
  // The recurrent kernels are orthogonal: K^T K = I.
  const Tensor k = s.at("hi.kernel").astype(DType::Float64);
  check_close(matmul(transpose(k), k), {1, 0, 0, 0, 1, 0, 0, 0, 1}, 1e-5);
  CHECK(cell.describe() == "LSTMCell, features=3");
  // OptimizedLSTMCell: the same tree, the same initial values (drawn from the paths).
  nn::OptimizedLSTMCell fused({.features = 3});
  fused(carry, x);
  CHECK(fused.state_dict().size() == s.size());
  for (const auto& [name, t] : s) CHECK(fused.state_dict().at(name).to_vector() == t.to_vector());
}

TEST_CASE("LSTMCell and OptimizedLSTMCell compute Flax's LSTM formulas") {
  nn::LSTMCell cell({.features = 3, .param_dtype = DType::Float64});
  nn::OptimizedLSTMCell fused({.features = 3, .param_dtype = DType::Float64});
  const Tensor x = pattern({2, 4}, 0.1), c = pattern({2, 3}, 0.7), h = pattern({2, 3}, 1.3);
  cell({c, h}, x);
  fused({c, h}, x);
  fill_params(cell);
  fused.load_state_dict(cell.state_dict());
  const nn::StateDict s = cell.state_dict();
  for (auto* m : std::vector<nn::LSTMCell*>{&cell, &fused}) {
    auto [next, y] = (*m)({c, h}, x);
    CHECK(y.dtype() == DType::Float64);
    for (std::int64_t row = 0; row < 2; ++row) {
      auto [c_ref, h_ref] = lstm_by_hand(s, x.at({row}).get().to_vector(), c.at({row}).get().to_vector(),
                                         h.at({row}).get().to_vector());
      check_close(next[0].at({row}).get(), c_ref);
      check_close(next[1].at({row}).get(), h_ref);
      check_close(y.at({row}).get(), h_ref);
    }
  }
  // Extra batch dims are flattened and restored; float32 params promote with float64 inputs.
  auto [next3, y3] = cell({reshape(c, {2, 1, 3}), reshape(h, {2, 1, 3})}, reshape(x, {2, 1, 4}));
  CHECK(y3.shape() == Shape{2, 1, 3});
  check_close(reshape(y3, {2, 3}), cell({c, h}, x).output.to_vector());
}

TEST_CASE("GRUCell computes Flax's GRU formula, the reset gate on the recurrent product and its bias") {
  nn::GRUCell cell({.features = 2, .param_dtype = DType::Float64});
  const Tensor x = pattern({1, 3}, 0.2), h = pattern({1, 2}, 0.9);
  cell({h}, x);
  std::vector<std::string> names;
  for (const auto& [name, t] : cell.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"ir.kernel", "ir.bias", "hr.kernel", "iz.kernel", "iz.bias", "hz.kernel",
                                          "in.kernel", "in.bias", "hn.kernel", "hn.bias"});
  fill_params(cell);
  const nn::StateDict s = cell.state_dict();
  const std::vector<double> xv = x.to_vector(), hv = h.to_vector();
  auto dense = [&](const std::string& name, const std::vector<double>& v, std::size_t j) {
    double out = s.count(name + ".bias") ? s.at(name + ".bias").at({static_cast<std::int64_t>(j)}) : 0.0;
    for (std::size_t k = 0; k < v.size(); ++k)
      out += v[k] * s.at(name + ".kernel").at({static_cast<std::int64_t>(k), static_cast<std::int64_t>(j)});
    return out;
  };
  std::vector<double> expected(2);
  for (std::size_t j = 0; j < 2; ++j) {
    const double r = sigmoid(dense("ir", xv, j) + dense("hr", hv, j));
    const double z = sigmoid(dense("iz", xv, j) + dense("hz", hv, j));
    const double n = std::tanh(dense("in", xv, j) + r * dense("hn", hv, j));
    expected[j] = (1 - z) * n + z * hv[j];
  }
  auto [next, y] = cell({h}, x);
  REQUIRE(next.size() == 1);
  check_close(y, expected);
  check_close(next[0], expected);
  const nn::Carry carry = cell.initialize_carry(make_key(3), {4, 7, 3});
  REQUIRE(carry.size() == 1);
  CHECK(carry[0].shape() == Shape{4, 7, 2});
  CHECK(carry[0].dtype() == DType::Float64);
}

TEST_CASE("recurrent cells: gradcheck and gradgradcheck in float64 w.r.t. inputs, carry and parameters") {
  const Tensor x = pattern({2, 3}, 0.4);
  SUBCASE("LSTMCell") {
    nn::LSTMCell cell({.features = 2, .param_dtype = DType::Float64});
    const nn::Carry carry{pattern({2, 2}, 1.1), pattern({2, 2}, 2.1)};
    cell(carry, x);
    fill_params(cell, 0.6);
    check_cell_gradients(cell, x, carry);
  }
  SUBCASE("OptimizedLSTMCell") {
    nn::OptimizedLSTMCell cell({.features = 2, .param_dtype = DType::Float64});
    const nn::Carry carry{pattern({2, 2}, 1.1), pattern({2, 2}, 2.1)};
    cell(carry, x);
    fill_params(cell, 0.6);
    check_cell_gradients(cell, x, carry);
  }
  SUBCASE("GRUCell") {
    nn::GRUCell cell({.features = 2, .param_dtype = DType::Float64});
    const nn::Carry carry{pattern({2, 2}, 1.1)};
    cell(carry, x);
    fill_params(cell, 0.6);
    check_cell_gradients(cell, x, carry);
  }
}

TEST_CASE("lstm_cell_update: the fused kernel matches the elementwise formula and its gradients") {
  const Tensor z = pattern({3, 8}, 0.3, 1.5), c = pattern({3, 2}, 0.8);
  const Tensor out = lstm_cell_update(z, c);
  REQUIRE(out.shape() == Shape{2, 3, 2});
  for (std::int64_t r = 0; r < 3; ++r)
    for (std::int64_t j = 0; j < 2; ++j) {
      const double i = sigmoid(z.at({r, j})), f = sigmoid(z.at({r, 2 + j})), g = std::tanh(z.at({r, 4 + j})),
                   o = sigmoid(z.at({r, 6 + j}));
      const double cn = f * c.at({r, j}) + i * g;
      CHECK(out.at({0, r, j}) == doctest::Approx(cn).epsilon(1e-14));
      CHECK(out.at({1, r, j}) == doctest::Approx(o * std::tanh(cn)).epsilon(1e-14));
    }
  test_support::check_first_and_second_order(
      "lstm_cell_update", [](const std::vector<Tensor>& in) { return lstm_cell_update(in[0], in[1]); }, {z, c});
  // float32 runs the same kernel; bfloat16 the elementwise ops: both agree with float64.
  const Tensor out32 = lstm_cell_update(z.astype(DType::Float32), c.astype(DType::Float32));
  CHECK(out32.dtype() == DType::Float32);
  const std::vector<double> v32 = out32.to_vector(), v64 = out.to_vector();
  for (std::size_t k = 0; k < v64.size(); ++k) CHECK(v32[k] == doctest::Approx(v64[k]).epsilon(1e-6));
  const Tensor out16 = lstm_cell_update(z.astype(DType::BFloat16), c.astype(DType::BFloat16));
  CHECK(out16.dtype() == DType::BFloat16);
  CHECK(out16.shape() == out.shape());
  const std::vector<double> v16 = out16.to_vector();
  for (std::size_t k = 0; k < v64.size(); ++k) CHECK(v16[k] == doctest::Approx(v64[k]).epsilon(0.05));
  CHECK_THROWS_AS(lstm_cell_update(zeros({3, 7}, DType::Float64), c), ShapeError);
  CHECK_THROWS_AS(lstm_cell_update(z, c.astype(DType::Float32)), DTypeError);
}

TEST_CASE("gru_cell_update: the fused kernel matches the elementwise formula and its gradients") {
  const Tensor xp = pattern({3, 6}, 0.3, 1.5), hp = pattern({3, 6}, 1.9, 1.2), h = pattern({3, 2}, 0.8);
  const Tensor out = gru_cell_update(xp, hp, h);
  REQUIRE(out.shape() == Shape{3, 2});
  for (std::int64_t r = 0; r < 3; ++r)
    for (std::int64_t j = 0; j < 2; ++j) {
      const double rg = sigmoid(xp.at({r, j}) + hp.at({r, j})), z = sigmoid(xp.at({r, 2 + j}) + hp.at({r, 2 + j}));
      const double n = std::tanh(xp.at({r, 4 + j}) + rg * hp.at({r, 4 + j}));
      CHECK(out.at({r, j}) == doctest::Approx((1 - z) * n + z * h.at({r, j})).epsilon(1e-14));
    }
  test_support::check_first_and_second_order(
      "gru_cell_update", [](const std::vector<Tensor>& in) { return gru_cell_update(in[0], in[1], in[2]); },
      {xp, hp, h});
  const std::vector<double> v64 = out.to_vector();
  const std::vector<double> v32 =
      gru_cell_update(xp.astype(DType::Float32), hp.astype(DType::Float32), h.astype(DType::Float32)).to_vector();
  const Tensor out16 = gru_cell_update(xp.astype(DType::BFloat16), hp.astype(DType::BFloat16), h.astype(DType::BFloat16));
  CHECK(out16.dtype() == DType::BFloat16);
  const std::vector<double> v16 = out16.to_vector();
  for (std::size_t k = 0; k < v64.size(); ++k) {
    CHECK(v32[k] == doctest::Approx(v64[k]).epsilon(1e-6));
    CHECK(v16[k] == doctest::Approx(v64[k]).epsilon(0.05));
  }
  CHECK_THROWS_AS(gru_cell_update(xp, zeros({3, 5}, DType::Float64), h), ShapeError);
  CHECK_THROWS_AS(gru_cell_update(xp, hp, h.astype(DType::Float32)), DTypeError);
}

TEST_CASE("a precision policy applied after init converts the cells' parameters") {
  nn::RNN rnn(std::make_shared<nn::LSTMCell>(nn::LSTMCellOptions{.features = 3}));
  const Tensor x = pattern({2, 4, 5}, 0.2);
  rnn(x);
  nn::apply_policy(rnn, nn::parse_policy("params=float64,compute=float64,output=float64"));
  for (const auto& [name, t] : rnn.named_parameters()) CHECK_MESSAGE(t.dtype() == DType::Float64, name);
  CHECK(rnn(x).dtype() == DType::Float64);
  nn::GRUCell gru({.features = 2});
  gru({zeros({1, 2})}, ones({1, 3}));
  nn::apply_policy(gru, nn::parse_policy("params=float64,compute=float64,output=float64"));
  CHECK(gru({zeros({1, 2}, DType::Float64)}, ones({1, 3}, DType::Float64)).output.dtype() == DType::Float64);
}

TEST_CASE("recurrent cells: typed errors for wrong carries and changed feature counts") {
  nn::LSTMCell cell({.features = 4});
  const Tensor x = ones({2, 3});
  const nn::Carry carry = cell.initialize_carry(make_key(0), x.shape());
  cell(carry, x);
  CHECK_THROWS_WITH_AS(cell({carry[0]}, x),
                       "LSTMCell, features=4: carry [[2, 4]] must be 2 tensor(s) of shape [2, 4] for inputs [2, 3] "
                       "(features=4)",
                       ShapeError);
  CHECK_THROWS_AS(cell({ones({2, 5}), ones({2, 5})}, x), ShapeError);  // wrong features
  CHECK_THROWS_AS(cell({ones({3, 4}), ones({3, 4})}, x), ShapeError);  // wrong batch
  CHECK_THROWS_AS(cell(carry, ones({2, 5})), ShapeError);              // input features changed
  CHECK_THROWS_AS(cell(x), ValueError);                                // no carry
  CHECK_THROWS_AS(nn::LSTMCell({.features = 0}), ValueError);
  nn::GRUCell gru({.features = 2});
  CHECK_THROWS_AS(gru({ones({2, 3})}, x), ShapeError);
  CHECK_THROWS_AS(gru({ones({2, 2}), ones({2, 2})}, x), ShapeError);
  CHECK_THROWS_AS(nn::GRUCell({.features = -1}), ValueError);
}

TEST_CASE("gate_fn and activation_fn replace sigmoid and tanh in Flax's LSTM and GRU formulas") {
  // Smooth non-default functions: a steeper sigmoid for the gates, softsign for the activation.
  const nn::CellActivation steep = [](const Tensor& t) { return xgrad::sigmoid(t * 2.0); };
  const nn::CellActivation softsign = [](const Tensor& t) { return t / (abs(t) + 1.0); };
  const auto gate = [](double v) { return sigmoid(2 * v); };
  const auto act = [](double v) { return v / (std::abs(v) + 1); };
  const Tensor x = pattern({1, 3}, 0.2), c = pattern({1, 2}, 1.3), h = pattern({1, 2}, 0.9);
  const std::vector<double> xv = x.to_vector(), cv = c.to_vector(), hv = h.to_vector();
  auto dense = [](const nn::StateDict& s, const std::string& name, const std::vector<double>& v, std::size_t j) {
    double out = s.count(name + ".bias") ? s.at(name + ".bias").at({static_cast<std::int64_t>(j)}) : 0.0;
    for (std::size_t k = 0; k < v.size(); ++k)
      out += v[k] * s.at(name + ".kernel").at({static_cast<std::int64_t>(k), static_cast<std::int64_t>(j)});
    return out;
  };
  SUBCASE("LSTMCell and OptimizedLSTMCell") {
    nn::LSTMCell cell({.features = 2, .gate_fn = steep, .activation_fn = softsign, .param_dtype = DType::Float64});
    nn::OptimizedLSTMCell opt({.features = 2, .gate_fn = steep, .activation_fn = softsign, .param_dtype = DType::Float64});
    nn::LSTMCell plain({.features = 2, .param_dtype = DType::Float64});
    cell({c, h}, x);
    opt({c, h}, x);
    plain({c, h}, x);
    fill_params(cell);
    fill_params(opt);
    fill_params(plain);
    const nn::StateDict s = cell.state_dict();
    std::vector<double> c_new(2), h_new(2);
    for (std::size_t j = 0; j < 2; ++j) {
      const auto pre = [&](const std::string& g) { return dense(s, "i" + g, xv, j) + dense(s, "h" + g, hv, j); };
      const double i = gate(pre("i")), f = gate(pre("f")), g = act(pre("g")), o = gate(pre("o"));
      c_new[j] = f * cv[j] + i * g;
      h_new[j] = o * act(c_new[j]);
    }
    for (nn::LSTMCell* m : {&cell, static_cast<nn::LSTMCell*>(&opt)}) {
      CAPTURE(m->describe());
      CHECK_FALSE(m->default_activations());
      auto [next, y] = (*m)({c, h}, x);
      check_close(next[0], c_new);
      check_close(next[1], h_new);
      check_close(y, h_new);
    }
    CHECK(plain.default_activations());
    const std::vector<double> default_h = plain({c, h}, x).output.to_vector();  // the options change the result
    CHECK(std::max(std::abs(default_h[0] - h_new[0]), std::abs(default_h[1] - h_new[1])) > 1e-4);
    check_cell_gradients(cell, pattern({2, 3}, 0.4), {pattern({2, 2}, 1.1), pattern({2, 2}, 2.1)});
  }
  SUBCASE("GRUCell") {
    nn::GRUCell cell({.features = 2, .gate_fn = steep, .activation_fn = softsign, .param_dtype = DType::Float64});
    cell({h}, x);
    fill_params(cell);
    const nn::StateDict s = cell.state_dict();
    std::vector<double> expected(2);
    for (std::size_t j = 0; j < 2; ++j) {
      const double r = gate(dense(s, "ir", xv, j) + dense(s, "hr", hv, j));
      const double z = gate(dense(s, "iz", xv, j) + dense(s, "hz", hv, j));
      const double n = act(dense(s, "in", xv, j) + r * dense(s, "hn", hv, j));
      expected[j] = (1 - z) * n + z * hv[j];
    }
    auto [next, y] = cell({h}, x);
    check_close(y, expected);
    check_close(next[0], expected);
    // Only one of the two set: the other keeps its default.
    nn::GRUCell half({.features = 2, .activation_fn = softsign, .param_dtype = DType::Float64});
    half({h}, x);
    fill_params(half);
    for (std::size_t j = 0; j < 2; ++j) {
      const double r = sigmoid(dense(s, "ir", xv, j) + dense(s, "hr", hv, j));
      const double z = sigmoid(dense(s, "iz", xv, j) + dense(s, "hz", hv, j));
      const double n = act(dense(s, "in", xv, j) + r * dense(s, "hn", hv, j));
      expected[j] = (1 - z) * n + z * hv[j];
    }
    check_close(half({h}, x).output, expected);
    check_cell_gradients(cell, pattern({2, 3}, 0.4), {pattern({2, 2}, 1.1)});
  }
}
