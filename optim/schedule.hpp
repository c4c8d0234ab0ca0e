// Schedules: a hyper-parameter as a function of the update count, as optax
// defines them (optax/schedules). The count starts at 0 and increments after
// each update, so `schedule(0)` is the value used by the first step.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <type_traits>
#include <vector>

namespace xgrad::optim {

// A schedule: the value a hyper-parameter takes at a given update count (0 for the first update).
using Schedule = std::function<double(std::int64_t step)>;

// The same value at every step.
Schedule constant_schedule(double value);

// (init − end)·(1 − c/T)^power + end with c = clip(step − transition_begin, 0, T).
// transition_steps ≤ 0 gives the constant init_value; a negative begin counts as 0.
// Designated initializers name the fields in this order: init_value, end_value, power, transition_steps,
//  transition_begin.
struct PolynomialScheduleOptions {
  double init_value;  // value at the start of the transition
  double end_value;  // value from transition_begin + transition_steps on
  double power;  // exponent of the polynomial (1: linear)
  std::int64_t transition_steps;  // length of the transition, in steps
  std::int64_t transition_begin = 0;  // steps held at init_value before the transition
};
// optax.polynomial_schedule: see PolynomialScheduleOptions for the formula.
Schedule polynomial_schedule(const PolynomialScheduleOptions& options);

// polynomial_schedule with power 1.
// Designated initializers name the fields in this order: init_value, end_value, transition_steps, transition_begin.
struct LinearScheduleOptions {
  double init_value;  // value at the start of the transition
  double end_value;  // value from transition_begin + transition_steps on
  std::int64_t transition_steps;  // length of the transition, in steps
  std::int64_t transition_begin = 0;  // steps held at init_value before the transition
};
// optax.linear_schedule: linear from init_value to end_value over transition_steps.
Schedule linear_schedule(const LinearScheduleOptions& options);

// init·((1 − α)·(½(1 + cos(π·t'/T)))^exponent + α) with t' = min(step, T); T must be > 0.
// Designated initializers name the fields in this order: init_value, decay_steps, alpha, exponent.
struct CosineDecayScheduleOptions {
  double init_value;  // value at step 0
  std::int64_t decay_steps;  // T: steps of the decay; must be > 0 (ValueError otherwise)
  double alpha = 0.0;  // α: the final value as a fraction of init_value
  double exponent = 1.0;  // power applied to the cosine factor
};
// optax.cosine_decay_schedule; ValueError if decay_steps ≤ 0.
Schedule cosine_decay_schedule(const CosineDecayScheduleOptions& options);

// Linear warmup init → peak over warmup_steps, then cosine decay peak → end over
// decay_steps − warmup_steps: decay_steps *includes* the warmup.
// Designated initializers name the fields in this order: init_value, peak_value, warmup_steps,
//   decay_steps, end_value, exponent.
struct WarmupCosineDecayScheduleOptions {
  double init_value;  // value at step 0, where the warmup starts
  double peak_value;  // value at the end of the warmup, where the decay starts
  std::int64_t warmup_steps;  // length of the linear warmup
  std::int64_t decay_steps;  // total length, warmup included; must exceed warmup_steps
  double end_value = 0.0;  // value at the end of the decay and after
  double exponent = 1.0;  // power applied to the cosine factor
};
// optax.warmup_cosine_decay_schedule: join_schedules(linear warmup, cosine decay) at warmup_steps;
// ValueError if decay_steps ≤ warmup_steps (the cosine part would have no steps).
Schedule warmup_cosine_decay_schedule(const WarmupCosineDecayScheduleOptions& options);

// init·rate^((step − begin)/T) (exponent floored if staircase); init while step ≤ begin.
// end_value bounds the decay: from below if rate < 1, from above otherwise.
// transition_steps ≤ 0 or decay_rate == 0 give the constant init_value.
// Designated initializers name the fields in this order: init_value, transition_steps, decay_rate,
//   transition_begin, staircase, end_value.
struct ExponentialDecayOptions {
  double init_value;  // value up to transition_begin
  std::int64_t transition_steps;  // T: steps over which the value is multiplied by decay_rate once
  double decay_rate;  // factor per transition_steps (< 1 decays, > 1 grows)
  std::int64_t transition_begin = 0;  // steps held at init_value before the decay starts
  bool staircase = false;  // decay in discrete jumps every transition_steps instead of smoothly
  std::optional<double> end_value = std::nullopt;  // bound of the decay (see above); unset: none
};
// optax.exponential_decay: see ExponentialDecayOptions for the formula and its bounds.
Schedule exponential_decay(const ExponentialDecayOptions& options);

// init_value times every scale whose boundary step ≤ step (scales must be ≥ 0).
Schedule piecewise_constant_schedule(double init_value, std::map<std::int64_t, double> boundaries_and_scales = {});

// schedules[0] before boundaries[0], then schedules[i + 1] evaluated at step − boundaries[i].
Schedule join_schedules(std::vector<Schedule> schedules, std::vector<std::int64_t> boundaries);

// Linear warmup init → peak over warmup_steps, then peak.
// Designated initializers name the fields in this order: init_value, peak_value, warmup_steps.
struct WarmupConstantScheduleOptions {
  double init_value;  // value at step 0
  double peak_value;  // value from warmup_steps on
  std::int64_t warmup_steps;  // length of the linear warmup
};
// optax.warmup_constant_schedule: linear warmup to peak_value, then constant.
Schedule warmup_constant_schedule(const WarmupConstantScheduleOptions& options);

// One cycle: cosine from peak/div_factor up to peak over the first pct_start of the
// steps, then cosine down to peak/(div_factor·final_div_factor) at transition_steps.
// Designated initializers name the fields in this order: transition_steps, peak_value, pct_start, div_factor,
//  final_div_factor.
struct CosineOnecycleScheduleOptions {
  std::int64_t transition_steps;  // length of the whole cycle; must be > 0 (ValueError otherwise)
  double peak_value;  // maximum value, reached after pct_start of the steps
  double pct_start = 0.3;  // fraction of the steps spent rising to the peak
  double div_factor = 25.0;  // the start value is peak_value / div_factor
  double final_div_factor = 1e4;  // the final value is peak_value / (div_factor · final_div_factor)
};
// optax.cosine_onecycle_schedule (Smith & Topin 2017); ValueError if transition_steps ≤ 0.
Schedule cosine_onecycle_schedule(const CosineOnecycleScheduleOptions& options);

// A learning rate: a constant or a schedule (optax's ScalarOrSchedule). Converts
// implicitly from a number, a Schedule or any callable double(int64).
class LearningRate {
 public:
  // A constant learning rate.
  LearningRate(double value) : value_(value) {}
  // A scheduled learning rate; ValueError if `schedule` is empty.
  LearningRate(Schedule schedule);
  // A scheduled learning rate from any callable double(int64), e.g. a lambda.
  template <class F>
    requires(std::is_invocable_r_v<double, F&, std::int64_t> && !std::is_arithmetic_v<std::decay_t<F>> &&
             !std::same_as<std::decay_t<F>, Schedule>)
  LearningRate(F schedule) : LearningRate(Schedule(std::move(schedule))) {}

  // True for a schedule, false for a constant.
  bool is_schedule() const { return static_cast<bool>(schedule_); }
  // The learning rate at update count `step`.
  double operator()(std::int64_t step) const { return schedule_ ? schedule_(step) : value_; }
  // The schedule; empty for a constant learning rate.
  const Schedule& schedule() const { return schedule_; }

 private:
  double value_ = 0.0;
  Schedule schedule_;
};

}  // namespace xgrad::optim
