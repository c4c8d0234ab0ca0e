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
  LearningRate learning_rate;
  std::optional<double> momentum = std::nullopt;
  bool nesterov = false;
  std::optional<DType> accumulator_dtype = std::nullopt;
};
GradientTransformation sgd(const SgdOptions& options);

// chain(scale_by_adam, scale_by_learning_rate).
// Designated initializers name the fields in this order: learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov.
struct AdamOptions {
  LearningRate learning_rate;
  double b1 = 0.9;
  double b2 = 0.999;
  double eps = 1e-8;
  double eps_root = 0.0;
  std::optional<DType> mu_dtype = std::nullopt;
  bool nesterov = false;
};
GradientTransformation adam(const AdamOptions& options);

// adam with Nesterov momentum (Dozat 2016).
// Designated initializers name the fields in this order: learning_rate, b1, b2, eps, eps_root, mu_dtype.
struct NadamOptions {
  LearningRate learning_rate;
  double b1 = 0.9;
  double b2 = 0.999;
  double eps = 1e-8;
  double eps_root = 0.0;
  std::optional<DType> mu_dtype = std::nullopt;
};
GradientTransformation nadam(const NadamOptions& options);

// chain(scale_by_adam, add_decayed_weights(weight_decay, mask), scale_by_learning_rate):
// decoupled decay, u = −lr·(adam direction + wd·p). mask selects the decayed parameters.
// Designated initializers name the fields in this order: learning_rate, b1, b2, eps, eps_root,
//   mu_dtype, weight_decay, mask, nesterov.
struct AdamWOptions {
  LearningRate learning_rate;
  double b1 = 0.9;
  double b2 = 0.999;
  double eps = 1e-8;
  double eps_root = 0.0;
  std::optional<DType> mu_dtype = std::nullopt;
  double weight_decay = 1e-4;
  PathPredicate mask = {};
  bool nesterov = false;
};
GradientTransformation adamw(const AdamWOptions& options);

// chain(scale_by_adamax, scale_by_learning_rate).
// Designated initializers name the fields in this order: learning_rate, b1, b2, eps.
struct AdamaxOptions {
  LearningRate learning_rate;
  double b1 = 0.9;
  double b2 = 0.999;
  double eps = 1e-8;
};
GradientTransformation adamax(const AdamaxOptions& options);

// chain(scale_by_amsgrad, scale_by_learning_rate).
// Designated initializers name the fields in this order: learning_rate, b1, b2, eps, eps_root, mu_dtype.
struct AmsgradOptions {
  LearningRate learning_rate;
  double b1 = 0.9;
  double b2 = 0.999;
  double eps = 1e-8;
  double eps_root = 0.0;
  std::optional<DType> mu_dtype = std::nullopt;
};
GradientTransformation amsgrad(const AmsgradOptions& options);

// chain(scale_by_rms, or scale_by_stddev if centered, then scale_by_learning_rate,
// then trace(momentum, nesterov) if momentum is set): momentum acts after the lr.
// Designated initializers name the fields in this order: learning_rate, decay, eps, initial_scale,
//   eps_in_sqrt, centered, momentum, nesterov, bias_correction.
struct RmspropOptions {
  LearningRate learning_rate;
  double decay = 0.9;
  double eps = 1e-8;
  double initial_scale = 0.0;
  bool eps_in_sqrt = true;
  bool centered = false;
  std::optional<double> momentum = std::nullopt;
  bool nesterov = false;
  bool bias_correction = false;
};
GradientTransformation rmsprop(const RmspropOptions& options);

// chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate).
// Designated initializers name the fields in this order: learning_rate, initial_accumulator_value, eps.
struct AdagradOptions {
  LearningRate learning_rate;
  double initial_accumulator_value = 0.1;
  double eps = 1e-7;
};
GradientTransformation adagrad(const AdagradOptions& options);

// chain(scale_by_adam, add_decayed_weights, scale_by_trust_ratio, scale_by_learning_rate).
// Designated initializers name the fields in this order: learning_rate, b1, b2, eps, eps_root, weight_decay, mask.
struct LambOptions {
  LearningRate learning_rate;
  double b1 = 0.9;
  double b2 = 0.999;
  double eps = 1e-6;
  double eps_root = 0.0;
  double weight_decay = 0.0;
  PathPredicate mask = {};
};
GradientTransformation lamb(const LambOptions& options);

// chain(scale_by_lion, add_decayed_weights, scale_by_learning_rate).
// Designated initializers name the fields in this order: learning_rate, b1, b2, mu_dtype, weight_decay, mask.
struct LionOptions {
  LearningRate learning_rate;
  double b1 = 0.9;
  double b2 = 0.99;
  std::optional<DType> mu_dtype = std::nullopt;
  double weight_decay = 1e-3;
  PathPredicate mask = {};
};
GradientTransformation lion(const LionOptions& options);

// chain(add_decayed_weights(weight_decay, weight_decay_mask),
//       masked(scale_by_trust_ratio(trust_coefficient, eps), trust_ratio_mask),
//       scale_by_learning_rate, trace(momentum, nesterov)). Empty masks select all.
// Designated initializers name the fields in this order: learning_rate, weight_decay,
//   weight_decay_mask, trust_coefficient, eps, trust_ratio_mask, momentum, nesterov.
struct LarsOptions {
  LearningRate learning_rate;
  double weight_decay = 0.0;
  PathPredicate weight_decay_mask = {};
  double trust_coefficient = 1e-3;
  double eps = 0.0;
  PathPredicate trust_ratio_mask = {};
  double momentum = 0.9;
  bool nesterov = false;
};
GradientTransformation lars(const LarsOptions& options);

}  // namespace xgrad::optim
