// xgrad::checkpoint and nn::remat: bitwise the plain run's outputs and gradients
// (with dropout, nested, several outputs), higher-order gradients through them,
// what the tape keeps, and the errors.
#include <doctest/doctest.h>

#include <memory>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using test_support::bit_difference;

namespace {

// Dense -> gelu -> Dropout -> Dense -> LayerNorm, with a residual.
struct Block : nn::Module {
  nn::Dense fc1{{.features = 12}}, fc2{{.features = 6}};
  nn::Dropout drop{{.rate = 0.3}};
  nn::LayerNorm norm;
  Block() {
    register_module("fc1", fc1);
    register_module("drop", drop);
    register_module("fc2", fc2);
    register_module("norm", norm);
  }
  Tensor forward(const Tensor& x) override { return x + norm(fc2(drop(nn::gelu(fc1(x))))); }
};

std::shared_ptr<nn::Sequential> make_stack(int blocks, bool remat_blocks, bool remat_whole = false) {
  auto model = std::make_shared<nn::Sequential>();
  for (int i = 0; i < blocks; ++i) {
    auto block = std::make_shared<Block>();
    model->add(remat_blocks ? nn::remat(block) : block);
  }
  if (remat_whole) nn::remat(model);
  return model;
}

// Forward, backward, and every output and gradient (the input's included).
std::vector<Tensor> run_step(nn::Module& model, const Tensor& x0) {
  Tensor x = x0.detach();
  x.requires_grad_(true);
  const Tensor y = model(x);
  sum(square(y) * 0.5 + y).backward();
  std::vector<Tensor> results{y.detach(), x.grad()};
  for (const auto& [path, p] : model.named_parameters()) results.push_back(p.grad());
  model.zero_grad();
  return results;
}

void check_bitwise(const std::vector<Tensor>& got, const std::vector<Tensor>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("result " << i);
    REQUIRE(got[i].defined());
    CHECK(bit_difference(got[i], want[i]).count == 0);
  }
}

}  // namespace

TEST_CASE("nn::remat: outputs and gradients bitwise the plain run's, dropout included, over several steps") {
  const Tensor x = random_normal(make_key(1), {5, 6});
  auto plain = make_stack(4, false);
  auto remat = make_stack(4, true);
  plain->init(x);
  remat->init(x);
  for (int step = 0; step < 3; ++step) {  // each step draws new dropout masks: the keys must stay in step
    INFO("step " << step);
    const std::vector<Tensor> want = run_step(*plain, x);
    check_bitwise(run_step(*remat, x), want);
  }
  // The masks really differ between steps (dropout is on), so the check above is not vacuous.
  CHECK(bit_difference(run_step(*plain, x)[0], run_step(*plain, x)[0]).count > 0);
}

TEST_CASE("nn::remat: nested remat, and creating the parameters at the first call under remat") {
  const Tensor x = random_normal(make_key(2), {3, 6});
  auto plain = make_stack(3, false);
  auto nested = make_stack(3, true, /*remat_whole=*/true);  // no init(): lazy parameters created inside checkpoint
  CHECK(nested->is_remat());
  const std::vector<Tensor> got = run_step(*nested, x);
  plain->init(x);
  check_bitwise(got, run_step(*plain, x));
  check_bitwise(run_step(*nested, x), run_step(*plain, x));
}

TEST_CASE("checkpoint: the tape keeps one node with the inputs and the parameters read") {
  nn::Dense fc({.features = 4});
  const Tensor x = random_normal(make_key(3), {2, 3});
  fc.init(x);
  Tensor xr = x.detach();
  xr.requires_grad_(true);
  auto f = checkpoint([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{tanh(fc(exp(in[0])))}; });
  const Tensor y = f({xr})[0];
  REQUIRE(y.grad_fn());
  CHECK(std::string(y.grad_fn()->op) == "checkpoint");
  CHECK(y.grad_fn()->inputs.size() == 3);  // x, fc.kernel, fc.bias: exp's and Dense's outputs are gone
  CHECK(y.to_vector() == tanh(fc(exp(x))).to_vector());
  {
    NoGradGuard off;  // recording off: f just runs
    CHECK_FALSE(f({xr})[0].requires_grad());
  }
}

