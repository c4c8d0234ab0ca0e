// Forward-mode differentiation and the transforms built on it, as JAX's jax.jvp,
// jax.hessian-style hvp, jax.jacfwd and jax.jacrev.
//
// Forward mode runs on dual numbers: inside a jvp scope each primal tensor may
// carry a tangent, and every op, as it computes its output, also computes the
// output's tangent with its JVP rule (autograd/node.hpp) from its inputs'
// tangents. One forward pass thus gives J v, at the cost of the forward plus one
// linearised forward (no tape, no backward). The rules are written with
// differentiable ops: under grad mode they are recorded, so reverse-over-forward
// (jacrev of a jvp) works, and VJPs run inside a jvp scope propagate tangents, so
// forward-over-reverse (hvp) works.
//
// Tangents are checked: one per primal, of its shape and dtype (ShapeError,
// DTypeError); an undefined tangent is zero. A jvp inside a jvp nests (forward over
// forward, as JAX's trace levels): each op computes the inner level's tangent with
// its rule while the outer level propagates, so the outer jvp of an inner jvp's
// tangent is a second directional derivative (f''(x)[v, u]). Fused kernels are off
// while scopes nest; custom_jvp under nested scopes is a NotImplementedError.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad {

// f: primals -> outputs.
using MultiFunction = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

// What jvp() returns: the outputs and their tangents.
struct JvpResult {
  std::vector<Tensor> outputs;          // f(primals)
  std::vector<Tensor> output_tangents;  // J v, one per output (zeros where an output does not depend on the primals;
                                        // undefined for an integer or bool output)
};

// (f(primals), J_f(primals) tangents) in one forward pass.
JvpResult jvp(const MultiFunction& f, const std::vector<Tensor>& primals, const std::vector<Tensor>& tangents);

// jax.linearize: f's outputs at `primals` and its linear map v -> J_f(primals) v, which
// evaluates for any number of tangents without running f again. linearize runs f once,
// in a jvp scope whose tangents are recorded on the tape (the graph of J u from seed
// tangents u); it transposes that graph once (u -> Jᵀ w, recorded), and each call of
// `jvp` is one backward sweep of the transposed graph along v, i.e. J v by the
// transpose of the transpose. A call costs about one forward pass of the JVP rules'
// linear ops, holds the recorded graph while the function lives, and checks its
// tangents as jvp does (one per primal, its shape and dtype; undefined = zero).
struct LinearizeResult {
  std::vector<Tensor> outputs;                                           // f(primals), without a graph
  std::function<std::vector<Tensor>(const std::vector<Tensor>&)> jvp;  // tangents -> J v, as jvp's output_tangents
};
// linearize as described above; f's errors propagate, NotImplementedError for an op
// without a JVP rule.
LinearizeResult linearize(const MultiFunction& f, const std::vector<Tensor>& primals);

// Hessian-vector product H v of a scalar function, forward-over-reverse: the jvp,
// along v, of x -> grad f(x). f must return a one-element tensor.
Tensor hvp(const std::function<Tensor(const Tensor&)>& f, const Tensor& x, const Tensor& v);
// The same for several inputs: one H v block per primal (tangents line up with them).
std::vector<Tensor> hvp(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& primals,
                        const std::vector<Tensor>& tangents);

// The Jacobian of f at x, of shape f(x).shape() + x.shape() (JAX's layout), built
// column by column with jvps (jacfwd) or row by row with VJPs (jacrev). For small
// functions: jacfwd costs x.numel() forward passes, jacrev f(x).numel() backwards.
Tensor jacfwd(const std::function<Tensor(const Tensor&)>& f, const Tensor& x);  // column by column with jvps
Tensor jacrev(const std::function<Tensor(const Tensor&)>& f, const Tensor& x);  // row by row with VJPs

namespace forward_ad {

// The tangent `t` carries in the active jvp scope (undefined when none: zero).
Tensor tangent(const Tensor& t);

// The numbers of the active jvp scope (0 outside any).
std::uint64_t level();

// Gives `primal` the tangent `tangent` in the active scope (low level: jvp does it
// for its primals; custom_jvp for its outputs).
void set_tangent(const Tensor& primal, const Tensor& tangent);

// RAII: stops tangent propagation for its scope (a JVP rule runs under it, so its
// own ops do not compute tangents of tangents).
class SuspendGuard {
 public:
  SuspendGuard();
  ~SuspendGuard();
  SuspendGuard(const SuspendGuard&) = delete;
  SuspendGuard& operator=(const SuspendGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace forward_ad

}  // namespace xgrad
