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
  bool time_major = false;  // inputs and outputs are [time, batch..., features]
  bool return_carry = false;  // operator()(x, call) only: operator()(x) returns the outputs
  bool reverse = false;  // process the sequence right to left
  bool keep_order = false;  // with reverse: return outputs in input order
};

// Per-call arguments of RNN::operator()(inputs, call), Flax's keyword arguments.
// The optional ones override the options. Designated initializers name the fields
// in this order: initial_carry, init_key, seq_lengths, return_carry, time_major,
// reverse, keep_order.
struct RNNCall {
  Carry initial_carry = {};  // empty: the cell's initialize_carry
  std::optional<Key> init_key = std::nullopt;  // key of initialize_carry; empty: make_key(0)
  Tensor seq_lengths = Tensor();  // [batch...], integer
  std::optional<bool> return_carry = std::nullopt;  // overrides the option
  std::optional<bool> time_major = std::nullopt;  // overrides the option
  std::optional<bool> reverse = std::nullopt;  // overrides the option
  std::optional<bool> keep_order = std::nullopt;  // overrides the option
};

// What RNN::operator()(inputs, call) returns.
struct RNNOutput {
  Carry carry;     // the final carry ([batch..., features] each); empty unless return_carry
  Tensor outputs;  // [batch..., time, features] (time_major: [time, batch..., features])
};

// flax.linen.RNN: runs a cell over the time axis (semantics above). Errors:
// ValueError for a null cell, a cell with more than one feature axis, or
// seq_lengths outside [1, time]; ShapeError for inputs without time steps,
// seq_lengths not of the batch shape, or an initial_carry of the wrong shapes.
class RNN : public Module {
 public:
  RNN(RNNCellBase& cell, RNNOptions options = {});                  // a member cell (not owned)
  RNN(std::shared_ptr<RNNCellBase> cell, RNNOptions options = {});  // an owned cell
  std::string describe() const override;  // "RNN, cell=LSTMCell, features=64"
  int feature_rank() const override { return 1; }

  using Module::operator();  // the outputs alone
  RNNOutput operator()(const Tensor& inputs, const RNNCall& call);  // With per-call arguments.

  // The cell it runs (a submodule named "cell").
  RNNCellBase& cell() { return *cell_; }
  // The options it was built with.
  const RNNOptions& options() const { return options_; }

  // Per example, batch-major, on the fused LSTM / GRU path: the gradient at the input
  // projections xp (tapped) is the gate pre-activations' gradient dz of every step, so
  // example b's input kernels get Σ_t x_btᵀ dz_bt and its recurrent kernels Σ_t h_b,t-1ᵀ
  // dz_bt (an einsum 'btc,btg->bcg'; for GRU the candidate's recurrent part r_t ⊙ dz_n,
  // r_t recomputed from h_{t-1}). Keys "cell.ii.kernel", ... The step-by-step path leaves
  // the rule to the cell's calls; time-major inputs and several batch axes off the fused
  // path decline (the loop fallback).
  std::optional<StateDict> per_example_tapped_grads(const Tensor& input, const std::vector<Tensor>& saved,
                                                    const std::vector<Tensor>& taps,
                                                    const std::vector<Tensor>& tap_grads) const override;

 protected:
  Tensor forward(const Tensor& inputs) override;  // The outputs for default call arguments.

 private:
  RNNOutput run(const Tensor& inputs, const RNNCall& call);

  RNNCellBase* cell_;
  std::shared_ptr<RNNCellBase> owned_;
  RNNOptions options_;
  const RNNCall* pending_call_ = nullptr;
  RNNOutput result_;
};

}  // namespace xgrad::nn
