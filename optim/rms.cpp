// Scalings by accumulated squared gradients: scale_by_rms (RMSProp),
// scale_by_stddev (centered RMSProp) and scale_by_rss (Adagrad).
#include <cmath>
#include <cstdint>

#include "optim/detail.hpp"
#include "optim/transforms.hpp"

namespace xgrad::optim {

namespace {

OptState rms_state(const NamedTensors& params, const ScaleByRmsOptions& o, bool centered) {
  OptState state;
  if (centered) state.buffers.emplace_back("mu", detail::state_buffer(params, 0.0));
  state.buffers.emplace_back("nu", detail::state_buffer(params, o.initial_scale));
  if (o.bias_correction) state.counters.emplace_back("count", 0);
  return state;
}

// 1 − decayᵗ for this step when bias-correcting (advancing the counter), else 1.
double next_bias_correction(OptState& state, const ScaleByRmsOptions& o) {
  if (!o.bias_correction) return 1.0;
  std::int64_t& count = state.counter("count");
  ++count;
  return 1.0 - std::pow(o.decay, static_cast<double>(count));
}

}  // namespace

GradientTransformation scale_by_rms(const ScaleByRmsOptions& o) {
  GradientTransformation tx;
  tx.init = [o](const NamedTensors& params) { return rms_state(params, o, false); };
  tx.update = [o](NamedTensors& updates, OptState& state, const NamedTensors&) {
    NamedTensors& nu = state.buffer("nu");
    detail::check_aligned("scale_by_rms", updates, nu, "moments");
    const double bc = next_bias_correction(state, o);
    for (std::size_t k = 0; k < updates.size(); ++k)
      detail::elementwise("scale_by_rms", updates[k].first, {updates[k].second, nu[k].second}, {true, true},
                          [&](std::int64_t n, auto* __restrict g, auto* __restrict v) {
                            using T = std::decay_t<decltype(*g)>;
                            const T decay = T(o.decay), one_minus_decay = T(1 - o.decay), c = T(bc), eps = T(o.eps);
                            for (std::int64_t i = 0; i < n; ++i) {
                              const T gi = g[i];
                              const T vi = one_minus_decay * (gi * gi) + decay * v[i];
                              v[i] = vi;
                              const T v_hat = vi / c;
                              const T scaling = o.eps_in_sqrt ? T(1) / std::sqrt(v_hat + eps)
                                                              : T(1) / (std::sqrt(v_hat) + eps);
                              g[i] = scaling * gi;
                            }
                          });
  };
  return tx;
}

GradientTransformation scale_by_stddev(const ScaleByRmsOptions& o) {
  GradientTransformation tx;
  tx.init = [o](const NamedTensors& params) { return rms_state(params, o, true); };
  tx.update = [o](NamedTensors& updates, OptState& state, const NamedTensors&) {
    NamedTensors& mu = state.buffer("mu");
    NamedTensors& nu = state.buffer("nu");
    detail::check_aligned("scale_by_stddev", updates, nu, "moments");
    const double bc = next_bias_correction(state, o);
    for (std::size_t k = 0; k < updates.size(); ++k)
      detail::elementwise(
          "scale_by_stddev", updates[k].first, {updates[k].second, mu[k].second, nu[k].second}, {true, true, true},
          [&](std::int64_t n, auto* __restrict g, auto* __restrict m, auto* __restrict v) {
            using T = std::decay_t<decltype(*g)>;
            const T decay = T(o.decay), one_minus_decay = T(1 - o.decay), c = T(bc), eps = T(o.eps);
            for (std::int64_t i = 0; i < n; ++i) {
              const T gi = g[i];
              const T mi = one_minus_decay * gi + decay * m[i];
              const T vi = one_minus_decay * (gi * gi) + decay * v[i];
              m[i] = mi;
              v[i] = vi;
              const T m_hat = mi / c, v_hat = vi / c;
              const T scaling = o.eps_in_sqrt ? T(1) / std::sqrt(v_hat - m_hat * m_hat + eps)
                                              : T(1) / (std::sqrt(v_hat - m_hat * m_hat) + eps);
              g[i] = scaling * gi;
            }
          });
  };
  return tx;
}

GradientTransformation scale_by_rss(double initial_accumulator_value, double eps) {
  GradientTransformation tx;
  tx.init = [initial_accumulator_value](const NamedTensors& params) {
    return OptState{.buffers = {{"sum_of_squares", detail::state_buffer(params, initial_accumulator_value)}}};
  };
  tx.update = [eps](NamedTensors& updates, OptState& state, const NamedTensors&) {
    NamedTensors& sums = state.buffer("sum_of_squares");
    detail::check_aligned("scale_by_rss", updates, sums, "accumulators");
    for (std::size_t k = 0; k < updates.size(); ++k)
      detail::elementwise("scale_by_rss", updates[k].first, {updates[k].second, sums[k].second}, {true, true},
                          [&](std::int64_t n, auto* __restrict g, auto* __restrict sum) {
                            using T = std::decay_t<decltype(*g)>;
                            const T e = T(eps);
                            for (std::int64_t i = 0; i < n; ++i) {
                              const T gi = g[i];
                              const T s = gi * gi + sum[i];
                              sum[i] = s;
                              const T inv_sqrt = s > T(0) ? T(1) / std::sqrt(s + e) : T(0);
                              g[i] = inv_sqrt * gi;
                            }
                          });
  };
  return tx;
}

}  // namespace xgrad::optim
