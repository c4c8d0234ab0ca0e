// The named optimizers: optax's alias.py, one chain each. adam, nadam and adamw
// also carry a fused step (optim/fused_adam.cpp) that Optimizer uses.
#include "optim/alias.hpp"

#include "optim/fused_adam.hpp"
#include "optim/transforms.hpp"

namespace xgrad::optim {

GradientTransformation sgd(const SgdOptions& o) {
  return chain(o.momentum ? trace(*o.momentum, o.nesterov, o.accumulator_dtype) : identity(),
               scale_by_learning_rate(o.learning_rate));
}

GradientTransformation adam(const AdamOptions& o) {
  GradientTransformation tx = chain(scale_by_adam({.b1 = o.b1,
                                                   .b2 = o.b2,
                                                   .eps = o.eps,
                                                   .eps_root = o.eps_root,
                                                   .mu_dtype = o.mu_dtype,
                                                   .nesterov = o.nesterov}),
                                    scale_by_learning_rate(o.learning_rate));
  tx.fused_step = detail::fused_adam_step({.b1 = o.b1,
                                           .b2 = o.b2,
                                           .eps = o.eps,
                                           .eps_root = o.eps_root,
                                           .nesterov = o.nesterov,
                                           .weight_decay = 0.0,
                                           .decay_mask = {},
                                           .learning_rate = o.learning_rate});
  return tx;
}

GradientTransformation nadam(const NadamOptions& o) {
  return adam({.learning_rate = o.learning_rate,
               .b1 = o.b1,
               .b2 = o.b2,
               .eps = o.eps,
               .eps_root = o.eps_root,
               .mu_dtype = o.mu_dtype,
               .nesterov = true});
}

GradientTransformation adamw(const AdamWOptions& o) {
  GradientTransformation tx = chain(scale_by_adam({.b1 = o.b1,
                                                   .b2 = o.b2,
                                                   .eps = o.eps,
                                                   .eps_root = o.eps_root,
                                                   .mu_dtype = o.mu_dtype,
                                                   .nesterov = o.nesterov}),
                                    add_decayed_weights(o.weight_decay, o.mask),
                                    scale_by_learning_rate(o.learning_rate));
  tx.fused_step = detail::fused_adam_step({.b1 = o.b1,
                                           .b2 = o.b2,
                                           .eps = o.eps,
                                           .eps_root = o.eps_root,
                                           .nesterov = o.nesterov,
                                           .weight_decay = o.weight_decay,
                                           .decay_mask = o.mask,
                                           .learning_rate = o.learning_rate});
  return tx;
}

GradientTransformation adamax(const AdamaxOptions& o) {
  return chain(scale_by_adamax({.b1 = o.b1, .b2 = o.b2, .eps = o.eps}), scale_by_learning_rate(o.learning_rate));
}

GradientTransformation amsgrad(const AmsgradOptions& o) {
  return chain(
      scale_by_amsgrad({.b1 = o.b1, .b2 = o.b2, .eps = o.eps, .eps_root = o.eps_root, .mu_dtype = o.mu_dtype}),
      scale_by_learning_rate(o.learning_rate));
}

GradientTransformation rmsprop(const RmspropOptions& o) {
  const ScaleByRmsOptions rms{.decay = o.decay,
                              .eps = o.eps,
                              .initial_scale = o.initial_scale,
                              .eps_in_sqrt = o.eps_in_sqrt,
                              .bias_correction = o.bias_correction};
  return chain(o.centered ? scale_by_stddev(rms) : scale_by_rms(rms), scale_by_learning_rate(o.learning_rate),
               o.momentum ? trace(*o.momentum, o.nesterov) : identity());
}

GradientTransformation adagrad(const AdagradOptions& o) {
  return chain(scale_by_rss(o.initial_accumulator_value, o.eps), scale_by_learning_rate(o.learning_rate));
}

GradientTransformation lamb(const LambOptions& o) {
  return chain(scale_by_adam({.b1 = o.b1, .b2 = o.b2, .eps = o.eps, .eps_root = o.eps_root}),
               add_decayed_weights(o.weight_decay, o.mask), scale_by_trust_ratio(),
               scale_by_learning_rate(o.learning_rate));
}

GradientTransformation lion(const LionOptions& o) {
  return chain(scale_by_lion({.b1 = o.b1, .b2 = o.b2, .mu_dtype = o.mu_dtype}),
               add_decayed_weights(o.weight_decay, o.mask), scale_by_learning_rate(o.learning_rate));
}

GradientTransformation lars(const LarsOptions& o) {
  GradientTransformation trust_ratio = scale_by_trust_ratio({.trust_coefficient = o.trust_coefficient, .eps = o.eps});
  return chain(add_decayed_weights(o.weight_decay, o.weight_decay_mask),
               o.trust_ratio_mask ? masked(std::move(trust_ratio), o.trust_ratio_mask) : std::move(trust_ratio),
               scale_by_learning_rate(o.learning_rate), trace(o.momentum, o.nesterov));
}

}  // namespace xgrad::optim
