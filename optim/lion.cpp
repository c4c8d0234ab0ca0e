// Lion (Chen et al. 2023): the sign of an interpolation of momentum and gradient.
#include <cstdint>

#include "optim/detail.hpp"
#include "optim/transforms.hpp"

namespace xgrad::optim {

GradientTransformation scale_by_lion(const ScaleByLionOptions& o) {
  GradientTransformation tx;
  tx.init = [o](const NamedTensors& params) {
    return OptState{.buffers = {{"mu", detail::state_buffer(params, 0.0, o.mu_dtype)}}, .counters = {{"count", 0}}};
  };
  tx.update = [o](NamedTensors& updates, OptState& state, const NamedTensors&) {
    NamedTensors& mu = state.buffer("mu");
    detail::check_aligned("scale_by_lion", updates, mu, "moments");
    for (std::size_t k = 0; k < updates.size(); ++k)
      detail::elementwise("scale_by_lion", updates[k].first, {updates[k].second, mu[k].second}, {true, true},
                          [&](std::int64_t n, auto* __restrict g, auto* __restrict m) {
                            using T = std::decay_t<decltype(*g)>;
                            const T b1 = T(o.b1), b2 = T(o.b2), one_minus_b1 = T(1 - o.b1),
                                    one_minus_b2 = T(1 - o.b2);
                            for (std::int64_t i = 0; i < n; ++i) {
                              const T gi = g[i];
                              const T x = one_minus_b1 * gi + b1 * m[i];
                              m[i] = one_minus_b2 * gi + b2 * m[i];
                              g[i] = x > T(0) ? T(1) : x < T(0) ? T(-1) : x;  // jnp.sign: 0 and NaN stay
                            }
                          });
    ++state.counter("count");
  };
  return tx;
}

}  // namespace xgrad::optim
