// optax.contrib.differentially_private_aggregate (DP-SGD, Abadi et al. 2016).
#include <bit>
#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "autograd/grad_mode.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "core/random.hpp"
#include "optim/transforms.hpp"

namespace xgrad::optim {

namespace {

// Every update must be a per-example gradient: a batch axis 0 of one size.
std::int64_t check_batch_axis(const NamedTensors& updates) {
  if (updates.empty()) throw ValueError("differentially_private_aggregate: no updates");
  const std::int64_t batch = updates.front().second.dim() >= 1 ? updates.front().second.size(0) : -1;
  for (const auto& [path, g] : updates)
    if (g.dim() == 0 || g.size(0) != batch || batch == 0)
      throw ShapeError(fmt::format(
          "differentially_private_aggregate: expects per-example gradients with one batch axis 0 of the same size "
          "(per_example_grads); '{}' has shape {}, '{}' has {}",
          path, shape_str(g.shape()), updates.front().first, shape_str(updates.front().second.shape())));
  return batch;
}

// optax's state is the PRNG key: its 64 bits kept as one int64 counter (the same bits,
// reinterpreted), which a checkpoint holds exactly.
void store_key(OptState& state, Key key) {
  const auto bits = std::bit_cast<std::int64_t>(key.state);
  if (state.counters.empty()) state.counters = {{"rng_key", bits}};
  state.counter("rng_key") = bits;
}

Key load_key(const OptState& state) { return Key{std::bit_cast<std::uint64_t>(state.counter("rng_key"))}; }

}  // namespace

GradientTransformation differentially_private_aggregate(double l2_norm_clip, double noise_multiplier,
                                                        std::uint64_t seed) {
  if (!(l2_norm_clip >= 0.0) || !(noise_multiplier >= 0.0))
    throw ValueError(fmt::format("differentially_private_aggregate: l2_norm_clip ({}) and noise_multiplier ({}) must "
                                 "be non-negative",
                                 l2_norm_clip, noise_multiplier));
  const double noise_std = l2_norm_clip * noise_multiplier;
  GradientTransformation tx;
  tx.init = [seed](const NamedTensors&) {
    OptState state;
    store_key(state, make_key(seed));
    return state;
  };
  tx.update = [l2_norm_clip, noise_std](NamedTensors& updates, OptState& state, const NamedTensors&) {
    const std::int64_t batch = check_batch_axis(updates);
    NoGradGuard no_recording;
    // Global L2 norm of each example's gradient over all parameters, in float64.
    std::vector<double> squares(static_cast<std::size_t>(batch), 0.0);
    for (const auto& [path, g] : updates) {
      const std::vector<double> rows = sum(square(cast(reshape(g, {batch, -1}), DType::Float64)), {1}).to_vector();
      for (std::size_t b = 0; b < rows.size(); ++b) squares[b] += rows[b];
    }
    // optax: min(clip / norm, 1), with NaN (0 / 0) -> 1.
    std::vector<double> multipliers(squares.size());
    for (std::size_t b = 0; b < squares.size(); ++b) {
      const double m = std::min(l2_norm_clip / std::sqrt(squares[b]), 1.0);
      multipliers[b] = std::isnan(m) ? 1.0 : m;
    }
    const Key key = load_key(state);
    const auto [next_key, step_key] = split(key);
    for (auto& [path, g] : updates) {
      // Σ_b multiplier_b · g_b as one [1, B] · [B, n] product, in g's dtype.
      const Tensor weights = from_vector(multipliers, {1, batch}, g.dtype());
      Shape param_shape(g.shape().begin() + 1, g.shape().end());
      Tensor clipped_sum = reshape(matmul(weights, reshape(g, {batch, -1})), param_shape);
      if (noise_std > 0.0)
        clipped_sum = clipped_sum + random_normal(fold_in(step_key, path), param_shape, g.dtype(), 0.0, noise_std);
      g = clipped_sum / static_cast<double>(batch);
    }
    store_key(state, next_key);
  };
  return tx;
}

}  // namespace xgrad::optim
