// Functions with user-defined derivatives, as jax.custom_vjp and jax.custom_jvp.
//
// custom_vjp(fwd, bwd): fwd(inputs) returns the outputs and the residuals the
// backward needs; bwd(residuals, output cotangents) returns one cotangent per input
// (undefined: none), shaped like it. fwd runs with the tape as it is, so residuals
// computed from the inputs stay connected to them: when bwd is made of xgrad ops,
// backward with create_graph records it and higher-order gradients go through the
// custom rule. As in JAX, a custom_vjp function has no forward mode: a tangent
// reaching it raises NotImplementedError (use custom_jvp).
//
// custom_jvp(f, rule): f(inputs) gives the outputs; rule(primals, tangents)
// returns {outputs, output tangents}, linear in the tangents (an input without a
// tangent gets zeros). Forward mode uses the rule; reverse mode uses its transpose,
// obtained by differentiating the rule's output tangents with respect to the
// tangents, so the custom rule also drives grad, and with create_graph, higher
// orders.
//
// With several outputs, each output is its own node: a backward reaching several
// of them calls bwd (or the rule) once per output.
#pragma once

#include <functional>
#include <vector>

#include "autograd/forward_mode.hpp"
#include "core/tensor.hpp"

namespace xgrad {

// What a custom_vjp forward returns.
struct VjpForward {
  std::vector<Tensor> outputs;  // the function's outputs
  std::vector<Tensor> residuals;  // what bwd needs, handed to it unchanged
};

using CustomVjpForward = std::function<VjpForward(const std::vector<Tensor>& inputs)>;  // inputs -> {outputs, residuals}
// (residuals, output cotangents) -> one cotangent per input (undefined: none).
using CustomVjpBackward = std::function<std::vector<Tensor>(const std::vector<Tensor>& residuals,
                                                            const std::vector<Tensor>& output_cotangents)>;
// (primals, tangents) -> {outputs, output tangents}.
using CustomJvpRule = std::function<JvpResult(const std::vector<Tensor>& primals, const std::vector<Tensor>& tangents)>;

MultiFunction custom_vjp(CustomVjpForward fwd, CustomVjpBackward bwd);  // jax.custom_vjp: f with the VJP bwd (above)
MultiFunction custom_jvp(MultiFunction f, CustomJvpRule rule);  // jax.custom_jvp: f with the JVP rule (above)

}  // namespace xgrad
