// The stateful Optimizer: convergence on standard problems, bit-identical resume
// from a state_dict, lazy models, gradients that are missing, and errors.
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;
using doctest::Approx;

namespace {

// f(x) = ½(x₀² + 100x₁²): condition number 100, minimum 0 at the origin.
Tensor ill_conditioned_quadratic(const Tensor& x) {
  const Tensor a = from_vector({1.0, 100.0}, {2}, DType::Float64);
  return (0.5 * a * x * x).sum();
}

// Rosenbrock (1 − x)² + 100(y − x²)², minimum 0 at (1, 1).
Tensor rosenbrock(const Tensor& x, const Tensor& y) {
  const Tensor dx = 1.0 - x;
  const Tensor dy = y - x * x;
  return (dx * dx + 100.0 * dy * dy).sum();
}

double minimise_quadratic(const optim::GradientTransformation& tx, int steps) {
  Tensor x = from_vector({1.0, 1.0}, {2}, DType::Float64).requires_grad_();
  optim::Optimizer opt({{"x", x}}, tx);
  for (int i = 0; i < steps; ++i) {
    Tensor loss = ill_conditioned_quadratic(x);
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  return ill_conditioned_quadratic(x).item();
}

double minimise_rosenbrock(const optim::GradientTransformation& tx, int steps) {
  Tensor x = from_vector({-1.2}, {1}, DType::Float64).requires_grad_();
  Tensor y = from_vector({1.0}, {1}, DType::Float64).requires_grad_();
  optim::Optimizer opt({{"x", x}, {"y", y}}, tx);
  for (int i = 0; i < steps; ++i) {
    Tensor loss = rosenbrock(x, y);
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  return rosenbrock(x, y).item();
}

}  // namespace

TEST_CASE("sgd and sgd with momentum minimise an ill-conditioned quadratic") {
  // Plain gradient descent contracts the flat direction by (1 − lr) per step.
  const double sgd = minimise_quadratic(optim::sgd({.learning_rate = 0.019}), 600);
  MESSAGE("sgd, 600 steps: f = " << sgd);
  CHECK(sgd < 1e-9);
  // Heavy ball with the optimal lr = 4/(√L + √μ)² and momentum ((√κ − 1)/(√κ + 1))².
  const double momentum = minimise_quadratic(optim::sgd({.learning_rate = 4.0 / 121.0, .momentum = 81.0 / 121.0}), 150);
  MESSAGE("momentum, 150 steps: f = " << momentum);
  CHECK(momentum < 1e-12);
  const double nesterov =
      minimise_quadratic(optim::sgd({.learning_rate = 0.01, .momentum = 0.9, .nesterov = true}), 300);
  MESSAGE("nesterov, 300 steps: f = " << nesterov);
  CHECK(nesterov < 1e-9);
}

TEST_CASE("adam and adamw minimise the Rosenbrock function") {
  // From (−1.2, 1) along the curved valley; a decaying rate lets Adam settle at the bottom.
  const auto lr = optim::cosine_decay_schedule({.init_value = 0.1, .decay_steps = 3000});
  const double adam = minimise_rosenbrock(optim::adam({.learning_rate = lr}), 3000);
  MESSAGE("adam, 3000 steps: f = " << adam);
  CHECK(adam < 1e-9);
  const double adamw = minimise_rosenbrock(optim::adamw({.learning_rate = lr, .weight_decay = 1e-4}), 3000);
  MESSAGE("adamw, 3000 steps: f = " << adamw);
  CHECK(adamw < 1e-6);  // decay pulls the fixed point slightly off (1, 1)
}

namespace {

// A small least-squares problem: mean((Σⱼ xᵢⱼwⱼ + b − yᵢ)²), float32 parameters.
struct Regression {
  Tensor x = from_vector({0.5, -1.0, 2.0, 1.5, 0.0, -0.5, -2.0, 1.0, 0.25, 1.0, 1.0, -1.0}, {4, 3});
  Tensor y = from_vector({1.0, -1.0, 0.5, 2.0}, {4});
  Tensor loss(const optim::NamedTensors& params) const {
    const Tensor residual = sum(x * params[0].second, {1}) + params[1].second - y;
    return (residual * residual).mean();
  }
};

optim::NamedTensors fresh_regression_params() {
  return {{"fc.kernel", from_vector({0.1, -0.2, 0.3}, {3}).requires_grad_()},
          {"fc.bias", from_vector({0.1}, {1}).requires_grad_()}};
}

// Clipping, a warmup-cosine schedule and masked decoupled weight decay: every kind of state.
optim::GradientTransformation resumable_transformation() {
  return optim::chain(optim::clip_by_global_norm(1.0),
                      optim::adamw({.learning_rate = optim::warmup_cosine_decay_schedule({.init_value = 0.0,
                                                                                           .peak_value = 0.05,
                                                                                           .warmup_steps = 5,
                                                                                           .decay_steps = 40}),
                                    .weight_decay = 1e-2,
                                    .mask = [](const std::string& path) { return path.ends_with("kernel"); }}));
}

// Runs `steps` steps and returns every parameter value after each step.
std::vector<std::vector<double>> train(optim::Optimizer& opt, const optim::NamedTensors& params, int steps) {
  const Regression problem;
  std::vector<std::vector<double>> trajectory;
  for (int i = 0; i < steps; ++i) {
    Tensor loss = problem.loss(params);
    opt.zero_grad();
    loss.backward();
    opt.step();
    std::vector<double> values;
    for (const auto& [path, p] : params)
      for (double v : p.to_vector()) values.push_back(v);
    trajectory.push_back(values);
  }
  return trajectory;
}

}  // namespace

TEST_CASE("a run resumed from state_dict continues bit-identically") {
  auto params = fresh_regression_params();
  optim::Optimizer opt(params, resumable_transformation());
  train(opt, params, 10);
  const optim::NamedTensors saved_state = opt.state_dict();
  optim::NamedTensors saved_params;
  for (const auto& [path, p] : params) saved_params.emplace_back(path, p.clone());
  const double lr_at_10 = opt.learning_rate();
  const auto continued = train(opt, params, 10);

  optim::NamedTensors restored;
  for (const auto& [path, p] : saved_params) restored.emplace_back(path, p.clone().requires_grad_());
  optim::Optimizer resumed(restored, resumable_transformation());
  resumed.load_state_dict(saved_state);
  CHECK(resumed.step_count() == 10);
  CHECK(resumed.learning_rate() == lr_at_10);
  const auto replayed = train(resumed, restored, 10);
  CHECK(replayed == continued);  // exact equality, step by step
  CHECK(resumed.step_count() == opt.step_count());
  CHECK(resumed.learning_rate() == opt.learning_rate());

  // The keys name the chain position, the optax state field and the parameter path.
  std::vector<std::string> keys;
  for (const auto& [key, t] : saved_state) keys.push_back(key);
  CHECK(keys == std::vector<std::string>{"opt.1.0.mu.fc.kernel", "opt.1.0.mu.fc.bias", "opt.1.0.nu.fc.kernel",
                                         "opt.1.0.nu.fc.bias", "opt.1.0.count", "opt.1.2.count", "step"});
  CHECK(saved_state[4].second.item() == 10);
  CHECK(saved_state[6].second.dtype() == DType::Int64);
}

TEST_CASE("learning_rate() follows the schedule; step_count() counts steps") {
  auto params = fresh_regression_params();
  optim::Optimizer opt(params, resumable_transformation());
  CHECK(opt.learning_rate() == 0.0);  // warmup starts at init_value
  train(opt, params, 2);
  CHECK(opt.step_count() == 2);
  CHECK(opt.learning_rate() == Approx(0.02));  // 2/5 of the way to 0.05
  train(opt, params, 3);
  CHECK(opt.learning_rate() == Approx(0.05));
  optim::Optimizer no_lr(fresh_regression_params(), optim::clip(1.0));
  try {
    no_lr.learning_rate();
    FAIL("expected a ValueError");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()) == "Optimizer.learning_rate: the transformation has no learning rate");
  }
}

