// Decoupled weight decay as a transformation (AdamW, LAMB, Lion, LARS): it adds
// weight_decay·p to the update before the learning-rate scaling.
#include <cstdint>

#include "optim/detail.hpp"
#include "optim/transforms.hpp"

namespace xgrad::optim {

GradientTransformation add_decayed_weights(double weight_decay, PathPredicate mask) {
  if (weight_decay == 0.0) return identity();
  GradientTransformation tx = detail::stateless([weight_decay](NamedTensors& updates, const NamedTensors& params) {
    detail::check_aligned("add_decayed_weights", updates, params, "parameters");
    for (std::size_t k = 0; k < updates.size(); ++k)
      detail::elementwise("add_decayed_weights", updates[k].first, {updates[k].second, params[k].second},
                          {true, false}, [weight_decay](std::int64_t n, auto* __restrict g, auto* __restrict p) {
                            using T = std::decay_t<decltype(*g)>;
                            const T wd = T(weight_decay);
                            for (std::int64_t i = 0; i < n; ++i) g[i] = g[i] + wd * p[i];
                          });
  });
  return mask ? masked(std::move(tx), std::move(mask)) : tx;
}

}  // namespace xgrad::optim
