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

using Schedule = std::function<double(std::int64_t step)>;

Schedule constant_schedule(double value);

// (init − end)·(1 − c/T)^power + end with c = clip(step − transition_begin, 0, T).
// transition_steps ≤ 0 gives the constant init_value; a negative begin counts as 0.
// Designated initializers name the fields in this order: init_value, end_value, power, transition_steps,
//  transition_begin.
struct PolynomialScheduleOptions {
  double init_value;
  double end_value;
  double power;
  std::int64_t transition_steps;
  std::int64_t transition_begin = 0;
};
Schedule polynomial_schedule(const PolynomialScheduleOptions& options);

// polynomial_schedule with power 1.
// Designated initializers name the fields in this order: init_value, end_value, transition_steps, transition_begin.
struct LinearScheduleOptions {
  double init_value;
  double end_value;
  std::int64_t transition_steps;
  std::int64_t transition_begin = 0;
};
Schedule linear_schedule(const LinearScheduleOptions& options);

// init·((1 − α)·(½(1 + cos(π·t'/T)))^exponent + α) with t' = min(step, T); T must be > 0.
// Designated initializers name the fields in this order: init_value, decay_steps, alpha, exponent.
struct CosineDecayScheduleOptions {
  double init_value;
  std::int64_t decay_steps;
  double alpha = 0.0;
  double exponent = 1.0;
};
Schedule cosine_decay_schedule(const CosineDecayScheduleOptions& options);

// Linear warmup init → peak over warmup_steps, then cosine decay peak → end over
// decay_steps − warmup_steps: decay_steps *includes* the warmup.
// Designated initializers name the fields in this order: init_value, peak_value, warmup_steps,
//   decay_steps, end_value, exponent.
struct WarmupCosineDecayScheduleOptions {
  double init_value;
  double peak_value;
  std::int64_t warmup_steps;
  std::int64_t decay_steps;
  double end_value = 0.0;
  double exponent = 1.0;
};
Schedule warmup_cosine_decay_schedule(const WarmupCosineDecayScheduleOptions& options);

// init·rate^((step − begin)/T) (exponent floored if staircase); init while step ≤ begin.
// end_value bounds the decay: from below if rate < 1, from above otherwise.
// transition_steps ≤ 0 or decay_rate == 0 give the constant init_value.
// Designated initializers name the fields in this order: init_value, transition_steps, decay_rate,
//   transition_begin, staircase, end_value.
struct ExponentialDecayOptions {
  double init_value;
  std::int64_t transition_steps;
  double decay_rate;
  std::int64_t transition_begin = 0;
  bool staircase = false;
  std::optional<double> end_value = std::nullopt;
};
Schedule exponential_decay(const ExponentialDecayOptions& options);

// init_value times every scale whose boundary step ≤ step (scales must be ≥ 0).
Schedule piecewise_constant_schedule(double init_value, std::map<std::int64_t, double> boundaries_and_scales = {});

// schedules[0] before boundaries[0], then schedules[i + 1] evaluated at step − boundaries[i].
Schedule join_schedules(std::vector<Schedule> schedules, std::vector<std::int64_t> boundaries);

// Linear warmup init → peak over warmup_steps, then peak.
// Designated initializers name the fields in this order: init_value, peak_value, warmup_steps.
struct WarmupConstantScheduleOptions {
  double init_value;
  double peak_value;
  std::int64_t warmup_steps;
};
Schedule warmup_constant_schedule(const WarmupConstantScheduleOptions& options);

// One cycle: cosine from peak/div_factor up to peak over the first pct_start of the
// steps, then cosine down to peak/(div_factor·final_div_factor) at transition_steps.
// Designated initializers name the fields in this order: transition_steps, peak_value, pct_start, div_factor,
//  final_div_factor.
struct CosineOnecycleScheduleOptions {
  std::int64_t transition_steps;
  double peak_value;
  double pct_start = 0.3;
  double div_factor = 25.0;
  double final_div_factor = 1e4;
};
Schedule cosine_onecycle_schedule(const CosineOnecycleScheduleOptions& options);

// A learning rate: a constant or a schedule (optax's ScalarOrSchedule). Converts
// implicitly from a number, a Schedule or any callable double(int64).
class LearningRate {
 public:
  LearningRate(double value) : value_(value) {}
  LearningRate(Schedule schedule);
  template <class F>
    requires(std::is_invocable_r_v<double, F&, std::int64_t> && !std::is_arithmetic_v<std::decay_t<F>> &&
             !std::same_as<std::decay_t<F>, Schedule>)
  LearningRate(F schedule) : LearningRate(Schedule(std::move(schedule))) {}

  bool is_schedule() const { return static_cast<bool>(schedule_); }
  double operator()(std::int64_t step) const { return schedule_ ? schedule_(step) : value_; }
  const Schedule& schedule() const { return schedule_; }

 private:
  double value_ = 0.0;
  Schedule schedule_;
};

}  // namespace xgrad::optim