TEST_CASE("step updates in place, bumps versions, and zero_grad drops gradients") {
  Tensor w = from_vector({1.0, -2.0}, {2}).requires_grad_();
  optim::Optimizer opt({{"w", w}}, optim::sgd({.learning_rate = 0.5}));
  (w * w).sum().backward();  // g = 2w
  const auto version = w.version();
  const Tensor grad_before = w.grad().clone();
  opt.step();
  CHECK(w.to_vector() == std::vector<double>{0.0, 0.0});
  CHECK(w.version() == version + 1);
  CHECK(w.grad().to_vector() == grad_before.to_vector());  // the gradient itself is not consumed
  opt.zero_grad();
  CHECK(!w.grad().defined());
}

TEST_CASE("a parameter without a gradient gets a zero gradient, as jax.grad gives") {
  Tensor used = from_vector({1.0}, {1}, DType::Float64).requires_grad_();
  Tensor unused = from_vector({2.0}, {1}, DType::Float64).requires_grad_();
  optim::Optimizer opt({{"used", used}, {"unused", unused}}, optim::adamw({.learning_rate = 0.1, .weight_decay = 0.5}));
  (used * used).sum().backward();
  opt.step();
  // Zero gradient: the adam direction is 0, decoupled decay still applies: 2 − 0.1·0.5·2.
  CHECK(unused.item() == Approx(1.9).epsilon(1e-14));
  // g = 2: first adam direction g/(|g| + 1e-8).
  CHECK(used.item() == Approx(1.0 - 0.1 * (2.0 / (2.0 + 1e-8) + 0.5)).epsilon(1e-14));
}

