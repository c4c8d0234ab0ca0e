// differentially_private_aggregate against optax's formula worked by hand:
// clip each example's gradient to l2_norm_clip over all parameters jointly, sum,
// add Gaussian noise of std l2_norm_clip * noise_multiplier, divide by the batch.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

// Three examples: global norms 5, 0.5 and 0 (a: [3, 2], b: [3, 1]).
optim::NamedTensors per_example(DType dtype) {
  return {{"a", from_vector({3, 0, 0.3, 0, 0, 0}, {3, 2}, dtype)}, {"b", from_vector({4, 0.4, 0}, {3, 1}, dtype)}};
}

void check_values(const Tensor& t, const std::vector<double>& want, double tolerance) {
  const std::vector<double> got = t.to_vector();
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO(i << ": " << got[i] << " vs " << want[i]);
    CHECK(std::abs(got[i] - want[i]) <= tolerance * std::max(1.0, std::abs(want[i])));
  }
}

}  // namespace

TEST_CASE("differentially_private_aggregate without noise clips each example jointly, sums and averages") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    const double tol = dtype == DType::Float64 ? 1e-15 : 1e-7;
    auto tx = optim::differentially_private_aggregate(/*l2_norm_clip=*/1.0, /*noise_multiplier=*/0.0, /*seed=*/0);
    optim::NamedTensors updates = per_example(dtype);
    optim::OptState state = tx.init(updates);
    tx.update(updates, state, {});
    // multipliers min(1 / norm, 1) = [0.2, 1, 1 (0/0 counts as 1)]:
    // a = (0.2 [3, 0] + [0.3, 0]) / 3 = [0.3, 0], b = (0.2 * 4 + 0.4) / 3 = 0.4
    CHECK(updates[0].second.shape() == Shape{2});
    CHECK(updates[1].second.shape() == Shape{1});
    CHECK(updates[0].second.dtype() == dtype);
    check_values(updates[0].second, {0.3, 0.0}, tol);
    check_values(updates[1].second, {0.4}, tol);
  }
  // A clip above every norm leaves the plain mean; a clip of 0 zeroes everything.
  auto loose = optim::differentially_private_aggregate(10.0, 0.0, 0);
  optim::NamedTensors updates = per_example(DType::Float64);
  optim::OptState state = loose.init(updates);
  loose.update(updates, state, {});
  check_values(updates[0].second, {1.1, 0.0}, 1e-15);
  check_values(updates[1].second, {4.4 / 3, }, 1e-15);
  auto zero = optim::differentially_private_aggregate(0.0, 0.0, 0);
  updates = per_example(DType::Float64);
  state = zero.init(updates);
  zero.update(updates, state, {});
  check_values(updates[0].second, {0.0, 0.0}, 0);
  check_values(updates[1].second, {0.0}, 0);
}

TEST_CASE("differentially_private_aggregate adds the documented noise draw, a fresh one each step") {
  const double clip = 1.0, multiplier = 0.5, std_dev = clip * multiplier;
  const std::uint64_t seed = 42;
  auto tx = optim::differentially_private_aggregate(clip, multiplier, seed);
  optim::NamedTensors updates = per_example(DType::Float64);
  optim::OptState state = tx.init(updates);
  const auto key_of = [](const optim::OptState& s) {
    return std::bit_cast<std::uint64_t>(s.counter("rng_key"));
  };
  CHECK(key_of(state) == make_key(seed).state);
  Key key = make_key(seed);
  const std::vector<double> clipped_a{0.9, 0.0}, clipped_b{1.2};  // the sums before noise (first test)
  for (int step = 0; step < 2; ++step) {
    INFO("step " << step);
    if (step > 0) updates = per_example(DType::Float64);
    tx.update(updates, state, {});
    const auto [next, step_key] = split(key);
    const std::vector<double> noise_a = random_normal(fold_in(step_key, "a"), {2}, DType::Float64).to_vector();
    const std::vector<double> noise_b = random_normal(fold_in(step_key, "b"), {1}, DType::Float64).to_vector();
    check_values(updates[0].second, {(clipped_a[0] + std_dev * noise_a[0]) / 3, (clipped_a[1] + std_dev * noise_a[1]) / 3},
                 1e-14);
    check_values(updates[1].second, {(clipped_b[0] + std_dev * noise_b[0]) / 3}, 1e-14);
    CHECK(noise_a[0] != 0.0);
    key = next;
    CHECK(key_of(state) == key.state);
  }
}

