// Schedules, following optax/schedules/_schedule.py formula by formula.
#include "optim/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "core/error.hpp"

namespace xgrad::optim {

Schedule constant_schedule(double value) {
  return [value](std::int64_t) { return value; };
}

Schedule polynomial_schedule(const PolynomialScheduleOptions& o) {
  if (o.transition_steps <= 0) return constant_schedule(o.init_value);
  const std::int64_t begin = std::max<std::int64_t>(o.transition_begin, 0);
  return [o, begin](std::int64_t step) {
    const double count = static_cast<double>(std::clamp<std::int64_t>(step - begin, 0, o.transition_steps));
    const double frac = 1.0 - count / static_cast<double>(o.transition_steps);
    return (o.init_value - o.end_value) * std::pow(frac, o.power) + o.end_value;
  };
}

Schedule linear_schedule(const LinearScheduleOptions& o) {
  return polynomial_schedule({.init_value = o.init_value,
                              .end_value = o.end_value,
                              .power = 1.0,
                              .transition_steps = o.transition_steps,
                              .transition_begin = o.transition_begin});
}

Schedule cosine_decay_schedule(const CosineDecayScheduleOptions& o) {
  if (o.decay_steps <= 0)
    throw ValueError(fmt::format("cosine_decay_schedule: decay_steps must be positive, got {}", o.decay_steps));
  return [o](std::int64_t step) {
    const double decay_steps = static_cast<double>(o.decay_steps);
    const double count = std::min(static_cast<double>(step), decay_steps);
    const double cosine_decay = 0.5 * (1.0 + std::cos(std::numbers::pi * count / decay_steps));
    return o.init_value * ((1.0 - o.alpha) * std::pow(cosine_decay, o.exponent) + o.alpha);
  };
}

Schedule warmup_cosine_decay_schedule(const WarmupCosineDecayScheduleOptions& o) {
  const double alpha = o.peak_value == 0.0 ? 0.0 : o.end_value / o.peak_value;
  return join_schedules(
      {linear_schedule({.init_value = o.init_value, .end_value = o.peak_value, .transition_steps = o.warmup_steps}),
       cosine_decay_schedule({.init_value = o.peak_value,
                              .decay_steps = o.decay_steps - o.warmup_steps,
                              .alpha = alpha,
                              .exponent = o.exponent})},
      {o.warmup_steps});
}

Schedule exponential_decay(const ExponentialDecayOptions& o) {
  if (o.transition_steps <= 0 || o.decay_rate == 0.0) return constant_schedule(o.init_value);
  const std::int64_t begin = std::max<std::int64_t>(o.transition_begin, 0);
  return [o, begin](std::int64_t step) {
    const std::int64_t decreased_count = step - begin;
    double p = static_cast<double>(decreased_count) / static_cast<double>(o.transition_steps);
    if (o.staircase) p = std::floor(p);
    double value = decreased_count <= 0 ? o.init_value : o.init_value * std::pow(o.decay_rate, p);
    if (o.end_value) value = o.decay_rate < 1.0 ? std::max(value, *o.end_value) : std::min(value, *o.end_value);
    return value;
  };
}

Schedule piecewise_constant_schedule(double init_value, std::map<std::int64_t, double> boundaries_and_scales) {
  for (const auto& [boundary, scale] : boundaries_and_scales)
    if (!(scale >= 0.0))
      throw ValueError(fmt::format("piecewise_constant_schedule: scales must be non-negative, got {} at step {}",
                                   scale, boundary));
  return [init_value, boundaries_and_scales](std::int64_t step) {
    double value = init_value;
    for (const auto& [boundary, scale] : boundaries_and_scales)
      if (step >= boundary) value *= scale;
    return value;
  };
}

Schedule join_schedules(std::vector<Schedule> schedules, std::vector<std::int64_t> boundaries) {
  if (schedules.size() != boundaries.size() + 1)
    throw ValueError(fmt::format("join_schedules: {} schedules need {} boundaries, got {}", schedules.size(),
                                 schedules.size() - 1, boundaries.size()));
  return [schedules = std::move(schedules), boundaries = std::move(boundaries)](std::int64_t step) {
    // The last boundary not after `step` picks the schedule (optax overwrites in order).
    std::size_t active = 0;
    for (std::size_t i = 0; i < boundaries.size(); ++i)
      if (step >= boundaries[i]) active = i + 1;
    return active == 0 ? schedules[0](step) : schedules[active](step - boundaries[active - 1]);
  };
}

Schedule warmup_constant_schedule(const WarmupConstantScheduleOptions& o) {
  return linear_schedule({.init_value = o.init_value, .end_value = o.peak_value, .transition_steps = o.warmup_steps});
}

namespace {

// optax's piecewise_interpolate_schedule('cosine', ...): interval k runs over
// [bounds[k], bounds[k+1]) from values[k] to values[k+1] (cumulative products of
// the scales); before step 0 the value is 0, from the last boundary on it is the last value.
Schedule piecewise_cosine_interpolate(double init_value, const std::map<std::int64_t, double>& boundaries_and_scales) {
  std::vector<double> bounds{0.0};
  std::vector<double> values{init_value};
  for (const auto& [boundary, scale] : boundaries_and_scales) {
    bounds.push_back(static_cast<double>(boundary));
    values.push_back(values.back() * scale);
  }
  return [bounds, values](std::int64_t step) {
    const double t = static_cast<double>(step);
    if (t >= bounds.back()) return values.back();
    for (std::size_t k = 0; k + 1 < bounds.size(); ++k) {
      if (bounds[k] <= t && t < bounds[k + 1]) {
        const double pct = (t - bounds[k]) / std::max(bounds[k + 1] - bounds[k], 1.0);
        return values[k + 1] + (values[k] - values[k + 1]) / 2.0 * (std::cos(std::numbers::pi * pct) + 1.0);
      }
    }
    return 0.0;
  };
}

}  // namespace

Schedule cosine_onecycle_schedule(const CosineOnecycleScheduleOptions& o) {
  if (o.transition_steps <= 0)
    throw ValueError(
        fmt::format("cosine_onecycle_schedule: transition_steps must be positive, got {}", o.transition_steps));
  std::map<std::int64_t, double> boundaries_and_scales;
  // A Python dict literal: a repeated key keeps the later value.
  boundaries_and_scales[static_cast<std::int64_t>(o.pct_start * static_cast<double>(o.transition_steps))] =
      o.div_factor;
  boundaries_and_scales[o.transition_steps] = 1.0 / (o.div_factor * o.final_div_factor);
  return piecewise_cosine_interpolate(o.peak_value / o.div_factor, boundaries_and_scales);
}

LearningRate::LearningRate(Schedule schedule) : schedule_(std::move(schedule)) {
  if (!schedule_) throw ValueError("LearningRate: the schedule is empty");
}

}  // namespace xgrad::optim
