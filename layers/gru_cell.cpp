#include "layers/gru_cell.hpp"

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "autograd/recurrent.hpp"
#include "core/error.hpp"
#include "layers/dtypes.hpp"
#include "layers/per_example_capture.hpp"

namespace xgrad::nn {

GRUCell::GRUCell(GRUCellOptions options) : options_(std::move(options)) {
  if (options_.features <= 0)
    throw ValueError(fmt::format("GRUCell: features must be positive, got {}", options_.features));
  bind_dtype_options(options_.dtype, options_.param_dtype);
  register_module("ir", ir_);  // Flax's call order
  register_module("hr", hr_);
  register_module("iz", iz_);
  register_module("hz", hz_);
  register_module("in", in_);
  register_module("hn", hn_);
}

std::string GRUCell::describe() const { return fmt::format("GRUCell, features={}", options_.features); }

Carry GRUCell::initialize_carry(Key key, const Shape& input_shape) const {
  if (input_shape.empty()) throw ShapeError("initialize_carry: input_shape must be [batch..., in]");
  Shape mem(input_shape.begin(), input_shape.end() - 1);
  mem.push_back(options_.features);
  return {options_.carry_init(key, mem, options_.param_dtype)};
}

FusedGRUWeights GRUCell::fused_weights(std::int64_t in_features) {
  const std::int64_t hidden = options_.features;
  const auto& o = options_;
  // Flax's creation order: ir, hr, iz, hz, in, hn.
  const auto input = [&](detail::DenseParams& d) {
    return d.get(in_features, hidden, o.kernel_init, o.bias_init, o.param_dtype);
  };
  const auto recurrent = [&](detail::DenseParams& d) {
    return d.get(hidden, hidden, o.recurrent_kernel_init, o.bias_init, o.param_dtype);
  };
  const auto ir = input(ir_), hr = recurrent(hr_), iz = input(iz_), hz = recurrent(hz_), in_p = input(in_),
             hn = recurrent(hn_);
  return {concat({ir.kernel, iz.kernel, in_p.kernel}, -1), concat({ir.bias, iz.bias, in_p.bias}, -1),
          concat({hr.kernel, hz.kernel, hn.kernel}, -1), hn.bias};
}

CellOutput GRUCell::step(const Carry& carry, const Tensor& inputs) {
  check_carry(carry, 1, inputs);
  const std::int64_t hidden = options_.features, in = inputs.size(-1);
  const FusedGRUWeights w = fused_weights(in);
  // Promoted together: x, h, the input kernels and biases, the recurrent kernels and b_hn.
  const auto p = promote_dtype({reshape(inputs, {-1, in}), reshape(carry[0], {-1, hidden}), w.input_kernel,
                                w.input_bias, w.recurrent_kernel, w.recurrent_bias},
                               options_.dtype);
  const Tensor &x = p[0], &h = p[1];
  // Each side as one product over the three gates, then the gates and update.
  const Tensor xp = matmul(x, p[2]) + p[3];
  const Tensor hp = matmul(h, p[4]) + concat({zeros({2 * hidden}, p[5].dtype()), p[5]}, -1);
  // Under per_example_grads: the gradients at xp and hp give every parameter's, per example.
  if (PerExampleCapture* capture = PerExampleCapture::active(); capture && inputs.dim() >= 2)
    capture->tap(this, {x, h}, {xp, hp});
  Tensor h_new;
  if (default_activations()) {
    h_new = gru_cell_update(xp, hp, h);
  } else {  // Flax's formulas with the user's functions, as composed ops
    const CellActivation gate = options_.gate_fn ? options_.gate_fn : CellActivation([](const Tensor& t) { return sigmoid(t); });
    const CellActivation act =
        options_.activation_fn ? options_.activation_fn : CellActivation([](const Tensor& t) { return tanh(t); });
    const auto part = [hidden](const Tensor& t, int k) { return slice(t, -1, k * hidden, (k + 1) * hidden); };
    const Tensor r = gate(part(xp, 0) + part(hp, 0)), z = gate(part(xp, 1) + part(hp, 1));
    const Tensor n = act(part(xp, 2) + r * part(hp, 2));
    h_new = (1.0 - z) * n + z * h;
  }
  h_new = reshape(h_new, carry[0].shape());
  return {{h_new}, h_new};
}

StateDict GRUCell::per_example_gate_grads(const Tensor& x, const Tensor& h, const Tensor& dxp,
                                          const Tensor& dhp) const {
  const std::int64_t hidden = options_.features;
  const Tensor xt = swapaxes(cast(x, dxp.dtype()), 1, 2), ht = swapaxes(cast(h, dhp.dtype()), 1, 2);  // [B, ·, R]
  const auto part = [hidden](const Tensor& t, int gate) { return slice(t, -1, gate * hidden, (gate + 1) * hidden); };
  StateDict out;
  const char* input_names[] = {"ir", "iz", "in"};
  const char* recurrent_names[] = {"hr", "hz", "hn"};
  for (int gate = 0; gate < 3; ++gate) {
    // One product per gate on the gradients' slices: the (large) results are written once.
    const Tensor dxp_gate = part(dxp, gate), dhp_gate = part(dhp, gate);  // [B, R, H]
    out[std::string(input_names[gate]) + ".kernel"] = matmul(xt, dxp_gate);
    out[std::string(input_names[gate]) + ".bias"] = sum(dxp_gate, {1});
    out[std::string(recurrent_names[gate]) + ".kernel"] = matmul(ht, dhp_gate);
    if (gate == 2) out["hn.bias"] = sum(dhp_gate, {1});
  }
  return in_param_dtypes(std::move(out));
}

std::optional<StateDict> GRUCell::per_example_tapped_grads(const Tensor& input, const std::vector<Tensor>& saved,
                                                           const std::vector<Tensor>&,
                                                           const std::vector<Tensor>& tap_grads) const {
  // saved {x, h} and taps {xp, hp} are [rows, ·], rows = the flattened batch dims, example-major.
  if (!is_floating(tap_grads.at(0).dtype()) || input.dim() < 2 || input.size(0) == 0) return std::nullopt;
  const std::int64_t batch = input.size(0);
  const auto grouped = [batch](const Tensor& t) { return reshape(t, {batch, -1, t.size(-1)}); };
  return per_example_gate_grads(grouped(saved.at(0)), grouped(saved.at(1)), grouped(tap_grads.at(0)),
                                grouped(tap_grads.at(1)));
}

}  // namespace xgrad::nn
