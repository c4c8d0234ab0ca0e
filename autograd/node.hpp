// A recorded op on the tape: its inputs (the graph's edges) and its
// vector-Jacobian product. Ops are recorded with `record`, right after their
// forward computation, the way micrograd's engine.py and Flashlight's
// Functions.cpp keep the forward and the gradient side by side. A custom op
// computes its forward with public ops under NoGradGuard (so only the op itself is
// on the tape, not its pieces), then records it with its VJP:
//
//   Tensor scaled_tanh(const Tensor& x, double a) {        // a * tanh(x)
//     Tensor out;
//     {
//       NoGradGuard forward_only;
//       out = tanh(x) * a;
//     }
//     return record("scaled_tanh", out, {x}, [a](const Tensor& g, const Tensor& y) -> Grads {
//       return {g * (a - y * y / a)};                       // d/dx a tanh x = a (1 - tanh^2 x)
//     }, Saves::Output);
//   }
//
// The output may be one of the inputs (an identity-like op): record then returns a
// new handle on the same storage, and the input is left as it was:
//
//   Tensor grad_reverse(const Tensor& h) {                   // identity forward, -g backward
//     return record("grad_reverse", h, {h}, [](const Tensor& g, const Tensor&) -> Grads { return {-g}; },
//                   Saves::Nothing);
//   }
//
// VJPs are written with differentiable ops, so backward with create_graph=true
// records the gradient computation itself (higher-order derivatives). A VJP
// returns one gradient per input, shaped like that input (sum_to undoes a
// broadcast), or an undefined Tensor for "no gradient".
//
// Forward mode (autograd/forward_mode.hpp) needs a JVP rule next to the VJP: the
// tangent of the output from the tangents of the inputs (an undefined tangent is
// zero), written with differentiable ops so reverse-over-forward works:
//
//   return record("scaled_tanh", out, {x}, vjp, Saves::Output,
//                 [a](const Grads& x, const Grads& t, const Tensor& y) -> Tensor {
//                   return t[0] * (a - y * y / a);  // the same derivative, times the tangent
//                 });
//
// The rule runs at once, inside record, and only inside a jvp scope, so it may
// capture by reference. An op recorded without a rule raises NotImplementedError
// naming it when a tangent reaches it: never a silently zero tangent.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad {

struct Storage;

// One gradient per input, in input order; an undefined Tensor means "no gradient".
using Grads = std::vector<Tensor>;
// (cotangent of the output, the output itself when the op saved it) -> input gradients.
using VJP = std::function<Grads(const Tensor& grad_output, const Tensor& output)>;

// (the op's inputs, their tangents (undefined = zero), the op's output) -> the
// output's tangent, of the output's shape or one that broadcasts to it; undefined
// means zero.
using JVP = std::function<Tensor(const std::vector<Tensor>& inputs, const std::vector<Tensor>& tangents,
                                 const Tensor& output)>;

// What the VJP reads, so backward can check that nothing it needs was modified in
// place after the forward pass (version counters), and so the output is kept.
enum class Saves : std::uint8_t { Nothing = 0, Inputs = 1, Output = 2, InputsAndOutput = 3 };

// One recorded op on the tape: its inputs, what its VJP needs, and the VJP itself.
// Made by record(); the engine (autograd/engine.cpp) walks these in backward.
struct Node : std::enable_shared_from_this<Node> {
  const char* op = "";  // the op's name, for error messages
  std::vector<Tensor> inputs;  // the op's tensor inputs, in order
  std::vector<std::uint64_t> input_versions;  // their storage versions at record time
  Saves saves = Saves::Inputs;  // what the VJP reads (checked for in-place writes)
  // The output is kept as storage, not as a Tensor: a Tensor would own this node
  // through its grad_fn and make a reference cycle.
  std::shared_ptr<Storage> output_storage;
  std::uint64_t output_version = 0;  // the output's storage version at record time
  Shape output_shape;  // shape of the op's output
  DType output_dtype = DType::Float32;  // dtype of the op's output
  VJP vjp;  // output cotangent -> one gradient per input
  // Forward-over-reverse: the output's tangent (without its graph) in the jvp scope
  // that was active when the op ran, handed to the VJP with the output.
  std::shared_ptr<TensorImpl> output_tangent;
  std::uint64_t output_tangent_level = 0;  // the jvp scope output_tangent belongs to
  bool released = false;  // vjp, output and inputs freed by a backward without retain_graph
  // Recording order on this thread (as torch's sequence_nr): xgrad::checkpoint tells
  // the nodes its function recorded from those that were there before.
  std::uint64_t sequence_nr = 0;

  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Tears the graph down iteratively: dropping the last tensor of a long chain
  // would otherwise recurse once per op and overflow the stack.
  ~Node();
};

