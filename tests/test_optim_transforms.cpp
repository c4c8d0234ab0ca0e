// The building blocks on their own: clipping, weight decay and masks, chain,
// masked, trust ratio, schedules inside updates, dtypes, and error messages.
#include <string>
#include <vector>

#include <limits>

#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;
using doctest::Approx;

namespace {

optim::NamedTensors named(std::initializer_list<std::pair<std::string, std::vector<double>>> entries,
                          DType dtype = DType::Float32) {
  optim::NamedTensors out;
  for (const auto& [path, values] : entries)
    out.emplace_back(path, from_vector(values, {static_cast<std::int64_t>(values.size())}, dtype));
  return out;
}

// Runs one update of `tx` from a fresh state and returns the updates.
optim::NamedTensors update_once(const optim::GradientTransformation& tx, optim::NamedTensors updates,
                                const optim::NamedTensors& params) {
  optim::OptState state = tx.init(params);
  tx.update(updates, state, params);
  return updates;
}

std::vector<std::string> keys(const optim::NamedTensors& xs) {
  std::vector<std::string> out;
  for (const auto& [key, t] : xs) out.push_back(key);
  return out;
}

template <class E, class F>
void check_throws(F&& f, const std::string& message) {
  try {
    f();
    FAIL("expected an exception");
  } catch (const E& e) {
    CHECK(std::string(e.what()) == message);
  }
}

}  // namespace

TEST_CASE("clip_by_global_norm rescales all updates by max_norm/‖g‖ only when ‖g‖ ≥ max_norm") {
  const optim::NamedTensors none;  // clipping does not read the parameters; global norm below is 13
  auto kept = update_once(optim::clip_by_global_norm(26.0), named({{"a", {3, 4}}, {"b", {12}}}), none);
  CHECK(kept[0].second.to_vector() == std::vector<double>{3, 4});
  CHECK(kept[1].second.to_vector() == std::vector<double>{12});
  auto halved = update_once(optim::clip_by_global_norm(6.5), named({{"a", {3, 4}}, {"b", {12}}}), none);
  CHECK(halved[0].second.to_vector() == std::vector<double>{1.5, 2});
  CHECK(halved[1].second.to_vector() == std::vector<double>{6});
  // At exactly max_norm the clipping branch runs: g/13·13.
  auto at_limit = update_once(optim::clip_by_global_norm(13.0), named({{"a", {3, 4}}, {"b", {12}}}), none);
  CHECK(at_limit[0].second.to_vector()[1] == Approx(4.0));
}

TEST_CASE("clip clips elementwise to [−max_delta, max_delta]") {
  auto out = update_once(optim::clip(1.0), named({{"x", {-3, 0.5, 2, -1}}}), {});
  CHECK(out[0].second.to_vector() == std::vector<double>{-1, 0.5, 1, -1});
}

TEST_CASE("add_decayed_weights adds wd·p on the masked parameters; wd = 0 is skipped") {
  const auto params = named({{"dense.kernel", {1, 2}}, {"dense.bias", {3}}});
  const auto is_kernel = [](const std::string& path) { return path.ends_with("kernel"); };
  auto out = update_once(optim::add_decayed_weights(0.5, is_kernel), named({{"dense.kernel", {1, 1}}, {"dense.bias", {1}}}),
                         params);
  CHECK(out[0].second.to_vector() == std::vector<double>{1.5, 2});
  CHECK(out[1].second.to_vector() == std::vector<double>{1});  // masked out
  auto all = update_once(optim::add_decayed_weights(0.5), named({{"dense.kernel", {0, 0}}, {"dense.bias", {0}}}),
                         params);
  CHECK(all[1].second.to_vector() == std::vector<double>{1.5});
  // Zero weight decay is the identity: it does not even need the parameters.
  auto skipped = update_once(optim::add_decayed_weights(0.0), named({{"dense.kernel", {7, 8}}}), {});
  CHECK(skipped[0].second.to_vector() == std::vector<double>{7, 8});
  check_throws<ValueError>(
      [] { update_once(optim::add_decayed_weights(0.1), named({{"w", {1}}, {"b", {1}}}), {}); },
      "add_decayed_weights: 2 updates but 0 parameters (this transformation needs them)");
}

TEST_CASE("adamw's mask excludes parameters from decay, and only from decay") {
  const auto params = named({{"w", {2}}, {"b", {2}}}, DType::Float64);
  const auto grads = [] { return named({{"w", {1}}, {"b", {1}}}, DType::Float64); };
  auto out = update_once(
      optim::adamw({.learning_rate = 1.0, .weight_decay = 0.25, .mask = [](const std::string& p) { return p == "w"; }}),
      grads(), params);
  // First adam step: direction g/(|g| + eps) = 1/(1 + 1e-8); u = −(dir + wd·p) on w, −dir on b.
  const double dir = 1.0 / (1.0 + 1e-8);
  CHECK(out[0].second.item() == Approx(-(dir + 0.5)).epsilon(1e-14));
  CHECK(out[1].second.item() == Approx(-dir).epsilon(1e-14));
}

