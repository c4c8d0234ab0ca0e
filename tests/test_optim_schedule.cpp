// Schedules: values at chosen steps, boundaries included, from the optax formulas.
#include <cmath>
#include <numbers>
#include <string>

#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;
using doctest::Approx;

namespace {

template <class F>
void check_value_error(F&& make, const std::string& message) {
  try {
    make();
    FAIL("expected a ValueError");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()) == message);
  }
}

}  // namespace

TEST_CASE("constant_schedule") {
  const auto s = optim::constant_schedule(0.5);
  CHECK(s(0) == 0.5);
  CHECK(s(1000000) == 0.5);
}

TEST_CASE("polynomial_schedule: (init − end)(1 − c/T)^power + end, c = clip(t − begin, 0, T)") {
  // optax's docstring example: init 1, end 0.01, power 2, T 100, begin 5.
  const auto s = optim::polynomial_schedule(
      {.init_value = 1.0, .end_value = 0.01, .power = 2, .transition_steps = 100, .transition_begin = 5});
  CHECK(s(0) == 1.0);
  CHECK(s(5) == 1.0);
  CHECK(s(6) == Approx(0.99 * 0.99 * 0.99 + 0.01));  // c = 1
  CHECK(s(104) == Approx(0.99 * 0.01 * 0.01 + 0.01));  // c = 99
  CHECK(s(105) == Approx(0.01));
  CHECK(s(110) == Approx(0.01));
  // transition_steps ≤ 0: constant init; a negative begin counts as 0.
  CHECK(optim::polynomial_schedule({.init_value = 3, .end_value = 1, .power = 1, .transition_steps = 0})(50) == 3);
  const auto negative_begin = optim::polynomial_schedule(
      {.init_value = 1, .end_value = 0, .power = 1, .transition_steps = 10, .transition_begin = -4});
  CHECK(negative_begin(5) == Approx(0.5));
}

TEST_CASE("linear_schedule") {
  const auto s = optim::linear_schedule({.init_value = 1.0, .end_value = 0.0, .transition_steps = 10});
  CHECK(s(0) == 1.0);
  CHECK(s(5) == Approx(0.5));
  CHECK(s(10) == 0.0);
  CHECK(s(20) == 0.0);
  const auto delayed =
      optim::linear_schedule({.init_value = 1.0, .end_value = 0.0, .transition_steps = 10, .transition_begin = 3});
  CHECK(delayed(3) == 1.0);
  CHECK(delayed(8) == Approx(0.5));
}

TEST_CASE("cosine_decay_schedule: init·((1 − α)(½(1 + cos(π·min(t, T)/T)))^p + α)") {
  const auto s = optim::cosine_decay_schedule({.init_value = 2.0, .decay_steps = 10, .alpha = 0.1});
  CHECK(s(0) == Approx(2.0));
  CHECK(s(5) == Approx(2.0 * (0.9 * 0.5 + 0.1)));
  CHECK(s(10) == Approx(0.2));
  CHECK(s(15) == Approx(0.2));
  const double quarter = 0.5 * (1 + std::cos(std::numbers::pi * 0.25));
  CHECK(s(2) == Approx(2.0 * (0.9 * (0.5 * (1 + std::cos(std::numbers::pi * 0.2))) + 0.1)));
  const auto squared =
      optim::cosine_decay_schedule({.init_value = 1.0, .decay_steps = 8, .alpha = 0.0, .exponent = 2.0});
  CHECK(squared(2) == Approx(quarter * quarter));
  check_value_error([] { optim::cosine_decay_schedule({.init_value = 1.0, .decay_steps = 0}); },
                    "cosine_decay_schedule: decay_steps must be positive, got 0");
}

TEST_CASE("warmup_cosine_decay_schedule: decay_steps includes the warmup") {
  const auto s = optim::warmup_cosine_decay_schedule(
      {.init_value = 0.0, .peak_value = 1.0, .warmup_steps = 10, .decay_steps = 110, .end_value = 0.1});
  CHECK(s(0) == 0.0);
  CHECK(s(5) == Approx(0.5));
  CHECK(s(10) == Approx(1.0));                    // cosine part at 0
  CHECK(s(60) == Approx(0.9 * 0.5 + 0.1));        // halfway through the 100 cosine steps, α = end/peak
  CHECK(s(110) == Approx(0.1));
  CHECK(s(500) == Approx(0.1));
  check_value_error(
      [] { optim::warmup_cosine_decay_schedule({.init_value = 0, .peak_value = 1, .warmup_steps = 5, .decay_steps = 5}); },
      "cosine_decay_schedule: decay_steps must be positive, got 0");
}

