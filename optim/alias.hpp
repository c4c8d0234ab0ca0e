// Named optimizers, each a short chain of transformations exactly as optax's
// alias.py builds it. Options mirror optax's arguments by name and default;
// learning_rate is required and takes a number or a Schedule:
//
//   auto tx = optim::adamw({.learning_rate = 1e-3, .weight_decay = 1e-4});
//   auto tx = optim::sgd({.learning_rate = optim::cosine_decay_schedule({.init_value = 0.1, .decay_steps = 1000}),
//                         .momentum = 0.9});
#pragma once

#include <optional>

#include "core/dtype.hpp"
#include "optim/schedule.hpp"
#include "optim/base.hpp"

namespace xgrad::optim {

// chain(trace(momentum, nesterov) if momentum is set, scale_by_learning_rate).
// Designated initializers name the fields in this order: learning_rate, momentum, nesterov, accumulator_dtype.
struct SgdOptions {
  LearningRate learning_rate;  // learning rate: a number, or a Schedule of the step count
  std::optional<double> momentum = std::nullopt;  // decay rate of the momentum trace; unset: plain SGD, no state
  bool nesterov = false;  // Nesterov momentum: the update is g + momentum·trace
  std::optional<DType> accumulator_dtype = std::nullopt;  // dtype of the momentum trace; unset: each parameter's dtype
};
// Stochastic gradient descent (optax.sgd), with optional (Nesterov) momentum.
GradientTransformation sgd(const SgdOptions& options);

// chain(scale_by_adam, scale_by_learning_rate).
// Designated initializers name the fields in this order: learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov.
struct AdamOptions {
  LearningRate learning_rate;  // learning rate: a number, or a Schedule of the step count
  double b1 = 0.9;  // b1: decay rate of the first-moment (gradient) average
  double b2 = 0.999;  // b2: decay rate of the second-moment (squared gradient) average
  double eps = 1e-8;  // added to the denominator, outside the square root, for numerical stability
  double eps_root = 0.0;  // added to the second moment inside the square root (keeps its gradient finite)
  std::optional<DType> mu_dtype = std::nullopt;  // dtype of the first-moment buffer; unset: each parameter's dtype
  bool nesterov = false;  // Nesterov momentum (the NAdam update), as nadam
};
// Adam (Kingma & Ba 2014; optax.adam). Carries a fused Optimizer step (GradientTransformation::fused_step).
GradientTransformation adam(const AdamOptions& options);

// adam with Nesterov momentum (Dozat 2016).
// Designated initializers name the fields in this order: learning_rate, b1, b2, eps, eps_root, mu_dtype.
struct NadamOptions {
  LearningRate learning_rate;  // learning rate: a number, or a Schedule of the step count
  double b1 = 0.9;  // b1: decay rate of the first-moment (gradient) average
  double b2 = 0.999;  // b2: decay rate of the second-moment (squared gradient) average
  double eps = 1e-8;  // added to the denominator, outside the square root, for numerical stability
  double eps_root = 0.0;  // added to the second moment inside the square root (keeps its gradient finite)
  std::optional<DType> mu_dtype = std::nullopt;  // dtype of the first-moment buffer; unset: each parameter's dtype
};
// NAdam (optax.nadam): adam with nesterov = true; has adam's fused step.
GradientTransformation nadam(const NadamOptions& options);

// chain(scale_by_adam, add_decayed_weights(weight_decay, mask), scale_by_learning_rate):
// decoupled decay, u = −lr·(adam direction + wd·p). mask selects the decayed parameters.
// Designated initializers name the fields in this order: learning_rate, b1, b2, eps, eps_root,
//   mu_dtype, weight_decay, mask, nesterov.
struct AdamWOptions {
  LearningRate learning_rate;  // learning rate: a number, or a Schedule of the step count
  double b1 = 0.9;  // b1: decay rate of the first-moment (gradient) average
  double b2 = 0.999;  // b2: decay rate of the second-moment (squared gradient) average
  double eps = 1e-8;  // added to the denominator, outside the square root, for numerical stability
  double eps_root = 0.0;  // added to the second moment inside the square root (keeps its gradient finite)
  std::optional<DType> mu_dtype = std::nullopt;  // dtype of the first-moment buffer; unset: each parameter's dtype
  double weight_decay = 1e-4;  // strength of the decoupled decay: wd·p joins the update before the lr
  PathPredicate mask = {};  // selects the parameters to decay by path; empty: all
  bool nesterov = false;  // Nesterov momentum (the NAdam direction)
};
// AdamW (Loshchilov & Hutter 2019; optax.adamw): adam with decoupled weight decay; has a fused step.
GradientTransformation adamw(const AdamWOptions& options);

// chain(scale_by_adamax, scale_by_learning_rate).
// Designated initializers name the fields in this order: learning_rate, b1, b2, eps.
struct AdamaxOptions {
  LearningRate learning_rate;  // learning rate: a number, or a Schedule of the step count
  double b1 = 0.9;  // b1: decay rate of the first-moment (gradient) average
  double b2 = 0.999;  // b2: decay rate of the infinity norm (max of decayed |g|)
  double eps = 1e-8;  // added to the infinity norm in the denominator, for stability
};
// Adamax (optax.adamax): adam with the infinity norm in place of the second moment.
GradientTransformation adamax(const AdamaxOptions& options);

// chain(scale_by_amsgrad, scale_by_learning_rate).
// Designated initializers name the fields in this order: learning_rate, b1, b2, eps, eps_root, mu_dtype.
struct AmsgradOptions {
  LearningRate learning_rate;  // learning rate: a number, or a Schedule of the step count
  double b1 = 0.9;  // b1: decay rate of the first-moment (gradient) average
  double b2 = 0.999;  // b2: decay rate of the second-moment (squared gradient) average
  double eps = 1e-8;  // added to the denominator, outside the square root, for numerical stability
  double eps_root = 0.0;  // added to the second moment inside the square root (keeps its gradient finite)
  std::optional<DType> mu_dtype = std::nullopt;  // dtype of the first-moment buffer; unset: each parameter's dtype
};
// AMSGrad (optax.amsgrad): adam dividing by the running maximum of the second moment.
GradientTransformation amsgrad(const AmsgradOptions& options);

// chain(scale_by_rms, or scale_by_stddev if centered, then scale_by_learning_rate,
// then trace(momentum, nesterov) if momentum is set): momentum acts after the lr.
// Designated initializers name the fields in this order: learning_rate, decay, eps, initial_scale,
//   eps_in_sqrt, centered, momentum, nesterov, bias_correction.
struct RmspropOptions {
  LearningRate learning_rate;  // learning rate: a number, or a Schedule of the step count
  double decay = 0.9;  // decay rate of the squared-gradient average
  double eps = 1e-8;  // added to the squared average (inside the root if eps_in_sqrt)
  double initial_scale = 0.0;  // initial value of the squared-gradient average
  bool eps_in_sqrt = true;  // true: g / sqrt(nu + eps); false: g / (sqrt(nu) + eps)
  bool centered = false;  // divide by the standard deviation sqrt(nu − mu²) instead of the RMS
  std::optional<double> momentum = std::nullopt;  // decay of a momentum trace after the lr; unset: none
  bool nesterov = false;  // Nesterov form of that momentum
  bool bias_correction = false;  // debias the averages by 1 − decay^t, as adam does
};
// RMSProp (optax.rmsprop), optionally centered and with momentum.
GradientTransformation rmsprop(const RmspropOptions& options);

// chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate).
// Designated initializers name the fields in this order: learning_rate, initial_accumulator_value, eps.
struct AdagradOptions {
  LearningRate learning_rate;  // learning rate: a number, or a Schedule of the step count
  double initial_accumulator_value = 0.1;  // initial value of the per-element sum of squared gradients
  double eps = 1e-7;  // added inside the square root: g / sqrt(sum + eps)
};
// Adagrad (optax.adagrad): divides by the root of the accumulated squared gradients.
GradientTransformation adagrad(const AdagradOptions& options);

// chain(scale_by_adam, add_decayed_weights, scale_by_trust_ratio, scale_by_learning_rate).
// Designated initializers name the fields in this order: learning_rate, b1, b2, eps, eps_root, weight_decay, mask.
struct LambOptions {
  LearningRate learning_rate;  // learning rate: a number, or a Schedule of the step count
  double b1 = 0.9;  // b1: decay rate of the first-moment (gradient) average
  double b2 = 0.999;  // b2: decay rate of the second-moment (squared gradient) average
  double eps = 1e-6;  // added to the denominator, outside the square root, for numerical stability
  double eps_root = 0.0;  // added to the second moment inside the square root (keeps its gradient finite)
  double weight_decay = 0.0;  // strength of the weight decay added before the trust ratio
  PathPredicate mask = {};  // selects the parameters to decay by path; empty: all
};
// LAMB (You et al. 2019; optax.lamb): adam with weight decay, scaled per parameter by the trust ratio.
GradientTransformation lamb(const LambOptions& options);

// chain(scale_by_lion, add_decayed_weights, scale_by_learning_rate).
// Designated initializers name the fields in this order: learning_rate, b1, b2, mu_dtype, weight_decay, mask.
struct LionOptions {
  LearningRate learning_rate;  // learning rate: a number, or a Schedule of the step count
  double b1 = 0.9;  // b1: weight of the momentum mixed with the gradient for the sign
  double b2 = 0.99;  // b2: decay rate of the momentum (gradient average) kept in state
  std::optional<DType> mu_dtype = std::nullopt;  // dtype of the momentum; unset: each parameter's dtype
  double weight_decay = 1e-3;  // strength of the decoupled weight decay added before the lr
  PathPredicate mask = {};  // selects the parameters to decay by path; empty: all
};
// Lion (Chen et al. 2023; optax.lion): the sign of a momentum mix, with decoupled weight decay.
GradientTransformation lion(const LionOptions& options);

// chain(add_decayed_weights(weight_decay, weight_decay_mask),
//       masked(scale_by_trust_ratio(trust_coefficient, eps), trust_ratio_mask),
//       scale_by_learning_rate, trace(momentum, nesterov)). Empty masks select all.
// Designated initializers name the fields in this order: learning_rate, weight_decay,
//   weight_decay_mask, trust_coefficient, eps, trust_ratio_mask, momentum, nesterov.
struct LarsOptions {
  LearningRate learning_rate;  // learning rate: a number, or a Schedule of the step count
  double weight_decay = 0.0;  // strength of the weight decay added to the gradient first
  PathPredicate weight_decay_mask = {};  // selects the parameters to decay by path; empty: all
  double trust_coefficient = 1e-3;  // multiplier of the trust ratio ‖p‖ / ‖u‖
  double eps = 0.0;  // added to ‖u‖ in the trust ratio's denominator
  PathPredicate trust_ratio_mask = {};  // selects the parameters the trust ratio scales; empty: all
  double momentum = 0.9;  // decay rate of the momentum trace applied after the lr
  bool nesterov = false;  // Nesterov momentum
};
// LARS (You et al. 2017; optax.lars): layer-wise trust-ratio scaling with momentum.
GradientTransformation lars(const LarsOptions& options);

}  // namespace xgrad::optim