TEST_CASE("masked runs the inner transformation on the selected parameters only") {
  const auto params = named({{"enc.w", {1, 1}}, {"dec.w", {1}}});
  const auto tx = optim::masked(optim::sgd({.learning_rate = 0.5, .momentum = 0.9}),
                                [](const std::string& path) { return path.starts_with("enc"); });
  optim::OptState state = tx.init(params);
  CHECK(keys(optim::state_to_named_tensors(state, "m")) == std::vector<std::string>{"m.inner.0.trace.enc.w"});
  auto updates = named({{"enc.w", {2, 4}}, {"dec.w", {6}}});
  tx.update(updates, state, params);
  CHECK(updates[0].second.to_vector() == std::vector<double>{-1, -2});
  CHECK(updates[1].second.to_vector() == std::vector<double>{6});  // passed through
}

TEST_CASE("chain applies transformations in order") {
  CHECK(update_once(optim::chain(optim::clip(1.0), optim::scale(2.0)), named({{"x", {3}}}), {})[0].second.item() == 2);
  CHECK(update_once(optim::chain(optim::scale(2.0), optim::clip(1.0)), named({{"x", {3}}}), {})[0].second.item() == 1);
  CHECK(update_once(optim::chain({optim::identity(), optim::scale(-1.0)}), named({{"x", {3}}}), {})[0].second.item() ==
        -3);
}

TEST_CASE("scale_by_learning_rate with a schedule uses count 0, 1, 2, ... and reports the next rate") {
  const auto tx = optim::scale_by_learning_rate(optim::piecewise_constant_schedule(1.0, {{1, 0.5}, {2, 0.5}}));
  optim::OptState state = tx.init({});
  CHECK(*tx.learning_rate(state) == 1.0);
  std::vector<double> seen;
  for (int i = 0; i < 3; ++i) {
    auto updates = named({{"x", {2}}});
    tx.update(updates, state, {});
    seen.push_back(updates[0].second.item());
  }
  CHECK(seen == std::vector<double>{-2.0, -1.0, -0.5});
  CHECK(state.counter("count") == 3);
  CHECK(*tx.learning_rate(state) == 0.25);
  CHECK(*optim::scale_by_learning_rate(0.1).learning_rate({}) == 0.1);
  CHECK(update_once(optim::scale_by_learning_rate(0.5, /*flip_sign=*/false), named({{"x", {2}}}), {})[0]
            .second.item() == 1.0);
}

TEST_CASE("scale_by_trust_ratio: ‖p‖/‖u‖ per parameter, 1 when a norm is zero") {
  const auto params = named({{"a", {3, 4}}, {"zero", {0, 0}}});
  auto out = update_once(optim::scale_by_trust_ratio(), named({{"a", {0, 10}}, {"zero", {3, 4}}}), params);
  CHECK(out[0].second.to_vector() == std::vector<double>{0, 5});
  CHECK(out[1].second.to_vector() == std::vector<double>{3, 4});
  auto floored = update_once(optim::scale_by_trust_ratio({.min_norm = 20.0, .trust_coefficient = 0.5}),
                             named({{"a", {0, 10}}, {"zero", {3, 4}}}), params);
  CHECK(floored[0].second.to_vector() == std::vector<double>{0, 5});  // 0.5·20/20
}

TEST_CASE("16-bit parameters keep float32 state unless mu_dtype says otherwise") {
  const auto params = named({{"w", {1, -2}}}, DType::BFloat16);
  auto adam_state = optim::scale_by_adam().init(params);
  CHECK(adam_state.buffer("mu")[0].second.dtype() == DType::Float32);
  CHECK(adam_state.buffer("nu")[0].second.dtype() == DType::Float32);
  auto bf16_mu = optim::scale_by_adam({.mu_dtype = DType::BFloat16}).init(params);
  CHECK(bf16_mu.buffer("mu")[0].second.dtype() == DType::BFloat16);
  CHECK(bf16_mu.buffer("nu")[0].second.dtype() == DType::Float32);
  CHECK(optim::scale_by_adam().init(named({{"w", {1}}}, DType::Float64)).buffer("mu")[0].second.dtype() ==
        DType::Float64);
  CHECK(optim::sgd({.learning_rate = 0.1, .momentum = 0.9, .accumulator_dtype = DType::Float16})
            .init(params)
            .inner[0]
            .second.buffer("trace")[0]
            .second.dtype() == DType::Float16);

  // bf16 updates through a bf16-mu adam: computed in float32, stored rounded.
  auto updates = named({{"w", {0.3, -0.7}}}, DType::BFloat16);
  const auto tx = optim::scale_by_adam({.mu_dtype = DType::BFloat16});
  tx.update(updates, bf16_mu, params);
  CHECK(updates[0].second.dtype() == DType::BFloat16);
  CHECK(updates[0].second.to_vector() == std::vector<double>{1.0, -1.0});  // g/(|g| + 1e-8) rounds to ±1
  const double g0 = static_cast<double>(bfloat16(0.3f));
  CHECK(bf16_mu.buffer("mu")[0].second.at({0}) == static_cast<double>(bfloat16(static_cast<float>(0.1 * g0))));
}

