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

using MergeFn = std::function<Tensor(const Tensor& forward_outputs, const Tensor& backward_outputs)>;

// Designated initializers name the fields in this order: merge_fn, time_major, return_carry.
struct BidirectionalOptions {
  MergeFn merge_fn = nullptr;  // empty: concatenate along the last axis (Flax's default)
  bool time_major = false;
  bool return_carry = false;
};

// Designated initializers name the fields in this order: initial_carry_forward,
// initial_carry_backward, init_key, seq_lengths, return_carry, time_major.
struct BidirectionalCall {
  Carry initial_carry_forward = {};
  Carry initial_carry_backward = {};
  std::optional<Key> init_key = std::nullopt;  // split into one key per direction
  Tensor seq_lengths = Tensor();
  std::optional<bool> return_carry = std::nullopt;
  std::optional<bool> time_major = std::nullopt;
};

struct BidirectionalOutput {
  Carry carry_forward, carry_backward;  // empty unless return_carry
  Tensor outputs;
};

class Bidirectional : public Module {
 public:
  // Both RNNs become submodules forward_rnn and backward_rnn (not owned).
  Bidirectional(RNN& forward_rnn, RNN& backward_rnn, BidirectionalOptions options = {});
  std::string describe() const override;  // "Bidirectional"

  using Module::operator();
  BidirectionalOutput operator()(const Tensor& inputs, const BidirectionalCall& call);

 protected:
  Tensor forward(const Tensor& inputs) override;

 private:
  BidirectionalOutput run(const Tensor& inputs, const BidirectionalCall& call);

  RNN* forward_rnn_;
  RNN* backward_rnn_;
  BidirectionalOptions options_;
  const BidirectionalCall* pending_call_ = nullptr;
  BidirectionalOutput result_;
};

}  // namespace xgrad::nn