namespace {

// Creates its parameter at the first call, as xgrad modules do.
struct LazyModel {
  Tensor weight;
  optim::NamedTensors named_parameters() const {
    if (!weight.defined()) return {};
    return {{"weight", weight}};
  }
  Tensor operator()(const Tensor& x) {
    if (!weight.defined()) weight = full({x.size(-1)}, 1.0).requires_grad_();
    return (x * weight).sum();
  }
};

}  // namespace

TEST_CASE("an Optimizer over a model fetches its parameters lazily") {
  LazyModel model;
  optim::Optimizer opt(model, optim::sgd({.learning_rate = 0.1, .momentum = 0.9}));
  opt.zero_grad();  // nothing to do yet
  CHECK(opt.learning_rate() == 0.1);
  try {
    opt.step();
    FAIL("expected a ValueError");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()) ==
          "Optimizer.step: the model has no parameters yet (they are created at its first call)");
  }
  // A checkpoint loaded before the first call is applied when the parameters appear.
  opt.load_state_dict({{"opt.0.trace.weight", from_vector({1.0, 1.0}, {2})}, {"step", scalar(7, DType::Int64)}});
  const Tensor x = from_vector({1.0, 2.0}, {2});
  Tensor loss = model(x);
  opt.zero_grad();
  loss.backward();
  opt.step();  // τ = g + 0.9·1, w = 1 − 0.1τ
  CHECK(model.weight.to_vector()[0] == Approx(1.0 - 0.1 * (1.0 + 0.9)));
  CHECK(model.weight.to_vector()[1] == Approx(1.0 - 0.1 * (2.0 + 0.9)));
  CHECK(opt.step_count() == 8);
  CHECK(opt.params().size() == 1);
}

TEST_CASE("Optimizer errors name the problem") {
  auto check_throws = [](auto&& f, const std::string& message) {
    try {
      f();
      FAIL("expected an exception");
    } catch (const Error& e) {
      CHECK(std::string(e.what()) == message);
    }
  };
  Tensor w = zeros({2});
  check_throws([&] { optim::Optimizer({{"w", w}, {"w", w}}, optim::sgd({.learning_rate = 0.1})); },
               "Optimizer: parameter path 'w' appears twice");
  check_throws([&] { optim::Optimizer({{"i", zeros({2}, DType::Int32)}}, optim::sgd({.learning_rate = 0.1})); },
               "Optimizer: parameter 'i' is int32; parameters must be floating");
  optim::Optimizer opt({{"w", w}}, optim::adam({.learning_rate = 0.1}));
  auto state = opt.state_dict();
  state.pop_back();
  check_throws([&] { opt.load_state_dict(state); }, "Optimizer.load_state_dict: missing key 'step'");
  state.emplace_back("step", scalar(3.0));
  check_throws([&] { opt.load_state_dict(state); },
               "Optimizer.load_state_dict: 'step' must be a 0-d int64 tensor, got float32 []");
  state.back().second = scalar(3, DType::Int64);
  state.emplace_back("opt.0.mu.v", zeros({2}));
  check_throws([&] { opt.load_state_dict(state); }, "Optimizer.load_state_dict: unexpected keys: opt.0.mu.v.");
  CHECK(opt.step_count() == 0);  // a failed load changes nothing
}

