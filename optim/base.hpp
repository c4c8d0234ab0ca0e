// Gradient transformations, the optax model of an optimizer (optax._src.base: the type
// and chain; the building blocks are in optim/transforms.hpp): an init/update pair
// that turns gradients into parameter updates. Small transformations compose
// with chain(); the named optimizers (optim/alias.hpp) are short chains, and
// optim::Optimizer (optim/optimizer.hpp) wraps one for the everyday loop.
//
//   auto tx = optim::chain(optim::clip_by_global_norm(1.0), optim::adamw({.learning_rate = 1e-3}));
//   optim::OptState state = tx.init(params);
//   tx.update(updates, state, params);   // updates: gradients in, updates out
//   optim::apply_updates(params, updates);
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad::optim {

// (path, tensor) pairs in a fixed order, as Module::named_parameters() returns
// them. Updates carry the same paths in the same order as the parameters.
using xgrad::NamedTensors;  // core/tensor.hpp

// Selects parameters by path, e.g. "decay everything but biases". Empty selects all.
using PathPredicate = std::function<bool(const std::string& path)>;

// The state of a transformation, in a form a checkpoint can hold: per-parameter
// buffers (each lines up with the parameters it was initialised for), integer
// counters, and the states of inner transformations (chain: "0", "1", ...;
// masked: "inner"). Names follow optax's state fields (mu, nu, trace, count).
struct OptState {
  std::vector<std::pair<std::string, NamedTensors>> buffers = {};  // per-parameter buffers by name, e.g. "mu"
  std::vector<std::pair<std::string, std::int64_t>> counters = {};  // integer counters by name, e.g. "count"
  std::vector<std::pair<std::string, OptState>> inner = {};  // states of inner transformations by name

  // The buffer called `name`; ValueError if there is none (a state from another transformation's init).
  NamedTensors& buffer(std::string_view name);
  // The counter called `name`, writable; ValueError if there is none.
  std::int64_t& counter(std::string_view name);
  // The counter called `name`; ValueError if there is none.
  std::int64_t counter(std::string_view name) const;
};

// An optimizer as optax models it: a pure init/update pair (optax.GradientTransformation), plus the
// learning rate it uses and an optional fused step. Build them with the functions of optim/transforms.hpp
// and optim/alias.hpp rather than by hand.
struct GradientTransformation {
  // The initial state for these parameters.
  std::function<OptState(const NamedTensors& params)> init;
  // Turns `updates` (gradients on entry) into new updates in place: it writes into
  // their storage or replaces the handles. Advances `state`. `params` are the
  // current parameters; transformations that do not read them accept an empty list.
  // Computes in the caller's floating-point mode; Optimizer::step flushes denormals
  // (a FlushDenormalsGuard around a direct call gives the same bits).
  std::function<void(NamedTensors& updates, OptState& state, const NamedTensors& params)> update;
  // The learning rate the next update uses, for transformations that have one.
  std::function<std::optional<double>(const OptState& state)> learning_rate;
  // Optional fast path, set by the named optimizers that have one (adam, nadam,
  // adamw): a whole Optimizer step — update, then apply_updates — in one pass per
  // parameter, with bitwise the same parameters and state. `grads` line up with
  // `params` (undefined: zeros). Returns false, having changed nothing, for operands
  // it does not handle (e.g. 16-bit parameters or a mu_dtype); the combinators
  // (chain, masked) drop it, so chain(clip, adam) runs unfused.
  std::function<bool(const NamedTensors& params, const std::vector<Tensor>& grads, OptState& state)> fused_step;
};

// Leaves updates unchanged (a placeholder, e.g. sgd without momentum).
GradientTransformation identity();

// Applies the transformations in order; state is one inner state per element.
GradientTransformation chain(std::vector<GradientTransformation> transformations);
// chain(a, b, ...) of GradientTransformation values: the same as chain({a, b, ...}).
template <class... Ts>
  requires(sizeof...(Ts) > 0 && (std::same_as<std::remove_cvref_t<Ts>, GradientTransformation> && ...))
GradientTransformation chain(Ts&&... transformations) {
  return chain(std::vector<GradientTransformation>{std::forward<Ts>(transformations)...});
}

// Runs `inner` on the parameters whose path `mask` selects; other updates pass through.
GradientTransformation masked(GradientTransformation inner, PathPredicate mask);

// p ← p + u, computed in float32 (float64 if either is float64) and stored in p's
// dtype, in place; bumps each parameter's version counter.
void apply_updates(const NamedTensors& params, const NamedTensors& updates);

// A state as named tensors for a checkpoint: buffers as "<prefix>.<buffer>.<param path>"
// (copies), counters as 0-d Int64 tensors "<prefix>.<counter>", inner states under
// "<prefix>.<inner name>".
NamedTensors state_to_named_tensors(const OptState& state, const std::string& prefix);
// The inverse, into a state of the right structure (e.g. fresh from init): strict,
// every entry must be present with its shape and dtype and nothing else; `what`
// names the caller in errors. Nothing is written unless everything matches.
void load_state_from_named_tensors(OptState& state, const NamedTensors& saved, const std::string& prefix,
                                   const std::string& what);

}  // namespace xgrad::optim
