// Gradient clipping: elementwise (clip) and by the global L2 norm.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "optim/detail.hpp"
#include "optim/transforms.hpp"

namespace xgrad::optim {

GradientTransformation clip(double max_delta) {
  return detail::stateless([max_delta](NamedTensors& updates, const NamedTensors&) {
    for (auto& [path, u] : updates)
      detail::elementwise("clip", path, {u}, {true}, [max_delta](std::int64_t n, auto* g) {
        using T = std::decay_t<decltype(*g)>;
        const T hi = T(max_delta), lo = T(-max_delta);
        for (std::int64_t i = 0; i < n; ++i) g[i] = std::min(std::max(g[i], lo), hi);
      });
  });
}

GradientTransformation clip_by_global_norm(double max_norm) {
  return detail::stateless([max_norm](NamedTensors& updates, const NamedTensors&) {
    double total = 0.0;
    for (const auto& [path, u] : updates) total += detail::sum_of_squares(u);
    const double norm = std::sqrt(total);
    if (norm < max_norm) return;
    for (auto& [path, u] : updates)
      detail::elementwise("clip_by_global_norm", path, {u}, {true}, [&](std::int64_t n, auto* g) {
        using T = std::decay_t<decltype(*g)>;
        const T g_norm = T(norm), limit = T(max_norm);
        for (std::int64_t i = 0; i < n; ++i) g[i] = (g[i] / g_norm) * limit;
      });
  });
}

}  // namespace xgrad::optim
