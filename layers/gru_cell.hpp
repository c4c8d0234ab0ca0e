// GRU cell (flax.linen.GRUCell). Carry h.
//
//   r = sigmoid(x W_ir + b_ir + h W_hr)
//   z = sigmoid(x W_iz + b_iz + h W_hz)
//   n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
//   h' = (1 - z) * n + z * h                  output h'
//
// The reset gate multiplies the recurrent product including its bias, as in
// PyTorch's nn.GRU; Flax's update is h' = (1 - z) n + z h, PyTorch's the same.
// Parameters as Flax's: submodules ir, iz, in (kernel [in, H], bias [H]) and hr, hz
// (kernel [H, H], no bias), hn (kernel [H, H], bias [H]). Each side runs as one
// product over the three gates, the gates and update as one fused op (gru_cell_update;
// composed ops when gate_fn / activation_fn are set).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "layers/initializers.hpp"
#include "layers/rnn_cell.hpp"

namespace xgrad::nn {

// Designated initializers name the fields in this order: features, gate_fn, activation_fn,
//   kernel_init, recurrent_kernel_init, bias_init, dtype, param_dtype, carry_init.
struct GRUCellOptions {
  std::int64_t features = 0;  // required: H
  // Flax's gate_fn (r and z; default sigmoid) and activation_fn (n; default tanh).
  // Empty: the defaults, on the fused kernels; others: composed ops (nn::RNN then
  // runs the cell step by step instead of gru_sequence).
  CellActivation gate_fn = {};        // the gates' nonlinearity; empty: sigmoid
  CellActivation activation_fn = {};  // the candidate's nonlinearity; empty: tanh
  Initializer kernel_init = initializers::lecun_normal();  // input kernels W_i*
  Initializer recurrent_kernel_init = initializers::orthogonal();  // recurrent kernels W_h*
  Initializer bias_init = initializers::zeros();  // biases b_i*, b_hn
  std::optional<DType> dtype = std::nullopt;  // computation dtype; empty: promoted from inputs, carry and params
  DType param_dtype = DType::Float32;  // dtype of kernels and biases
  Initializer carry_init = initializers::zeros();  // initial h (initialize_carry)
};

// The kernels of the three gates side by side, in r, z, n order.
struct FusedGRUWeights {
  Tensor input_kernel;      // [in, 3H]
  Tensor input_bias;        // [3H]: b_ir, b_iz, b_in
  Tensor recurrent_kernel;  // [H, 3H]
  Tensor recurrent_bias;    // [H]: b_hn, the recurrent bias of the candidate n
};

// flax.linen.GRUCell: one GRU step (equations above) on inputs [batch..., in] and
// carry {h} [batch..., H]; output h'. ShapeError for a carry of the wrong shape.
class GRUCell : public RNNCellBase {
 public:
  explicit GRUCell(GRUCellOptions options);  // ValueError for features <= 0
  std::string describe() const override;  // "GRUCell, features=64"
  Carry initialize_carry(Key key, const Shape& input_shape) const override;  // {h}
  // H, the hidden size.
  std::int64_t features() const override { return options_.features; }
  // The options it was built with.
  const GRUCellOptions& options() const { return options_; }
  // Whether gate_fn and activation_fn are the defaults (the fused kernels apply).
  bool default_activations() const { return !options_.gate_fn && !options_.activation_fn; }
  // The parameters (created on first use for `in_features` inputs) side by side in
  // r, z, n order; nn::RNN runs a whole sequence on them (gru_sequence).
  FusedGRUWeights fused_weights(std::int64_t in_features);

  // Per-example gradients of the six Dense layers from rows grouped by example: x
  // [B, R, in] and h [B, R, H] the inputs and carries of R steps of example b, dxp and
  // dhp [B, R, 3H] the gradients at the projections xp = x W_i + b_i and
  // hp = h W_h + [0 | 0 | b_hn] (r, z, n). Example b's input kernels get Σ_r x_brᵀ dxp_br,
  // input biases Σ_r dxp_br, recurrent kernels Σ_r h_brᵀ dhp_br, b_hn Σ_r dhp_br[n].
  // Keys relative to the cell ("ir.kernel").
  StateDict per_example_gate_grads(const Tensor& x, const Tensor& h, const Tensor& dxp, const Tensor& dhp) const;
  // A step tapped xp and hp (under per_example_grads): the rule above.
  std::optional<StateDict> per_example_tapped_grads(const Tensor& input, const std::vector<Tensor>& saved,
                                                    const std::vector<Tensor>& taps,
                                                    const std::vector<Tensor>& tap_grads) const override;

 protected:
  CellOutput step(const Carry& carry, const Tensor& inputs) override;  // one step: {h'}, h'

 private:
  GRUCellOptions options_;
  detail::DenseParams ir_{true}, hr_{false}, iz_{true}, hz_{false}, in_{true}, hn_{true};
};

}  // namespace xgrad::nn
