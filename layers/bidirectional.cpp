#include "layers/bidirectional.hpp"

#include "autograd/ops.hpp"
#include "core/error.hpp"

namespace xgrad::nn {

Bidirectional::Bidirectional(RNN& forward_rnn, RNN& backward_rnn, BidirectionalOptions options)
    : forward_rnn_(&forward_rnn), backward_rnn_(&backward_rnn), options_(std::move(options)) {
  register_module("forward_rnn", forward_rnn);
  // The same RNN for both directions shares its parameters (Flax warns and allows it).
  if (&backward_rnn != &forward_rnn) register_module("backward_rnn", backward_rnn);
}

std::string Bidirectional::describe() const { return "Bidirectional"; }

BidirectionalOutput Bidirectional::operator()(const Tensor& inputs, const BidirectionalCall& call) {
  pending_call_ = &call;
  struct Reset {
    const BidirectionalCall*& slot;
    ~Reset() { slot = nullptr; }
  } reset{pending_call_};
  Tensor outputs = Module::operator()(inputs);
  BidirectionalOutput out = std::move(result_);
  result_ = {};
  out.outputs = outputs;
  return out;
}

Tensor Bidirectional::forward(const Tensor& inputs) {
  static const BidirectionalCall no_call;
  const BidirectionalCall& call = pending_call_ ? *pending_call_ : no_call;
  pending_call_ = nullptr;
  result_ = run(inputs, call);
  return result_.outputs;
}

BidirectionalOutput Bidirectional::run(const Tensor& inputs, const BidirectionalCall& call) {
  const bool time_major = call.time_major.value_or(options_.time_major);
  const bool return_carry = call.return_carry.value_or(options_.return_carry);
  std::optional<Key> key_forward, key_backward;
  if (call.init_key) std::tie(key_forward, key_backward) = split(*call.init_key);
  RNNOutput f = (*forward_rnn_)(inputs, {.initial_carry = call.initial_carry_forward,
                                         .init_key = key_forward,
                                         .seq_lengths = call.seq_lengths,
                                         .return_carry = true,
                                         .time_major = time_major,
                                         .reverse = false});
  RNNOutput b = (*backward_rnn_)(inputs, {.initial_carry = call.initial_carry_backward,
                                          .init_key = key_backward,
                                          .seq_lengths = call.seq_lengths,
                                          .return_carry = true,
                                          .time_major = time_major,
                                          .reverse = true,
                                          .keep_order = true});
  BidirectionalOutput out;
  out.outputs = options_.merge_fn ? options_.merge_fn(f.outputs, b.outputs) : concat({f.outputs, b.outputs}, -1);
  if (return_carry) {
    out.carry_forward = std::move(f.carry);
    out.carry_backward = std::move(b.carry);
  }
  return out;
}

}  // namespace xgrad::nn