TEST_CASE("apply_updates adds in place, casts to the parameter dtype and bumps versions") {
  auto params = named({{"w", {1, 2}}}, DType::BFloat16);
  const auto before = params[0].second.version();
  optim::apply_updates(params, named({{"w", {0.001, -0.5}}}, DType::Float32));
  CHECK(params[0].second.dtype() == DType::BFloat16);
  CHECK(params[0].second.to_vector() == std::vector<double>{1.0, 1.5});  // 1.001 rounds to 1 in bfloat16
  CHECK(params[0].second.version() == before + 1);
  check_throws<ValueError>([&] { optim::apply_updates(params, named({{"v", {0, 0}}})); },
                           "apply_updates: update 0 is for 'v' but parameter 0 is 'w'");
}

TEST_CASE("mismatched states, shapes and dtypes are reported by name") {
  const auto tx = optim::scale_by_adam();
  optim::OptState state = tx.init(named({{"w", {1, 2}}}));
  check_throws<ValueError>(
      [&] {
        auto updates = named({{"w", {1, 2}}, {"b", {1}}});
        tx.update(updates, state, {});
      },
      "scale_by_adam: 2 updates but 1 moments");
  check_throws<ShapeError>(
      [&] {
        auto updates = named({{"w", {1, 2, 3}}});
        tx.update(updates, state, {});
      },
      "scale_by_adam: 'w': shapes [3] and [2] do not match (update, state or parameter)");
  check_throws<DTypeError>(
      [&] {
        auto updates = named({{"w", {1, 2}}}, DType::Int32);
        tx.update(updates, state, {});
      },
      "scale_by_adam: 'w' is int32; optimizers work on floating tensors");
  check_throws<ValueError>([&] { optim::OptState{}.counter("count"); },
                           "optimizer state has no counter 'count' (was it created by this transformation's init?)");
}

TEST_CASE("state_to_named_tensors keeps every bit of an int64 counter") {
  // Doubles hold integers exactly only up to 2^53; counters are written from the integer itself.
  for (const std::int64_t value : {(std::int64_t{1} << 53) + 1, std::numeric_limits<std::int64_t>::max(),
                                   std::numeric_limits<std::int64_t>::min(), std::int64_t{-3}}) {
    INFO(value);
    optim::OptState state;
    state.counters = {{"count", value}};
    const auto saved = optim::state_to_named_tensors(state, "s");
    REQUIRE(saved.size() == 1);
    CHECK(saved[0].second.dtype() == DType::Int64);
    CHECK(saved[0].second.data<std::int64_t>()[0] == value);
    optim::OptState restored;
    restored.counters = {{"count", 0}};
    optim::load_state_from_named_tensors(restored, saved, "s", "load");
    CHECK(restored.counter("count") == value);
  }
}

TEST_CASE("state_to_named_tensors and load_state_from_named_tensors round-trip, strictly") {
  const auto params = named({{"w", {1, 2}}});
  const auto tx = optim::adam({.learning_rate = 0.1});
  optim::OptState state = tx.init(params);
  auto updates = named({{"w", {0.5, -1}}});
  tx.update(updates, state, params);
  const auto saved = optim::state_to_named_tensors(state, "opt");
  CHECK(keys(saved) == std::vector<std::string>{"opt.0.mu.w", "opt.0.nu.w", "opt.0.count"});
  CHECK(saved[2].second.dtype() == DType::Int64);
  CHECK(saved[2].second.dim() == 0);
  CHECK(saved[2].second.item() == 1);

  optim::OptState restored = tx.init(params);
  optim::load_state_from_named_tensors(restored, saved, "opt", "load");
  CHECK(restored.inner[0].second.counter("count") == 1);
  CHECK(restored.inner[0].second.buffer("mu")[0].second.to_vector() ==
        state.inner[0].second.buffer("mu")[0].second.to_vector());

  auto without_nu = saved;
  without_nu.erase(without_nu.begin() + 1);
  without_nu.emplace_back("opt.0.extra", scalar(1.0));
  check_throws<ValueError>([&] { optim::load_state_from_named_tensors(restored, without_nu, "opt", "load"); },
                           "load: missing keys: opt.0.nu.w. unexpected keys: opt.0.extra.");
  auto wrong_shape = saved;
  wrong_shape[0].second = zeros({3});
  check_throws<ShapeError>([&] { optim::load_state_from_named_tensors(restored, wrong_shape, "opt", "load"); },
                           "load: 'opt.0.mu.w' has shape [3] but the optimizer state has shape [2]");
  auto wrong_dtype = saved;
  wrong_dtype[1].second = zeros({2}, DType::Float64);
  check_throws<DTypeError>([&] { optim::load_state_from_named_tensors(restored, wrong_dtype, "opt", "load"); },
                           "load: 'opt.0.nu.w' is float64 but the optimizer state is float32");
  auto float_counter = saved;
  float_counter[2].second = scalar(1.0);
  check_throws<DTypeError>([&] { optim::load_state_from_named_tensors(restored, float_counter, "opt", "load"); },
                           "load: counter 'opt.0.count' must be a 0-d int64 tensor, got float32 []");
}
