// LSTM cells (flax.linen.LSTMCell, OptimizedLSTMCell). Carry {c, h}.
//
//   i = sigmoid(x W_ii + h W_hi + b_hi)     f = sigmoid(x W_if + h W_hf + b_hf)
//   g = tanh(x W_ig + h W_hg + b_hg)        o = sigmoid(x W_io + h W_ho + b_ho)
//   c' = f * c + i * g                      h' = o * tanh(c')       output h'
//
// Parameters as Flax's: submodules ii, if, ig, io (kernel [in, H], no bias: the
// input and recurrent products are summed, so one bias suffices) and hi, hf, hg, ho
// (kernel [H, H], bias [H]). The gate nonlinearities and the cell update run as one
// fused op (lstm_cell_update, autograd/recurrent.hpp) unless gate_fn / activation_fn are set.
//
//   nn::RNN lstm(std::make_shared<nn::LSTMCell>(nn::LSTMCellOptions{.features = 128}));
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "layers/initializers.hpp"
#include "layers/rnn_cell.hpp"

namespace xgrad::nn {

// Designated initializers name the fields in this order: features, gate_fn, activation_fn,
//   kernel_init, recurrent_kernel_init, bias_init, dtype, param_dtype, carry_init.
struct LSTMCellOptions {
  std::int64_t features = 0;                                   // required: H
  // Flax's gate_fn (i, f, o; default sigmoid) and activation_fn (g and the output,
  // default tanh). Empty: the defaults, on the fused kernels; others: composed ops
  // (and nn::RNN then runs the cell step by step instead of lstm_sequence).
  CellActivation gate_fn = {};        // the gates' nonlinearity; empty: sigmoid
  CellActivation activation_fn = {};  // the candidate's nonlinearity; empty: tanh
  Initializer kernel_init = initializers::lecun_normal();      // input kernels W_i*
  Initializer recurrent_kernel_init = initializers::orthogonal();  // recurrent kernels W_h*
  Initializer bias_init = initializers::zeros();  // biases b_h*
  std::optional<DType> dtype = std::nullopt;  // computation dtype; empty: promoted from inputs, carry and params
  DType param_dtype = DType::Float32;  // dtype of kernels and biases
  Initializer carry_init = initializers::zeros();  // initial c and h (initialize_carry)
};

// The kernels of the four gates side by side, in i, f, g, o order.
struct FusedLSTMWeights {
  Tensor input_kernel;      // [in, 4H]
  Tensor recurrent_kernel;  // [H, 4H]
  Tensor bias;              // [4H]
};

// flax.linen.LSTMCell: one LSTM step (equations above) on inputs [batch..., in]
// and carry {c, h}, each [batch..., H]; output h'.
class LSTMCell : public RNNCellBase {
 public:
  explicit LSTMCell(LSTMCellOptions options);  // ValueError for features <= 0
  std::string describe() const override;  // "LSTMCell, features=128"
  Carry initialize_carry(Key key, const Shape& input_shape) const override;  // {c, h}
  // H, the hidden size.
  std::int64_t features() const override { return options_.features; }
  // The options it was built with.
  const LSTMCellOptions& options() const { return options_; }
  // Whether gate_fn and activation_fn are the defaults (the fused kernels apply).
  bool default_activations() const { return !options_.gate_fn && !options_.activation_fn; }
  // The parameters (created on first use for `in_features` inputs) concatenated
  // per gate; nn::RNN runs a whole sequence on them.
  FusedLSTMWeights fused_weights(std::int64_t in_features);

  // Per-example gradients of the eight Dense layers from rows grouped by example:
  // x [B, R, in] and h [B, R, H] the inputs and carries of R steps (rows) of example
  // b, dz [B, R, 4H] the gradient at their gate pre-activations z = x W_i + h W_h + b
  // (i, f, g, o). Example b's input kernels get Σ_r x_brᵀ dz_br, its recurrent kernels
  // Σ_r h_brᵀ dz_br, its biases Σ_r dz_br. Keys relative to the cell ("ii.kernel").
  StateDict per_example_gate_grads(const Tensor& x, const Tensor& h, const Tensor& dz) const;
  // A step tapped its gate pre-activations (under per_example_grads): the rule above.
  std::optional<StateDict> per_example_tapped_grads(const Tensor& input, const std::vector<Tensor>& saved,
                                                    const std::vector<Tensor>& taps,
                                                    const std::vector<Tensor>& tap_grads) const override;

 protected:
  // Eight Dense products (as Flax), then the fused update.
  CellOutput step(const Carry& carry, const Tensor& inputs) override;
  // Both cells: check the carry, flatten the batch dims, run `gates(x, h)` ->
  // pre-activations [rows, 4H], then the fused update.
  template <class Gates>
  CellOutput run(const Carry& carry, const Tensor& inputs, Gates&& gates);
  // The input Dense of gate 0..3 (i, f, g, o): kernel [in, H], no bias.
  detail::DenseParams::Params input_params(int gate, std::int64_t in_features);
  detail::DenseParams::Params recurrent_params(int gate);  // The recurrent Dense of gate 0..3: kernel [H, H], bias [H].

  LSTMCellOptions options_;  // the options it was built with
  // @{
  // The eight gate Dense layers, named as Flax's submodules.
  detail::DenseParams ii_{false}, hi_{true}, if_{false}, hf_{true}, ig_{false}, hg_{true}, io_{false}, ho_{true};
  // @}
};

// The same function and parameter tree, computed as two fused products per step
// (inputs times the four input kernels side by side, carry times the four recurrent
// ones) instead of eight.
class OptimizedLSTMCell : public LSTMCell {
 public:
  // ValueError for features <= 0.
  explicit OptimizedLSTMCell(LSTMCellOptions options) : LSTMCell(std::move(options)) {}
  std::string describe() const override;  // "OptimizedLSTMCell, features=128"

 protected:
  CellOutput step(const Carry& carry, const Tensor& inputs) override;  // Two fused products, then the fused update.
};

}  // namespace xgrad::nn
