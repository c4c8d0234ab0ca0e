// The building blocks, with optax's names, formulas and defaults (g: the incoming
// update, t: the update count after this step, 1-based). State is kept in float32
// (float64 for float64 parameters) unless a dtype is given; 16-bit updates and
// parameters are computed in float32.
#pragma once

#include <cstdint>
#include <optional>

#include "core/dtype.hpp"
#include "optim/schedule.hpp"
#include "optim/base.hpp"

namespace xgrad::optim {

// g·step_size.
GradientTransformation scale(double step_size);
// g·step_size_fn(count); counter "count" from 0.
GradientTransformation scale_by_schedule(Schedule step_size_fn);
// g·(−lr) (g·lr without flip_sign): scale for a constant, scale_by_schedule for a schedule.
// Reports the learning rate of the next step to Optimizer::learning_rate().
GradientTransformation scale_by_learning_rate(LearningRate learning_rate, bool flip_sign = true);

// Adam: m ← b1·m + (1−b1)g, v ← b2·v + (1−b2)g², u = m̂/(√(v̂ + eps_root) + eps) with
// m̂ = m/(1−b1ᵗ), v̂ = v/(1−b2ᵗ); Nesterov: m̂ = b1·m/(1−b1ᵗ⁺¹) + (1−b1)g/(1−b1ᵗ).
// State: mu (in mu_dtype if given), nu, count. One pass per tensor; the bias corrections
// are applied as multipliers 1/(1 − bᵗ) (within an ulp of optax's divisions).
// Designated initializers name the fields in this order: b1, b2, eps, eps_root, mu_dtype, nesterov.
struct ScaleByAdamOptions {
  double b1 = 0.9;  // decay of the first moment m
  double b2 = 0.999;  // decay of the second moment v
  double eps = 1e-8;  // added to the denominator
  double eps_root = 0.0;  // added to v̂ inside the square root
  std::optional<DType> mu_dtype = std::nullopt;  // dtype of mu; empty: float32 (float64 for float64 params)
  bool nesterov = false;  // Nesterov momentum (NAdam)
};
GradientTransformation scale_by_adam(const ScaleByAdamOptions& options = {});  // The Adam scaling (above).

// AMSGrad: Adam's moments, with v̂_max ← max(v̂_max, v̂) in place of v̂. State: mu, nu, nu_max, count.
// Designated initializers name the fields in this order: b1, b2, eps, eps_root, mu_dtype.
struct ScaleByAmsgradOptions {
  double b1 = 0.9;  // decay of the first moment m
  double b2 = 0.999;  // decay of the second moment v
  double eps = 1e-8;  // added to the denominator
  double eps_root = 0.0;  // added to v̂ inside the square root
  std::optional<DType> mu_dtype = std::nullopt;  // dtype of mu; empty: float32 (float64 for float64 params)
};
GradientTransformation scale_by_amsgrad(const ScaleByAmsgradOptions& options = {});  // The AMSGrad scaling (above).

// Adamax: m as Adam, v ← max(b2·v, |g| + eps), u = m̂/v. State: mu, nu, count.
// Designated initializers name the fields in this order: b1, b2, eps.
struct ScaleByAdamaxOptions {
  double b1 = 0.9;  // decay of the first moment m
  double b2 = 0.999;  // decay of the max of |g|
  double eps = 1e-8;  // added to |g| before the max
};
GradientTransformation scale_by_adamax(const ScaleByAdamaxOptions& options = {});  // The Adamax scaling (above).

// RMS: ν ← decay·ν + (1−decay)g² (ν starts at initial_scale), u = g/√(ν̂ + eps)
// (g/(√ν̂ + eps) without eps_in_sqrt); ν̂ = ν/(1−decayᵗ) with bias_correction.
// State: nu (+ count with bias_correction).
// Designated initializers name the fields in this order: decay, eps, initial_scale, eps_in_sqrt, bias_correction.
struct ScaleByRmsOptions {
  double decay = 0.9;  // decay of ν
  double eps = 1e-8;  // added to the denominator
  double initial_scale = 0.0;  // ν before the first step
  bool eps_in_sqrt = true;  // eps inside the square root (optax default)
  bool bias_correction = false;  // divide ν by 1 − decayᵗ
};
GradientTransformation scale_by_rms(const ScaleByRmsOptions& options = {});  // The RMS scaling (above).
// Centered RMS: also m ← decay·m + (1−decay)g, and u = g/√(ν̂ − m̂² + eps). State: mu, nu (+ count).
GradientTransformation scale_by_stddev(const ScaleByRmsOptions& options = {});

// Adagrad's scaling: G ← G + g² (G starts at initial_accumulator_value),
// u = g/√(G + eps), or 0 where G == 0. State: sum_of_squares.
GradientTransformation scale_by_rss(double initial_accumulator_value = 0.1, double eps = 1e-7);

// Momentum: τ ← g + decay·τ, u = τ (Nesterov: u = g + decay·τ). State: trace.
GradientTransformation trace(double decay, bool nesterov = false, std::optional<DType> accumulator_dtype = std::nullopt);

// Per parameter: u·trust_coefficient·‖p‖/(‖u‖ + eps), norms floored at min_norm;
// the factor is 1 when either norm is 0. Needs params.
// Designated initializers name the fields in this order: min_norm, trust_coefficient, eps.
struct ScaleByTrustRatioOptions {
  double min_norm = 0.0;  // floor of both norms
  double trust_coefficient = 1.0;  // multiplies the ratio
  double eps = 0.0;  // added to ‖u‖
};
// The trust-ratio scaling (above).
GradientTransformation scale_by_trust_ratio(const ScaleByTrustRatioOptions& options = {});

// Lion: u = sign((1−b1)g + b1·m), then m ← b2·m + (1−b2)g. State: mu, count.
// Designated initializers name the fields in this order: b1, b2, mu_dtype.
struct ScaleByLionOptions {
  double b1 = 0.9;  // interpolation of g and m in the update
  double b2 = 0.99;  // decay of m
  std::optional<DType> mu_dtype = std::nullopt;  // dtype of mu; empty: float32 (float64 for float64 params)
};
GradientTransformation scale_by_lion(const ScaleByLionOptions& options = {});  // The Lion update (above).

// u + weight_decay·p on the parameters `mask` selects (all if empty). Needs params.
// A weight decay of exactly 0 is skipped entirely (identity).
GradientTransformation add_decayed_weights(double weight_decay = 0.0, PathPredicate mask = {});

// DP-SGD's aggregation (optax.contrib.differentially_private_aggregate): takes
// per-example gradients [B, param shape...] (xgrad::per_example_grads) and returns
// param-shaped updates. Each example's gradient is scaled by min(l2_norm_clip / ‖g_b‖, 1)
// (‖·‖ over all parameters jointly; 0/0 counts as 1), the scaled gradients are summed,
// Gaussian noise of std l2_norm_clip · noise_multiplier is added, and the result is
// divided by B. Noise: with (k_next, k_step) = split(k) of the state's key
// (make_key(seed) at init; counter "rng_key", the key's 64 bits as int64), parameter `path` gets
// random_normal(fold_in(k_step, path), shape, dtype) · std, and k_next is kept. It must
// come first in a chain. Throws ShapeError unless every update has the same batch axis 0.
GradientTransformation differentially_private_aggregate(double l2_norm_clip, double noise_multiplier,
                                                        std::uint64_t seed);

// Elementwise clip to [−max_delta, max_delta].
GradientTransformation clip(double max_delta);
// With ‖g‖ the L2 norm over all updates: g if ‖g‖ < max_norm, else g/‖g‖·max_norm.
GradientTransformation clip_by_global_norm(double max_norm);

}  // namespace xgrad::optim
