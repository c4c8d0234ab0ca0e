// Scaling by a constant, a schedule, or the (negative) learning rate.
#include <cstdint>

#include "optim/detail.hpp"
#include "optim/transforms.hpp"

namespace xgrad::optim {

namespace {

void scale_all(const char* op, NamedTensors& updates, double factor) {
  for (auto& [path, u] : updates)
    detail::elementwise(op, path, {u}, {true}, [factor](std::int64_t n, auto* g) {
      using T = std::decay_t<decltype(*g)>;
      const T s = static_cast<T>(factor);  // the factor in the update's dtype, as optax does
      for (std::int64_t i = 0; i < n; ++i) g[i] = s * g[i];
    });
}

}  // namespace

GradientTransformation scale(double step_size) {
  return detail::stateless(
      [step_size](NamedTensors& updates, const NamedTensors&) { scale_all("scale", updates, step_size); });
}

GradientTransformation scale_by_schedule(Schedule step_size_fn) {
  if (!step_size_fn) throw ValueError("scale_by_schedule: the schedule is empty");
  GradientTransformation tx;
  tx.init = [](const NamedTensors&) { return OptState{.counters = {{"count", 0}}}; };
  tx.update = [step_size_fn](NamedTensors& updates, OptState& state, const NamedTensors&) {
    std::int64_t& count = state.counter("count");
    scale_all("scale_by_schedule", updates, step_size_fn(count));
    ++count;
  };
  return tx;
}

GradientTransformation scale_by_learning_rate(LearningRate learning_rate, bool flip_sign) {
  const double sign = flip_sign ? -1.0 : 1.0;
  GradientTransformation tx;
  if (learning_rate.is_schedule()) {
    Schedule schedule = learning_rate.schedule();
    tx = scale_by_schedule([schedule, sign](std::int64_t count) { return sign * schedule(count); });
    tx.learning_rate = [schedule](const OptState& state) -> std::optional<double> {
      return schedule(state.counter("count"));
    };
  } else {
    const double lr = learning_rate(0);
    tx = scale(sign * lr);
    tx.learning_rate = [lr](const OptState&) -> std::optional<double> { return lr; };
  }
  return tx;
}

}  // namespace xgrad::optim
