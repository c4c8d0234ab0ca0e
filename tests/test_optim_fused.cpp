// The fused Adam step (GradientTransformation::fused_step of adam, nadam, adamw)
// against the unfused chain it stands for: parameters and state bitwise equal
// after several steps, in float32 and float64, with a weight-decay mask, a
// learning-rate schedule, a parameter without gradient, and tensors large enough
// to be split across threads; then resume from a state_dict, and the fallbacks.
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "xgrad.hpp"
#include "test_support.hpp"

using namespace xgrad;

namespace {

// Parameters of assorted sizes (one above the threading threshold, odd lengths
// for the vector loops' tails) with fixed random values.
optim::NamedTensors make_params(DType dtype) {
  const std::vector<std::pair<std::string, Shape>> shapes = {
      {"dense.kernel", {300, 301}}, {"dense.bias", {301}}, {"out.kernel", {13, 7}}, {"out.bias", {7}}};
  optim::NamedTensors params;
  std::uint64_t seed = 1;
  for (const auto& [path, shape] : shapes)
    params.emplace_back(path, random_normal(make_key(seed++), shape, dtype).requires_grad_());
  return params;
}

optim::NamedTensors deep_copy(const optim::NamedTensors& params) {
  optim::NamedTensors out;
  for (const auto& [path, p] : params) out.emplace_back(path, p.clone().requires_grad_());
  return out;
}

// Gradients for step `step`; "out.bias" gets none on odd steps (an unused parameter).
void set_gradients(const optim::NamedTensors& params, int step) {
  std::uint64_t seed = 100 + 10 * static_cast<std::uint64_t>(step);
  for (const auto& [path, p] : params) {
    Tensor g = random_normal(make_key(seed++), p.shape(), p.dtype());
    const_cast<Tensor&>(p).set_grad(path == "out.bias" && step % 2 == 1 ? Tensor() : g);
  }
}

// Every element converts exactly to double, so equal vectors mean equal values
// (no NaN arises in these runs).
bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.to_vector() == b.to_vector();
}

void check_same(const optim::NamedTensors& a, const optim::NamedTensors& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].first);
    CHECK(a[i].first == b[i].first);
    CHECK(bitwise_equal(a[i].second, b[i].second));
  }
}

optim::GradientTransformation without_fusion(optim::GradientTransformation tx) {
  tx.fused_step = nullptr;
  return tx;
}

// Runs `steps` steps fused and unfused from the same start; checks parameters and state.
void check_fused_equals_unfused(const optim::GradientTransformation& tx, DType dtype, int steps = 4) {
  REQUIRE(tx.fused_step);
  const optim::NamedTensors start = make_params(dtype);
  optim::NamedTensors fused_params = deep_copy(start), unfused_params = deep_copy(start);
  optim::Optimizer fused(fused_params, tx), unfused(unfused_params, without_fusion(tx));
  for (int step = 0; step < steps; ++step) {
    set_gradients(fused_params, step);
    set_gradients(unfused_params, step);
    fused.step();
    unfused.step();
  }
  check_same(fused_params, unfused_params);
  check_same(fused.state_dict(), unfused.state_dict());
  // The parameters moved: the comparison is not vacuous.
  CHECK_FALSE(bitwise_equal(fused_params[0].second, start[0].second));
}

}  // namespace

TEST_CASE("fused adam equals the unfused chain, float32 and float64, 1 and 2 threads") {
  for (int threads : {1, 2}) {
    const test_support::ThreadCountGuard thread_count(threads);
    for (DType dtype : {DType::Float32, DType::Float64}) {
      CAPTURE(threads);
      CAPTURE(dtype_name(dtype));
      check_fused_equals_unfused(optim::adam({.learning_rate = 1e-2}), dtype);
      check_fused_equals_unfused(optim::adam({.learning_rate = 1e-2, .eps_root = 1e-10}), dtype);
      check_fused_equals_unfused(optim::nadam({.learning_rate = 1e-2}), dtype);
      check_fused_equals_unfused(
          optim::adamw({.learning_rate = 1e-2,
                        .weight_decay = 0.1,
                        .mask = [](const std::string& path) { return path.ends_with("kernel"); }}),
          dtype);
      check_fused_equals_unfused(optim::adamw({.learning_rate = 1e-2, .weight_decay = 0.0, .nesterov = true}), dtype);
      check_fused_equals_unfused(
          optim::adamw({.learning_rate = optim::cosine_decay_schedule({.init_value = 0.1, .decay_steps = 3}),
                        .weight_decay = 0.01}),
          dtype, 5);
    }
  }
}

