// nn::RNN (flax.linen.RNN): runs a cell over the time axis.
//
//   nn::RNN lstm(std::make_shared<nn::LSTMCell>(nn::LSTMCellOptions{.features = 64}));
//   Tensor y = lstm(x);                                  // x [batch..., time, in] -> [batch..., time, 64]
//   auto [carry, ys] = lstm(x, {.seq_lengths = lengths, .return_carry = true});
//
// Semantics as Flax's: batch-major by default ([batch..., time, features]);
// time_major reads [time, batch..., features]. reverse processes right to left and
// returns the outputs in that order (with seq_lengths the padding stays at the end
// of each sequence); keep_order flips them back. seq_lengths ([batch...], integer,
// each in [1, time]) marks padding: the outputs there are not zeroed, and the
// returned carry is the one after each sequence's last valid step. Without
// initial_carry the cell's initialize_carry(init_key, [batch..., in]) makes one
// (init_key defaults to make_key(0)).
//
// Parameters live under "cell" (cell.ii.kernel, ...). LSTM cells (LSTMCell,
// OptimizedLSTMCell) and GRUCell in float32/float64 with the default gate_fn and
// activation_fn take a fused path: the input projection of all steps is one GEMM
// and the recurrence one op (lstm_sequence, gru_sequence) whose VJP loops backward
// through time; other cells run step by step on the tape. The engine's
// backward is iterative either way, so long sequences do not recurse.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "layers/rnn_cell.hpp"

namespace xgrad::nn {

// Designated initializers name the fields in this order: time_major, return_carry, reverse, keep_order.
struct RNNOptions {
  bool time_major = false;
  bool return_carry = false;  // operator()(x, call) only: operator()(x) returns the outputs
  bool reverse = false;
  bool keep_order = false;
};

// Per-call arguments of RNN::operator()(inputs, call), Flax's keyword arguments.
// The optional ones override the options. Designated initializers name the fields
// in this order: initial_carry, init_key, seq_lengths, return_carry, time_major,
// reverse, keep_order.
struct RNNCall {
  Carry initial_carry = {};  // empty: the cell's initialize_carry
  std::optional<Key> init_key = std::nullopt;
  Tensor seq_lengths = Tensor();  // [batch...], integer
  std::optional<bool> return_carry = std::nullopt;
  std::optional<bool> time_major = std::nullopt;
  std::optional<bool> reverse = std::nullopt;
  std::optional<bool> keep_order = std::nullopt;
};

struct RNNOutput {
  Carry carry;     // the final carry ([batch..., features] each); empty unless return_carry
  Tensor outputs;  // [batch..., time, features] (time_major: [time, batch..., features])
};

class RNN : public Module {
 public:
  RNN(RNNCellBase& cell, RNNOptions options = {});                  // a member cell (not owned)
  RNN(std::shared_ptr<RNNCellBase> cell, RNNOptions options = {});  // an owned cell
  std::string describe() const override;  // "RNN, cell=LSTMCell, features=64"
  int feature_rank() const override { return 1; }

  using Module::operator();  // the outputs alone
  RNNOutput operator()(const Tensor& inputs, const RNNCall& call);

  RNNCellBase& cell() { return *cell_; }
  const RNNOptions& options() const { return options_; }

 protected:
  Tensor forward(const Tensor& inputs) override;

 private:
  RNNOutput run(const Tensor& inputs, const RNNCall& call);

  RNNCellBase* cell_;
  std::shared_ptr<RNNCellBase> owned_;
  RNNOptions options_;
  const RNNCall* pending_call_ = nullptr;
  RNNOutput result_;
};

}  // namespace xgrad::nn