TEST_CASE("checkpoint: several outputs and nested checkpoints, bitwise the plain gradients") {
  const Tensor a0 = random_normal(make_key(4), {3, 4}, DType::Float64);
  const Tensor w = random_normal(make_key(5), {4, 4}, DType::Float64);
  auto body = [](const Tensor& a, const Tensor& w) {
    const Tensor h = tanh(matmul(a, w));
    return std::vector<Tensor>{h * a, sum(exp(h), {1})};
  };
  auto run = [&](bool checkpointed) {
    Tensor a = a0.detach(), wl = w.detach();
    a.requires_grad_(true);
    wl.requires_grad_(true);
    std::vector<Tensor> outs;
    // The functions live until backward: it runs them again.
    auto inner = checkpoint([&](const std::vector<Tensor>& in) { return body(in[0], wl); });
    auto outer = checkpoint([&](const std::vector<Tensor>& in) {
      const std::vector<Tensor> o = inner({sin(in[0])});
      return std::vector<Tensor>{o[0] * 2.0, o[1]};
    });
    if (checkpointed) {
      outs = outer({a});
    } else {
      const std::vector<Tensor> o = body(sin(a), wl);
      outs = {o[0] * 2.0, o[1]};
    }
    const std::vector<Tensor> g = grad({sum(outs[0]) + sum(square(outs[1]))}, {a, wl});
    return std::vector<Tensor>{outs[0].detach(), outs[1].detach(), g[0], g[1]};
  };
  check_bitwise(run(true), run(false));
}

TEST_CASE("checkpoint: higher-order gradients under grad(create_graph)") {
  const Tensor x0 = random_normal(make_key(6), {2, 3}, DType::Float64);
  const Tensor w0 = random_normal(make_key(7), {3, 3}, DType::Float64);
  // d/d(x, w) of |∂L/∂x|², L = Σ tanh(x w)³: second order through the recomputation.
  auto run = [&](bool checkpointed) {
    Tensor x = x0.detach(), w = w0.detach();
    x.requires_grad_(true);
    w.requires_grad_(true);
    auto f = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{pow(tanh(matmul(in[0], w)), 3.0)}; };
    const Tensor y = checkpointed ? checkpoint(f)({x})[0] : f({x})[0];
    const Tensor gx = grad({sum(y)}, {x}, {}, {.create_graph = true})[0];
    const std::vector<Tensor> gg = grad({sum(square(gx))}, {x, w});
    return std::vector<Tensor>{gx.detach(), gg[0], gg[1]};
  };
  check_bitwise(run(true), run(false));
  // And against finite differences, to first and second order, in x and a parameter it reads.
  Tensor w = w0.detach();
  w.requires_grad_(true);
  auto block = checkpoint([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{tanh(matmul(in[0], w)) * in[1]}; });
  test_support::check_first_and_second_order(
      "checkpoint(tanh(x w) * s)", [&](const std::vector<Tensor>& in) { return block({in[0], in[1]})[0]; },
      {x0, random_normal(make_key(8), {2, 3}, DType::Float64)});
  test_support::check_first_and_second_order(
      "checkpoint in its captured parameter",
      [&](const std::vector<Tensor>& in) {
        return checkpoint([&](const std::vector<Tensor>& v) { return std::vector<Tensor>{tanh(matmul(v[0], in[0]))}; })({x0})[0];
      },
      {w0});
}

TEST_CASE("checkpoint: errors") {
  CHECK_THROWS_AS(checkpoint(CheckpointFunction{}), ValueError);
  Tensor w = random_normal(make_key(9), {3});
  w.requires_grad_(true);
  const Tensor outside = exp(w);  // computed outside f and requires grad: must be passed in
  auto reads_outside = checkpoint([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0] * outside}; });
  CHECK_THROWS_WITH_AS(reads_outside({ones({3})}), doctest::Contains("computed outside it by 'exp'"), ValueError);
  auto mixed = checkpoint([](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{in[0], cast(in[0], DType::Float64)};
  });
  CHECK_THROWS_AS(mixed({w}), DTypeError);
  auto nothing = checkpoint([](const std::vector<Tensor>&) { return std::vector<Tensor>{}; });
  CHECK_THROWS_AS(nothing({w}), ValueError);
}
