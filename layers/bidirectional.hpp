// nn::Bidirectional (flax.linen.Bidirectional): one RNN left to right, another right
// to left (reverse, keep_order), their outputs merged step by step.
//
//   nn::RNN fwd(std::make_shared<nn::GRUCell>(nn::GRUCellOptions{.features = 32}));
//   nn::RNN bwd(std::make_shared<nn::GRUCell>(nn::GRUCellOptions{.features = 32}));
//   nn::Bidirectional bi(fwd, bwd);
//   Tensor y = bi(x);   // [batch..., time, 64]: concat of both directions
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "layers/rnn.hpp"

namespace xgrad::nn {

// Combines the two directions' outputs, each [batch..., time, H], into one tensor.
using MergeFn = std::function<Tensor(const Tensor& forward_outputs, const Tensor& backward_outputs)>;

// Designated initializers name the fields in this order: merge_fn, time_major, return_carry.
struct BidirectionalOptions {
  MergeFn merge_fn = nullptr;  // empty: concatenate along the last axis (Flax's default)
  bool time_major = false;  // inputs and outputs are [time, batch..., features]
  bool return_carry = false;  // operator()(x, call) also returns both final carries
};

// Designated initializers name the fields in this order: initial_carry_forward,
// initial_carry_backward, init_key, seq_lengths, return_carry, time_major.
struct BidirectionalCall {
  Carry initial_carry_forward = {};  // empty: the forward cell's initialize_carry
  Carry initial_carry_backward = {};  // empty: the backward cell's initialize_carry
  std::optional<Key> init_key = std::nullopt;  // split into one key per direction
  Tensor seq_lengths = Tensor();  // [batch...], integer: valid steps per sequence
  std::optional<bool> return_carry = std::nullopt;  // overrides the option
  std::optional<bool> time_major = std::nullopt;  // overrides the option
};

// What Bidirectional returns: the final carries of both directions and the merged
// outputs.
struct BidirectionalOutput {
  // @{
  // The final carry of each direction; empty unless return_carry.
  Carry carry_forward, carry_backward;
  // @}
  Tensor outputs;  // merge_fn(forward outputs, backward outputs in input order)
};

// flax.linen.Bidirectional: two RNNs over the same inputs, one reversed with
// keep_order, outputs merged (concatenated by default) per step. Errors as RNN's.
class Bidirectional : public Module {
 public:
  // Both RNNs become submodules forward_rnn and backward_rnn (not owned).
  Bidirectional(RNN& forward_rnn, RNN& backward_rnn, BidirectionalOptions options = {});
  std::string describe() const override;  // "Bidirectional"

  using Module::operator();
  BidirectionalOutput operator()(const Tensor& inputs, const BidirectionalCall& call);  // With per-call arguments.

 protected:
  Tensor forward(const Tensor& inputs) override;  // The merged outputs for default call arguments.

 private:
  BidirectionalOutput run(const Tensor& inputs, const BidirectionalCall& call);

  RNN* forward_rnn_;
  RNN* backward_rnn_;
  BidirectionalOptions options_;
  const BidirectionalCall* pending_call_ = nullptr;
  BidirectionalOutput result_;
};

}  // namespace xgrad::nn