TEST_CASE("a fresh process resumes from a checkpoint file and continues bit-identically") {
  // Parent: 10 steps, checkpoint (params + optimizer state) to .npz, 10 more steps.
  const auto dir = std::filesystem::temp_directory_path() / ("xgrad-resume-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string checkpoint = (dir / "checkpoint.npz").string(), replay = (dir / "replay.npy").string();
  auto params = fresh_regression_params();
  optim::Optimizer opt(params, resumable_transformation());
  train(opt, params, 10);
  std::map<std::string, Tensor> entries;
  for (const auto& [path, p] : params) entries["model." + path] = p.detach();
  for (const auto& [key, t] : opt.state_dict()) entries["optimizer." + key] = t;
  save_npz(checkpoint, entries);
  const auto continued = train(opt, params, 10);

  // Child: a new process with nothing but the file rebuilds params and optimizer,
  // trains 10 steps and writes its trajectory for the parent to compare.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int status = 1;
    try {
      const auto loaded = load_npz(checkpoint);
      optim::NamedTensors restored;
      for (const auto& [path, p] : fresh_regression_params())
        restored.emplace_back(path, loaded.at("model." + path).clone().requires_grad_());
      // The file's entries come back sorted by name; hand them over in the
      // optimizer's own key order, read off a template optimizer.
      optim::Optimizer resumed(restored, resumable_transformation());
      optim::NamedTensors ordered;
      for (const auto& [key, t] : optim::Optimizer(fresh_regression_params(), resumable_transformation()).state_dict())
        ordered.emplace_back(key, loaded.at("optimizer." + key));
      resumed.load_state_dict(ordered);
      std::vector<double> flat;
      for (const auto& step : train(resumed, restored, 10)) flat.insert(flat.end(), step.begin(), step.end());
      save_npy(replay, from_vector(flat, {10, static_cast<std::int64_t>(flat.size() / 10)}, DType::Float64));
      status = 0;
    } catch (...) {
    }
    ::_exit(status);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  const auto replayed = load_npy(replay).to_vector();
  std::vector<double> expected;
  for (const auto& step : continued) expected.insert(expected.end(), step.begin(), step.end());
  CHECK(replayed == expected);  // exact equality through a file and a new process
  std::filesystem::remove_all(dir);
}

TEST_CASE("int64 counters above 2^53 round-trip exactly through state_dict and an .npz file") {
  // 2^53 + 1 is the first integer a double cannot hold; 2^62 + 3 and −(2^61) − 5 test the high and sign bits.
  const std::int64_t step = (std::int64_t{1} << 53) + 1, count = (std::int64_t{1} << 62) + 3;
  Tensor x = from_vector({1.0, -2.0}, {2}, DType::Float64).requires_grad_();
  optim::Optimizer opt({{"x", x}}, optim::adam({.learning_rate = 0.1}));
  optim::NamedTensors state = opt.state_dict();
  for (auto& [key, t] : state) {
    if (key == "step") t = from_data<std::int64_t>(&step, {});
    if (key == "opt.0.count") t = from_data<std::int64_t>(&count, {});
  }
  opt.load_state_dict(state);
  CHECK(opt.step_count() == step);

  const auto dir = std::filesystem::temp_directory_path() / ("xgrad-int64-state-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string file = (dir / "state.npz").string();
  std::map<std::string, Tensor> entries;
  for (const auto& [key, t] : opt.state_dict()) entries[key] = t;
  save_npz(file, entries);
  const auto loaded = load_npz(file);
  std::filesystem::remove_all(dir);
  CHECK(loaded.at("step").data<std::int64_t>()[0] == step);
  CHECK(loaded.at("opt.0.count").data<std::int64_t>()[0] == count);

  Tensor y = from_vector({1.0, -2.0}, {2}, DType::Float64).requires_grad_();
  optim::Optimizer resumed({{"y", y}}, optim::adam({.learning_rate = 0.1}));
  optim::NamedTensors ordered;
  for (const auto& [key, t] : opt.state_dict()) ordered.emplace_back(key == "opt.0.mu.x"   ? "opt.0.mu.y"
                                                                     : key == "opt.0.nu.x" ? "opt.0.nu.y"
                                                                                           : key,
                                                                     loaded.at(key));
  resumed.load_state_dict(ordered);
  CHECK(resumed.step_count() == step);
  for (const auto& [key, t] : resumed.state_dict())
    if (key == "opt.0.count") CHECK(t.data<std::int64_t>()[0] == count);
}
