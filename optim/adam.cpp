// The Adam family: scale_by_adam (with Nesterov for NAdam), scale_by_amsgrad,
// scale_by_adamax. Each update is one fused pass per tensor: it reads g and the
// moments, writes the moments back and overwrites g with the direction.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "optim/adam_math.hpp"
#include "optim/detail.hpp"
#include "optim/transforms.hpp"

namespace xgrad::optim {

namespace {

using detail::bias_correction;

OptState moments_state(const NamedTensors& params, std::optional<DType> mu_dtype,
                       std::initializer_list<const char*> more_buffers = {}) {
  OptState state{.buffers = {{"mu", detail::state_buffer(params, 0.0, mu_dtype)},
                             {"nu", detail::state_buffer(params, 0.0)}},
                 .counters = {{"count", 0}}};
  for (const char* name : more_buffers) state.buffers.emplace_back(name, detail::state_buffer(params, 0.0));
  return state;
}

}  // namespace

GradientTransformation scale_by_adam(const ScaleByAdamOptions& o) {
  GradientTransformation tx;
  tx.init = [o](const NamedTensors& params) { return moments_state(params, o.mu_dtype); };
  tx.update = [o](NamedTensors& updates, OptState& state, const NamedTensors&) {
    NamedTensors& mu = state.buffer("mu");
    NamedTensors& nu = state.buffer("nu");
    detail::check_aligned("scale_by_adam", updates, mu, "moments");
    std::int64_t& count = state.counter("count");
    const std::int64_t t = count + 1;
    for (std::size_t k = 0; k < updates.size(); ++k) {
      detail::elementwise(
          "scale_by_adam", updates[k].first, {updates[k].second, mu[k].second, nu[k].second}, {true, true, true},
          [&](std::int64_t n, auto* __restrict g, auto* __restrict m, auto* __restrict v) {
            using T = std::decay_t<decltype(*g)>;
            const auto c = detail::AdamCoefficients<T>::at(o.b1, o.b2, o.eps, o.eps_root, t);
            if (o.nesterov)
              for (std::int64_t i = 0; i < n; ++i) g[i] = detail::adam_direction<true>(c, g[i], m[i], v[i]);
            else
              for (std::int64_t i = 0; i < n; ++i) g[i] = detail::adam_direction<false>(c, g[i], m[i], v[i]);
          });
    }
    count = t;
  };
  return tx;
}

GradientTransformation scale_by_amsgrad(const ScaleByAmsgradOptions& o) {
  GradientTransformation tx;
  tx.init = [o](const NamedTensors& params) { return moments_state(params, o.mu_dtype, {"nu_max"}); };
  tx.update = [o](NamedTensors& updates, OptState& state, const NamedTensors&) {
    NamedTensors& mu = state.buffer("mu");
    NamedTensors& nu = state.buffer("nu");
    NamedTensors& nu_max = state.buffer("nu_max");
    detail::check_aligned("scale_by_amsgrad", updates, mu, "moments");
    std::int64_t& count = state.counter("count");
    const std::int64_t t = count + 1;
    const double bc1 = bias_correction(o.b1, t), bc2 = bias_correction(o.b2, t);
    for (std::size_t k = 0; k < updates.size(); ++k) {
      detail::elementwise(
          "scale_by_amsgrad", updates[k].first, {updates[k].second, mu[k].second, nu[k].second, nu_max[k].second},
          {true, true, true, true},
          [&](std::int64_t n, auto* __restrict g, auto* __restrict m, auto* __restrict v, auto* __restrict v_max) {
            using T = std::decay_t<decltype(*g)>;
            const T b1 = T(o.b1), b2 = T(o.b2), one_minus_b1 = T(1 - o.b1), one_minus_b2 = T(1 - o.b2);
            const T c1 = T(bc1), c2 = T(bc2), eps = T(o.eps), eps_root = T(o.eps_root);
            for (std::int64_t i = 0; i < n; ++i) {
              const T gi = g[i];
              const T mi = one_minus_b1 * gi + b1 * m[i];
              const T vi = one_minus_b2 * (gi * gi) + b2 * v[i];
              m[i] = mi;
              v[i] = vi;
              const T vmax = std::max(v_max[i], vi / c2);
              v_max[i] = vmax;
              g[i] = (mi / c1) / (std::sqrt(vmax + eps_root) + eps);
            }
          });
    }
    count = t;
  };
  return tx;
}

GradientTransformation scale_by_adamax(const ScaleByAdamaxOptions& o) {
  GradientTransformation tx;
  tx.init = [](const NamedTensors& params) { return moments_state(params, std::nullopt); };
  tx.update = [o](NamedTensors& updates, OptState& state, const NamedTensors&) {
    NamedTensors& mu = state.buffer("mu");
    NamedTensors& nu = state.buffer("nu");
    detail::check_aligned("scale_by_adamax", updates, mu, "moments");
    std::int64_t& count = state.counter("count");
    const std::int64_t t = count + 1;
    const double bc1 = bias_correction(o.b1, t);
    for (std::size_t k = 0; k < updates.size(); ++k) {
      detail::elementwise(
          "scale_by_adamax", updates[k].first, {updates[k].second, mu[k].second, nu[k].second}, {true, true, true},
          [&](std::int64_t n, auto* __restrict g, auto* __restrict m, auto* __restrict v) {
            using T = std::decay_t<decltype(*g)>;
            const T b1 = T(o.b1), b2 = T(o.b2), one_minus_b1 = T(1 - o.b1), c1 = T(bc1), eps = T(o.eps);
            for (std::int64_t i = 0; i < n; ++i) {
              const T gi = g[i];
              const T mi = one_minus_b1 * gi + b1 * m[i];
              const T vi = std::max(std::abs(gi) + eps, b2 * v[i]);  // the infinity-norm moment
              m[i] = mi;
              v[i] = vi;
              g[i] = (mi / c1) / vi;
            }
          });
    }
    count = t;
  };
  return tx;
}

}  // namespace xgrad::optim
