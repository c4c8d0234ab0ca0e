// Momentum as a transformation (optax's trace): sgd and rmsprop add it to a chain.
#include <cstdint>

#include "optim/detail.hpp"
#include "optim/transforms.hpp"

namespace xgrad::optim {

GradientTransformation trace(double decay, bool nesterov, std::optional<DType> accumulator_dtype) {
  GradientTransformation tx;
  tx.init = [accumulator_dtype](const NamedTensors& params) {
    return OptState{.buffers = {{"trace", detail::state_buffer(params, 0.0, accumulator_dtype)}}};
  };
  tx.update = [decay, nesterov](NamedTensors& updates, OptState& state, const NamedTensors&) {
    NamedTensors& traces = state.buffer("trace");
    detail::check_aligned("trace", updates, traces, "traces");
    for (std::size_t k = 0; k < updates.size(); ++k)
      detail::elementwise("trace", updates[k].first, {updates[k].second, traces[k].second}, {true, true},
                          [&](std::int64_t n, auto* __restrict g, auto* __restrict tr) {
                            using T = std::decay_t<decltype(*g)>;
                            const T d = T(decay);
                            for (std::int64_t i = 0; i < n; ++i) {
                              const T t = g[i] + d * tr[i];
                              tr[i] = t;
                              g[i] = nesterov ? g[i] + d * t : t;
                            }
                          });
  };
  return tx;
}

}  // namespace xgrad::optim