TEST_CASE("exponential_decay: init·rate^((t − begin)/T), staircase, end_value bound") {
  const auto s = optim::exponential_decay({.init_value = 1.0, .transition_steps = 10, .decay_rate = 0.5});
  CHECK(s(0) == 1.0);
  CHECK(s(5) == Approx(std::sqrt(0.5)));
  CHECK(s(10) == Approx(0.5));
  CHECK(s(20) == Approx(0.25));
  const auto stairs = optim::exponential_decay(
      {.init_value = 1.0, .transition_steps = 10, .decay_rate = 0.5, .transition_begin = 5, .staircase = true});
  CHECK(stairs(3) == 1.0);   // t ≤ begin
  CHECK(stairs(14) == 1.0);  // floor(9/10) = 0
  CHECK(stairs(15) == 0.5);
  CHECK(stairs(24) == 0.5);
  CHECK(stairs(25) == 0.25);
  CHECK(stairs(35) == 0.125);
  const auto floored =
      optim::exponential_decay({.init_value = 1.0, .transition_steps = 10, .decay_rate = 0.5, .end_value = 0.3});
  CHECK(floored(10) == 0.5);
  CHECK(floored(20) == 0.3);  // lower bound when rate < 1
  const auto growing =
      optim::exponential_decay({.init_value = 1.0, .transition_steps = 10, .decay_rate = 2.0, .end_value = 3.0});
  CHECK(growing(10) == 2.0);
  CHECK(growing(20) == 3.0);  // upper bound when rate > 1
  CHECK(optim::exponential_decay({.init_value = 1.0, .transition_steps = 10, .decay_rate = 0.0})(30) == 1.0);
  CHECK(optim::exponential_decay({.init_value = 1.0, .transition_steps = 0, .decay_rate = 0.5})(30) == 1.0);
}

TEST_CASE("piecewise_constant_schedule: scales multiply once t ≥ boundary") {
  const auto s = optim::piecewise_constant_schedule(1.0, {{100, 0.1}, {200, 0.01}});
  CHECK(s(0) == 1.0);
  CHECK(s(99) == 1.0);
  CHECK(s(100) == Approx(0.1));
  CHECK(s(199) == Approx(0.1));
  CHECK(s(200) == Approx(0.001));
  CHECK(s(1000) == Approx(0.001));
  CHECK(optim::piecewise_constant_schedule(2.0)(10) == 2.0);
  check_value_error([] { optim::piecewise_constant_schedule(1.0, {{10, -0.5}}); },
                    "piecewise_constant_schedule: scales must be non-negative, got -0.5 at step 10");
}

TEST_CASE("join_schedules: later schedules run on t − boundary") {
  const auto s = optim::join_schedules(
      {optim::constant_schedule(1.0), optim::linear_schedule({.init_value = 2, .end_value = 0, .transition_steps = 10}),
       optim::constant_schedule(7.0)},
      {5, 20});
  CHECK(s(0) == 1.0);
  CHECK(s(4) == 1.0);
  CHECK(s(5) == 2.0);
  CHECK(s(10) == Approx(1.0));
  CHECK(s(12) == Approx(0.6));
  CHECK(s(19) == 0.0);
  CHECK(s(20) == 7.0);
  check_value_error([] { optim::join_schedules({optim::constant_schedule(1.0)}, {3}); },
                    "join_schedules: 1 schedules need 0 boundaries, got 1");
}

TEST_CASE("warmup_constant_schedule") {
  const auto s = optim::warmup_constant_schedule({.init_value = 0.0, .peak_value = 2.0, .warmup_steps = 4});
  CHECK(s(0) == 0.0);
  CHECK(s(2) == Approx(1.0));
  CHECK(s(4) == 2.0);
  CHECK(s(100) == 2.0);
}

TEST_CASE("cosine_onecycle_schedule: up to peak over pct_start, then down to peak/(div·final_div)") {
  // Values 0.04 (peak/25), 1, 4e-6 at steps 0, 30, 100; cosine interpolation between:
  // end + (start − end)/2·(cos(π·pct) + 1).
  const auto s = optim::cosine_onecycle_schedule({.transition_steps = 100, .peak_value = 1.0});
  CHECK(s(0) == Approx(0.04));
  CHECK(s(15) == Approx(1.0 + (0.04 - 1.0) / 2));
  CHECK(s(30) == Approx(1.0));
  CHECK(s(65) == Approx(4e-6 + (1.0 - 4e-6) / 2));
  CHECK(s(100) == Approx(4e-6));
  CHECK(s(1000) == Approx(4e-6));
  CHECK(s(-1) == 0.0);  // before the first interval optax's indicator sum is empty
  check_value_error([] { optim::cosine_onecycle_schedule({.transition_steps = 0, .peak_value = 1.0}); },
                    "cosine_onecycle_schedule: transition_steps must be positive, got 0");
}

TEST_CASE("LearningRate takes a number, a Schedule or a lambda") {
  const optim::LearningRate constant = 0.1;
  CHECK(!constant.is_schedule());
  CHECK(constant(7) == 0.1);
  const optim::LearningRate scheduled = optim::linear_schedule({.init_value = 1, .end_value = 0, .transition_steps = 4});
  CHECK(scheduled.is_schedule());
  CHECK(scheduled(1) == 0.75);
  const optim::LearningRate lambda = [](std::int64_t step) { return 1.0 / static_cast<double>(step + 1); };
  CHECK(lambda(3) == 0.25);
  check_value_error([] { optim::LearningRate empty{optim::Schedule{}}; }, "LearningRate: the schedule is empty");
}