TEST_CASE("differentially_private_aggregate errors") {
  CHECK_THROWS_AS(optim::differentially_private_aggregate(-1.0, 1.0, 0), ValueError);
  CHECK_THROWS_AS(optim::differentially_private_aggregate(1.0, -0.5, 0), ValueError);
  auto tx = optim::differentially_private_aggregate(1.0, 0.0, 0);
  optim::NamedTensors mismatched{{"a", zeros({3, 2})}, {"b", zeros({2, 1})}};
  optim::OptState state = tx.init(mismatched);
  CHECK_THROWS_WITH_AS(tx.update(mismatched, state, {}), doctest::Contains("'b' has shape [2, 1]"), ShapeError);
  optim::NamedTensors scalar_grad{{"a", scalar(1.0)}};
  CHECK_THROWS_AS(tx.update(scalar_grad, state, {}), ShapeError);
}

TEST_CASE("differentially_private_aggregate on per_example_grads trains a model, state round trip") {
  nn::Dense dense({.features = 2});
  const Tensor x = random_normal(make_key(1), {8, 3});
  const Tensor y = random_normal(make_key(2), {8, 2});
  dense.init(x);
  auto tx = optim::chain(optim::differentially_private_aggregate(1.0, 0.1, 7), optim::sgd({.learning_rate = 0.1}));
  const optim::NamedTensors params = dense.named_parameters();
  optim::OptState state = tx.init(params);
  const auto loss = [&] { NoGradGuard g; return sum(square(dense(x) - y)).item(); };
  const double before = loss();
  for (int step = 0; step < 20; ++step) {
    const nn::StateDict g = per_example_grads(dense, [](const Tensor& o, const Tensor& t) { return sum(square(o - t), {1}); }, x, y);
    optim::NamedTensors updates;
    for (const auto& [path, p] : params) updates.emplace_back(path, g.at(path));
    tx.update(updates, state, params);
    optim::apply_updates(params, updates);
  }
  CHECK(loss() < 0.8 * before);
  // The key is ordinary counter state: it survives a checkpoint.
  optim::OptState fresh = tx.init(params);
  optim::load_state_from_named_tensors(fresh, optim::state_to_named_tensors(state, "opt"), "opt", "test");
  CHECK(fresh.inner[0].second.counter("rng_key") == state.inner[0].second.counter("rng_key"));
}

TEST_CASE("differentially_private_aggregate keeps its whole 64-bit key through a checkpoint; old files still load") {
  auto tx = optim::differentially_private_aggregate(1.0, 0.5, 42);
  optim::NamedTensors updates = per_example(DType::Float64);
  optim::OptState state = tx.init(updates);
  tx.update(updates, state, {});
  const std::int64_t key = state.counter("rng_key");
  // A key is 64 random bits: this one needs more than a double's 53 (a check that the test is meaningful).
  REQUIRE(static_cast<std::int64_t>(static_cast<double>(key)) != key);
  const optim::NamedTensors saved = optim::state_to_named_tensors(state, "opt");
  REQUIRE(saved.size() == 1);
  CHECK(saved[0].first == "opt.rng_key");
  optim::OptState restored = tx.init(updates);
  optim::load_state_from_named_tensors(restored, saved, "opt", "test");
  CHECK(restored.counter("rng_key") == key);

  // Checkpoints written before the fix hold the key as two 32-bit halves.
  const auto bits = std::bit_cast<std::uint64_t>(key);
  const auto hi = static_cast<std::int64_t>(bits >> 32), lo = static_cast<std::int64_t>(bits & 0xffffffffu);
  const optim::NamedTensors legacy{{"opt.rng_key_hi", from_data<std::int64_t>(&hi, {})},
                                   {"opt.rng_key_lo", from_data<std::int64_t>(&lo, {})}};
  optim::OptState from_legacy = tx.init(updates);
  optim::load_state_from_named_tensors(from_legacy, legacy, "opt", "test");
  CHECK(from_legacy.counter("rng_key") == key);
  // Half a pair is not a key: the strict load reports both the missing and the stray entry.
  CHECK_THROWS_WITH_AS(optim::load_state_from_named_tensors(from_legacy, {legacy[0]}, "opt", "test"),
                       "test: missing keys: opt.rng_key. unexpected keys: opt.rng_key_hi.", ValueError);
}
