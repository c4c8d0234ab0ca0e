// The stateful wrapper for the everyday loop: it owns a transformation's state,
// reads each parameter's .grad(), and applies the updates in place.
//
//   optim::Optimizer opt(model, optim::adamw({.learning_rate = 1e-3}));
//   for (auto [x, y] : loader) {
//     Tensor loss = loss_fn(model(x), y);
//     opt.zero_grad(); loss.backward(); opt.step();
//   }
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>

#include "optim/base.hpp"

namespace xgrad::optim {

// A model the Optimizer can take: it has named_parameters() returning (path, tensor) pairs.
template <class Model>
concept HasNamedParameters = requires(Model& model) {
  { model.named_parameters() } -> std::convertible_to<NamedTensors>;
};

// Owns a GradientTransformation and its state and steps a fixed set of parameters (or a model's, fetched
// lazily) with their .grad(): the PyTorch-style loop over an optax transformation.
class Optimizer {
 public:
  // Steps `params` (the state is initialised now) with `transformation`.
  Optimizer(NamedTensors params, GradientTransformation transformation);
  // Parameters are fetched from `model` (which must outlive the optimizer) at the
  // first use, since models create them lazily at their first call.
  template <HasNamedParameters Model>
  Optimizer(Model& model, GradientTransformation transformation)
      : transformation_(std::move(transformation)),
        fetch_params_([&model] { return NamedTensors(model.named_parameters()); }) {}

  // Drops every parameter's .grad().
  void zero_grad();
  // One update: the transformation runs on the gradients (a parameter without one
  // gets zeros, as jax.grad gives for an unused parameter) under NoGradGuard, and
  // p ← p + u is written in place (version counters bumped). Uses the
  // transformation's fused_step when it has one that accepts these operands.
  // Denormals are flushed to zero in the step (FlushDenormalsGuard), as optax's
  // updates are under JAX on CPU. Without it a moment whose gradient stays 0 (a
  // unit whose ReLU stays off, a position that never wins its max pool) decays into
  // the denormals and stays there, 0.9 · k ulps rounding back to k for k ≤ 4, and
  // every later step pays the CPU's slow denormal path for it: half of the main
  // job's local kernel after 900 steps, 6 % of its training step (bench/README
  // "Denormal moments").
  void step();

  // The learning rate of the next step; throws ValueError if the transformation has none.
  double learning_rate() const;
  // The number of step() calls so far (restored by load_state_dict).
  std::int64_t step_count() const { return step_count_; }
  const NamedTensors& params();  // fetched from the model first if need be

  // The state as named tensors (copies): "opt.<transformation state>" entries
  // (e.g. "opt.0.mu.fc1.kernel", counters as 0-d Int64) and "step".
  NamedTensors state_dict();
  // Strict: every key of state_dict() with matching shape and dtype, nothing else.
  // For a model without parameters yet, the state is kept and loaded at the first step.
  void load_state_dict(const NamedTensors& state);

 private:
  bool ensure_initialized();  // false while a lazy model has no parameters
  void initialize(NamedTensors params);
  void load_now(const NamedTensors& state);

  GradientTransformation transformation_;
  std::function<NamedTensors()> fetch_params_;  // set while a model's parameters are pending
  bool initialized_ = false;
  NamedTensors params_;
  OptState state_;
  std::vector<Tensor> update_buffers_;  // reused each step; gradients are copied in
  NamedTensors updates_;
  std::vector<Tensor> grads_;  // for a fused step; capacity reused
  std::int64_t step_count_ = 0;
  std::optional<NamedTensors> pending_state_;
};

}  // namespace xgrad::optim