TEST_CASE("the fused step takes float32 and float64 parameters, with or without a gradient") {
  const auto tx = optim::adamw({.learning_rate = 1e-2});
  for (DType dtype : {DType::Float32, DType::Float64}) {
    CAPTURE(dtype_name(dtype));
    const optim::NamedTensors params = make_params(dtype);
    optim::OptState state = tx.init(params);
    set_gradients(params, 1);  // "out.bias" has none
    std::vector<Tensor> grads;
    for (const auto& [path, p] : params) grads.push_back(p.grad());
    CHECK(tx.fused_step(params, grads, state));
    CHECK(state.inner[0].second.counter("count") == 1);
  }
}

TEST_CASE("fused adamw: resume from a state_dict continues bit for bit") {
  const auto tx = optim::adamw({.learning_rate = optim::linear_schedule({.init_value = 0.1, .end_value = 0.01,
                                                                        .transition_steps = 4}),
                                .weight_decay = 0.05});
  const optim::NamedTensors start = make_params(DType::Float32);
  optim::NamedTensors straight_params = deep_copy(start);
  optim::Optimizer straight(straight_params, tx);
  for (int step = 0; step < 3; ++step) {
    set_gradients(straight_params, step);
    straight.step();
  }
  const optim::NamedTensors saved_state = straight.state_dict();
  optim::NamedTensors resumed_params = deep_copy(straight_params);
  optim::Optimizer resumed(resumed_params, tx);
  resumed.load_state_dict(saved_state);
  CHECK(resumed.learning_rate() == straight.learning_rate());
  for (int step = 3; step < 6; ++step) {
    set_gradients(straight_params, step);
    set_gradients(resumed_params, step);
    straight.step();
    resumed.step();
  }
  check_same(straight_params, resumed_params);
  check_same(straight.state_dict(), resumed.state_dict());
  CHECK(resumed.step_count() == 6);
}

TEST_CASE("fused adam declines operands it does not handle, and the Optimizer runs the chain") {
  const auto tx = optim::adam({.learning_rate = 1e-2});
  SUBCASE("bfloat16 parameters") {
    optim::NamedTensors params{{"w", random_normal(make_key(3), {37}, DType::BFloat16).requires_grad_()}};
    optim::OptState state = tx.init(params);
    set_gradients(params, 0);
    CHECK_FALSE(tx.fused_step(params, {params[0].second.grad()}, state));
    CHECK(state.inner[0].second.counter("count") == 0);  // untouched
    check_fused_equals_unfused(tx, DType::BFloat16);
  }
  SUBCASE("a bfloat16 first moment (mu_dtype)") {
    check_fused_equals_unfused(optim::adam({.learning_rate = 1e-2, .mu_dtype = DType::BFloat16}), DType::Float32);
  }
  SUBCASE("a parameter listed twice, or as its own gradient") {
    const Tensor w = random_normal(make_key(3), {5}, DType::Float32).requires_grad_();
    const optim::NamedTensors twice{{"a", w}, {"b", w}};
    optim::OptState state = tx.init(twice);
    CHECK_FALSE(tx.fused_step(twice, {ones({5}), ones({5})}, state));
    const optim::NamedTensors once{{"a", w}};
    optim::OptState state_once = tx.init(once);
    CHECK_FALSE(tx.fused_step(once, {w}, state_once));
    // Gradients may share storage with each other.
    const optim::NamedTensors two{{"a", w}, {"b", w.clone()}};
    optim::OptState state_two = tx.init(two);
    const Tensor g = ones({5});
    CHECK(tx.fused_step(two, {g, g}, state_two));
  }
  SUBCASE("a float64 gradient for a float32 parameter") {
    optim::NamedTensors params{{"w", random_normal(make_key(3), {5}, DType::Float32).requires_grad_()}};
    optim::OptState state = tx.init(params);
    CHECK_FALSE(tx.fused_step(params, {random_normal(make_key(4), {5}, DType::Float64)}, state));
  }
}

TEST_CASE("combinators drop the fused step") {
  CHECK(optim::adam({.learning_rate = 1e-3}).fused_step);
  CHECK(optim::adamw({.learning_rate = 1e-3}).fused_step);
  CHECK_FALSE(optim::chain(optim::clip_by_global_norm(1.0), optim::adam({.learning_rate = 1e-3})).fused_step);
  CHECK_FALSE(optim::lamb({.learning_rate = 1e-3}).fused_step);
}