// Attaches `out` to the tape as the result of `op` applied to `inputs`, unless
// recording is off or no input requires grad, and returns it. When `out` is one of
// `inputs` (or already on the tape) the returned tensor is a new handle on its
// storage, so the original keeps its own gradient history.
// Inside a jvp scope, an input carrying a tangent makes this throw
// NotImplementedError: the op has no JVP rule (use the overload below).
Tensor record(const char* op, Tensor out, std::vector<Tensor> inputs, VJP vjp, Saves saves = Saves::Inputs);

namespace forward_ad {
// True inside a jvp scope while tangents propagate (false while a JVP rule runs).
bool propagating();
// The tangent `x` carries when an op may compute its output's tangent in the same
// kernel call as its primal (forward mode's fused path): tangents propagate, x has
// one, and the rule's ops would not be recorded (no grad mode, or a tangent that
// does not require grad: reverse-over-forward needs the rule's ops on the tape).
// Undefined otherwise: the op then computes the tangent with its rule.
Tensor fusable_tangent(const Tensor& x);
// How many jvp scopes are active (jvp inside jvp nests them).
std::size_t depth();
// Whether `x` carries a tangent at any propagating level.
bool carries_tangent(const Tensor& x);
// Gives `to` (a detached or cloned `from`) from's tangents at every active level.
void copy_tangents(const Tensor& from, const Tensor& to);
// relu's deferred rule: gives `primal` (relu's output, not recorded on the tape) the
// tangent raw * (primal > 0) without computing it. A max or min pool that reads it
// with fusable_masked_tangent masks only its selected elements (of a selected y,
// y > 0 is the window's extreme > 0); any other read (tangent()) applies the mask.
void set_tangent_masked_by_positive(const Tensor& primal, const Tensor& raw);
// The raw tangent `x` carries when its mask by x > 0 is still deferred and tangents
// propagate; undefined otherwise (then fusable_tangent gives the masked tangent).
Tensor fusable_masked_tangent(const Tensor& x);
// Records `out` on the tape and, inside a jvp scope, gives it the tangent `rule` computes.
Tensor record_with_rule(const char* op, Tensor out, std::vector<Tensor> inputs, VJP vjp, Saves saves,
                        const JVP& rule);
// Records `out` on the tape and, inside a jvp scope, gives it `out_tangent`, computed
// by the op's fused kernel from its inputs' tangents (which this does not read, so a
// deferred mask stays deferred); undefined: no tangent.
Tensor record_with_tangent(const char* op, Tensor out, std::vector<Tensor> inputs, VJP vjp, Saves saves,
                           const Tensor& out_tangent);
namespace detail {
Tensor record_on_tape(const char* op, Tensor out, std::vector<Tensor> inputs, VJP vjp, Saves saves);
}
}  // namespace forward_ad

// record with a JVP rule. Outside a jvp scope the rule is never converted to a
// std::function, so it costs nothing.
template <class Rule>
Tensor record(const char* op, Tensor out, std::vector<Tensor> inputs, VJP vjp, Saves saves, Rule&& rule) {
  if (!forward_ad::propagating()) [[likely]]
    return forward_ad::detail::record_on_tape(op, std::move(out), std::move(inputs), std::move(vjp), saves);
  return forward_ad::record_with_rule(op, std::move(out), std::move(inputs), std::move(vjp), saves,
                                      JVP(std::forward<Rule>(rule)));
}
// The sequence_nr the next node recorded on this thread will get.
std::uint64_t next_sequence_nr();

}  // namespace xgrad
