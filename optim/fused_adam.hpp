// Internal to optim/: the fused step of the adam / nadam / adamw chains (see
// GradientTransformation::fused_step).
#pragma once

#include "optim/schedule.hpp"
#include "optim/base.hpp"

namespace xgrad::optim::detail {

// The chain it runs: scale_by_adam(b1, b2, eps, eps_root, nesterov), then
// add_decayed_weights(weight_decay, decay_mask) if weight_decay ≠ 0, then
// scale_by_learning_rate(learning_rate), whose state is the chain's last.
// Designated initializers name the fields in this order: eps_root, nesterov, weight_decay, decay_mask, learning_rate.
struct FusedAdamOptions {
  double b1, b2, eps, eps_root;
  bool nesterov;
  double weight_decay;
  PathPredicate decay_mask;
  LearningRate learning_rate;
};

decltype(GradientTransformation::fused_step) fused_adam_step(FusedAdamOptions options);

}  // namespace xgrad::optim::detail
