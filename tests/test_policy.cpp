// Precision policy parsing and application, and dynamic loss scaling.
#include <cmath>

#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;

TEST_CASE("parse_policy reads params, compute and output dtypes") {
  nn::DTypePolicy p = nn::parse_policy("params=float32,compute=bfloat16,output=float32");
  CHECK(p.param_dtype == DType::Float32);
  CHECK(p.compute_dtype == DType::BFloat16);
  CHECK(p.output_dtype == DType::Float32);
  CHECK(p.to_string() == "params=float32,compute=bfloat16,output=float32");
  nn::DTypePolicy short_form = nn::parse_policy("c=half, p=full");
  CHECK(short_form.compute_dtype == DType::Float16);
  CHECK(short_form.param_dtype == DType::Float32);
  CHECK_FALSE(short_form.output_dtype.has_value());
  CHECK(short_form.to_string() == "params=float32,compute=float16,output=unchanged");
  CHECK(nn::parse_policy("").to_string() == "params=float32,compute=promoted,output=unchanged");
  CHECK_THROWS_WITH_AS(nn::parse_policy("params=f32,compute=f8"), "parse_policy: unknown dtype 'f8' in \"params=f32,compute=f8\"",
                       ValueError);
  CHECK_THROWS_WITH_AS(nn::parse_policy("params=int32"),
                       "parse_policy: dtype 'int32' in \"params=int32\" is not a floating dtype", ValueError);
  CHECK_THROWS_WITH_AS(nn::parse_policy("weights=f32"),
                       "parse_policy: unknown key 'weights' in \"weights=f32\" (expected params, compute or output)",
                       ValueError);
  CHECK_THROWS_WITH_AS(nn::parse_policy("p=f32,params=f16"), "parse_policy: key 'params' given twice in \"p=f32,params=f16\"",
                       ValueError);
  CHECK_THROWS_WITH_AS(nn::parse_policy("bf16"), "parse_policy: expected key=value, got 'bf16' in \"bf16\"", ValueError);
}

TEST_CASE("DynamicLossScale unscales, skips non-finite steps, shrinks and grows") {
  nn::DynamicLossScale scaler({.initial_scale = 8, .growth_interval = 2});
  CHECK(scaler.scale(scalar(0.5)).item() == 4.0);
  std::vector<Tensor> grads{full({2}, 16.0), full({1}, 8.0, DType::Float16)};
  CHECK(scaler.unscale_and_check(grads));
  CHECK(grads[0].to_vector() == std::vector<double>{2, 2});
  CHECK(grads[1].item() == 1.0);
  CHECK(scaler.loss_scale() == 8);
  CHECK(scaler.good_steps() == 1);
  std::vector<Tensor> more{full({1}, 8.0)};
  CHECK(scaler.unscale_and_check(more));
  CHECK(scaler.loss_scale() == 16);  // two good steps in a row: grow
  CHECK(scaler.good_steps() == 0);
  std::vector<Tensor> overflow{full({2}, 1.0), from_vector({1.0, INFINITY}, {2})};
  CHECK_FALSE(scaler.unscale_and_check(overflow));
  CHECK(scaler.loss_scale() == 8);
  std::vector<Tensor> nan{full({1}, NAN)};
  CHECK_FALSE(scaler.unscale_and_check(nan));
  CHECK(scaler.loss_scale() == 4);
  nn::DynamicLossScale floor({.initial_scale = 1});
  CHECK_FALSE(floor.unscale_and_check(nan));
  CHECK(floor.loss_scale() == 1);  // never below min_scale
  CHECK_THROWS_WITH_AS(nn::DynamicLossScale({.factor = 1}),
                       "DynamicLossScale: needs initial_scale > 0, factor > 1, growth_interval >= 1 and min_scale > 0 "
                       "(got 32768, 1, 2000, 1)",
                       ValueError);
}

TEST_CASE("DynamicLossScale unscales two leaves of one add once each (issue 14.1)") {
  // add's VJP hands both inputs the same gradient tensor; were the leaves' .grad()
  // to share it, unscaling p1's then p2's would divide it twice (1/32768 instead of 1).
  Tensor p1 = ones({4}), p2 = ones({4});
  p1.requires_grad_();
  p2.requires_grad_();
  nn::DynamicLossScale scaler;
  scaler.scale((p1 + p2).sum()).backward();
  std::vector<Tensor> grads{p1.grad(), p2.grad()};
  CHECK(scaler.unscale_and_check(grads));
  CHECK(p1.grad().to_vector() == std::vector<double>(4, 1.0));
  CHECK(p2.grad().to_vector() == std::vector<double>(4, 1.0));
  // A list that names one storage twice is unscaled once.
  Tensor g = full({2}, 65536.0);
  std::vector<Tensor> twice{g, g.detach()};
  CHECK(scaler.unscale_and_check(twice));
  CHECK(g.to_vector() == std::vector<double>{2, 2});
}

TEST_CASE("float16 gradients that underflow unscaled survive with loss scaling") {
  // float32 parameter, float16 compute: d/dw (w * 2^-14 * 2^-14) = 2^-28 underflows float16
  // (smallest subnormal 2^-24) on its way back; scaled by 2^15 it stays representable.
  const double tiny = std::ldexp(1.0, -14);
  Tensor w = ones({1}, DType::Float32);
  w.requires_grad_();
  auto loss = [&] { return (cast(w, DType::Float16) * tiny * tiny).sum(); };
  loss().backward();
  CHECK(w.grad().item() == 0.0);
  w.zero_grad();
  nn::DynamicLossScale scaler;
  scaler.scale(loss()).backward();
  std::vector<Tensor> grads{w.grad()};
  CHECK(scaler.unscale_and_check(grads));
  CHECK(w.grad().item() == std::ldexp(1.0, -28));
}

