// Layer-wise trust ratio (LARS, LAMB): each parameter's update is rescaled so
// that its norm is proportional to the parameter's norm.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "optim/detail.hpp"
#include "optim/transforms.hpp"

namespace xgrad::optim {

GradientTransformation scale_by_trust_ratio(const ScaleByTrustRatioOptions& o) {
  return detail::stateless([o](NamedTensors& updates, const NamedTensors& params) {
    detail::check_aligned("scale_by_trust_ratio", updates, params, "parameters");
    for (std::size_t k = 0; k < updates.size(); ++k) {
      // optax's safe_norm: the norm, floored at min_norm.
      const double param_norm = std::max(std::sqrt(detail::sum_of_squares(params[k].second)), o.min_norm);
      const double update_norm = std::max(std::sqrt(detail::sum_of_squares(updates[k].second)), o.min_norm);
      const double ratio = (param_norm == 0.0 || update_norm == 0.0)
                               ? 1.0
                               : o.trust_coefficient * param_norm / (update_norm + o.eps);
      detail::elementwise("scale_by_trust_ratio", updates[k].first, {updates[k].second}, {true},
                          [ratio](std::int64_t n, auto* g) {
                            using T = std::decay_t<decltype(*g)>;
                            const T r = T(ratio);
                            for (std::int64_t i = 0; i < n; ++i) g[i] = g[i] * r;
                          });
    }
  });
}

}  // namespace xgrad::optim