namespace {

struct Classifier : nn::Module {
  nn::Dense fc1{{.features = 32}}, fc2{{.features = 4}};
  Classifier() {
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }
  Tensor forward(const Tensor& x) override { return fc2(nn::relu(fc1(x))); }
};

// Full-batch SGD on labels from a random linear teacher; returns the loss per step.
std::vector<double> train(const std::string& policy, int steps) {
  Classifier model;
  if (!policy.empty()) nn::apply_policy(model, nn::parse_policy(policy));
  const Tensor x = random_normal(make_key(1), {256, 16});
  const Tensor labels = argmax(matmul(x, random_normal(make_key(2), {16, 4})), -1);
  std::vector<double> curve;
  for (int step = 0; step < steps; ++step) {
    Tensor loss = losses::softmax_cross_entropy(model(x), labels, losses::Reduction::Mean);
    curve.push_back(loss.item());
    loss.backward();
    NoGradGuard no_grad;
    for (Tensor p : model.parameters()) {
      p.copy_(p - p.grad() * 0.5);
      p.zero_grad();
    }
  }
  return curve;
}

}  // namespace

TEST_CASE("apply_policy sets compute and param dtypes on every layer and casts the root output") {
  Classifier model;
  nn::apply_policy(model, nn::parse_policy("params=float32,compute=bfloat16,output=float32"));
  const std::string table = model.summary(ones({2, 16}));
  CHECK(table.find("(root)  Classifier          [2, 16]  [2, 4] float32") != std::string::npos);
  CHECK(table.find("fc1     Dense, features=32  [*, 16]  [2, 32] bfloat16") != std::string::npos);
  CHECK(model.fc1.options().dtype == DType::BFloat16);
  for (const Tensor& p : model.parameters()) CHECK(p.dtype() == DType::Float32);
  // Changing param_dtype after init converts the parameters in place: handles stay valid.
  Tensor kernel = model.fc1.named_parameters()[0].second;
  nn::apply_policy(model, nn::parse_policy("params=bfloat16"));
  CHECK(kernel.dtype() == DType::BFloat16);
  CHECK(model(ones({2, 16}, DType::BFloat16)).dtype() == DType::BFloat16);  // promoted: no compute dtype now
}

TEST_CASE("an MLP with bfloat16 compute and float32 params trains like float32") {
  const std::vector<double> f32 = train("", 60);
  const std::vector<double> bf16 = train("params=float32,compute=bfloat16,output=float32", 60);
  MESSAGE("float32 loss " << f32.front() << " -> " << f32.back() << "; bfloat16 compute " << bf16.front() << " -> "
                          << bf16.back());
  CHECK(f32.back() < 0.4 * f32.front());
  CHECK(bf16.back() < 0.4 * bf16.front());
  CHECK(std::abs(bf16.back() - f32.back()) < 0.1 * f32.front());
}

namespace {

struct OneWeight : nn::Module {
  Tensor forward(const Tensor& x) override {
    return x * param("w", {1}, nn::initializers::constant(1.0), DType::Float32);
  }
};

}  // namespace

TEST_CASE("DynamicLossScale::step unscales, steps the optimizer when finite and skips it otherwise") {
  OneWeight model;
  model.init(ones({1}));
  optim::Optimizer opt(model, optim::sgd({.learning_rate = 0.5}));
  nn::DynamicLossScale scaler({.initial_scale = 1024, .growth_interval = 100});
  // loss = 3 w: the unscaled gradient is 3, so SGD moves w from 1 to 1 - 0.5 * 3.
  opt.zero_grad();
  scaler.scale((model(full({1}, 3.0))).sum()).backward();
  CHECK(model.named_parameters()[0].second.grad().item() == 3 * 1024.0);
  CHECK(scaler.step(opt, model));
  CHECK(model.named_parameters()[0].second.item() == -0.5);
  CHECK(opt.step_count() == 1);
  CHECK(scaler.loss_scale() == 1024);
  // An overflowing gradient: the step is skipped (w unchanged) and the scale halves.
  opt.zero_grad();
  scaler.scale((model(full({1}, INFINITY))).sum()).backward();
  CHECK_FALSE(scaler.step(opt, model));
  CHECK(model.named_parameters()[0].second.item() == -0.5);
  CHECK(opt.step_count() == 1);
  CHECK(scaler.loss_scale() == 512);
}

TEST_CASE("with compute=bfloat16 and no output entry the logits are bfloat16 but the loss is float32") {
  struct Tiny : nn::Module {
    nn::Dense fc{{.features = 2}};
    Tiny() { register_module("fc", fc); }
    Tensor forward(const Tensor& x) override { return fc(x); }
  } model;
  nn::apply_policy(model, nn::parse_policy("params=float32,compute=bfloat16"));
  const Tensor x = random_normal(make_key(5), {4, 3});
  const Tensor logits = model(x);
  CHECK(logits.dtype() == DType::BFloat16);
  const Tensor loss = losses::softmax_cross_entropy(logits, from_vector({0, 1, 1, 0}, {4}, DType::Int64),
                                                    losses::Reduction::Mean);
  CHECK(loss.dtype() == DType::Float32);
}
