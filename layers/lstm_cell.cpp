#include "layers/lstm_cell.hpp"

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "autograd/recurrent.hpp"
#include "core/error.hpp"
#include "layers/dtypes.hpp"
#include "layers/per_example_capture.hpp"

namespace xgrad::nn {

LSTMCell::LSTMCell(LSTMCellOptions options) : options_(std::move(options)) {
  if (options_.features <= 0)
    throw ValueError(fmt::format("LSTMCell: features must be positive, got {}", options_.features));
  bind_dtype_options(options_.dtype, options_.param_dtype);
  // Flax's call order, which is its parameter tree's order.
  register_module("ii", ii_);
  register_module("hi", hi_);
  register_module("if", if_);
  register_module("hf", hf_);
  register_module("ig", ig_);
  register_module("hg", hg_);
  register_module("io", io_);
  register_module("ho", ho_);
}

std::string LSTMCell::describe() const { return fmt::format("LSTMCell, features={}", options_.features); }
std::string OptimizedLSTMCell::describe() const {
  return fmt::format("OptimizedLSTMCell, features={}", options_.features);
}

Carry LSTMCell::initialize_carry(Key key, const Shape& input_shape) const {
  if (input_shape.empty()) throw ShapeError("initialize_carry: input_shape must be [batch..., in]");
  Shape mem(input_shape.begin(), input_shape.end() - 1);
  mem.push_back(options_.features);
  const auto [key_c, key_h] = split(key);
  return {options_.carry_init(key_c, mem, options_.param_dtype), options_.carry_init(key_h, mem, options_.param_dtype)};
}

detail::DenseParams::Params LSTMCell::input_params(int gate, std::int64_t in_features) {
  detail::DenseParams* dense[] = {&ii_, &if_, &ig_, &io_};
  return dense[gate]->get(in_features, options_.features, options_.kernel_init, options_.bias_init,
                          options_.param_dtype);
}

detail::DenseParams::Params LSTMCell::recurrent_params(int gate) {
  detail::DenseParams* dense[] = {&hi_, &hf_, &hg_, &ho_};
  return dense[gate]->get(options_.features, options_.features, options_.recurrent_kernel_init, options_.bias_init,
                          options_.param_dtype);
}

FusedLSTMWeights LSTMCell::fused_weights(std::int64_t in_features) {
  std::vector<Tensor> wi, wh, b;
  for (int gate = 0; gate < 4; ++gate) {
    wi.push_back(input_params(gate, in_features).kernel);
    const auto h = recurrent_params(gate);
    wh.push_back(h.kernel);
    b.push_back(h.bias);
  }
  return {concat(wi, -1), concat(wh, -1), concat(b, -1)};
}

template <class Gates>
CellOutput LSTMCell::run(const Carry& carry, const Tensor& inputs, Gates&& gates) {
  check_carry(carry, 2, inputs);
  const std::int64_t hidden = options_.features, in = inputs.size(-1);
  const Shape& mem = carry[0].shape();
  const Tensor x = reshape(inputs, {-1, in}), c = reshape(carry[0], {-1, hidden}), h = reshape(carry[1], {-1, hidden});
  const auto [z, c_promoted] = gates(x, h, c);
  // Under per_example_grads: the gradient at z gives every parameter's, per example.
  if (PerExampleCapture* capture = PerExampleCapture::active(); capture && inputs.dim() >= 2)
    capture->tap(this, {x, h}, {z});
  if (!default_activations()) {  // Flax's formulas with the user's functions, as composed ops
    const CellActivation gate = options_.gate_fn ? options_.gate_fn : CellActivation([](const Tensor& t) { return sigmoid(t); });
    const CellActivation act =
        options_.activation_fn ? options_.activation_fn : CellActivation([](const Tensor& t) { return tanh(t); });
    const auto part = [&](int k) { return slice(z, -1, k * hidden, (k + 1) * hidden); };
    const Tensor i = gate(part(0)), f = gate(part(1)), g = act(part(2)), o = gate(part(3));
    const Tensor c_new = f * c_promoted + i * g;
    const Tensor h_new = o * act(c_new);
    return {{reshape(c_new, mem), reshape(h_new, mem)}, reshape(h_new, mem)};
  }
  const Tensor state = lstm_cell_update(z, c_promoted);  // [2, rows, H]: c', h'
  const Tensor c_new = reshape(slice(state, 0, 0, 1), mem), h_new = reshape(slice(state, 0, 1, 2), mem);
  return {{c_new, h_new}, h_new};
}

CellOutput LSTMCell::step(const Carry& carry, const Tensor& inputs) {
  // Flax's LSTMCell: one Dense per gate and side, summed per gate.
  return run(carry, inputs, [&](const Tensor& x, const Tensor& h, const Tensor& c) {
    std::vector<Tensor> pre;
    Tensor c_out;
    for (int gate = 0; gate < 4; ++gate) {
      const auto i = input_params(gate, x.size(-1));
      const auto r = recurrent_params(gate);
      const auto p = promote_dtype({x, h, c, i.kernel, r.kernel, r.bias}, options_.dtype);
      pre.push_back(matmul(p[0], p[3]) + (matmul(p[1], p[4]) + p[5]));
      c_out = p[2];
    }
    return std::pair{concat(pre, -1), c_out};
  });
}

CellOutput OptimizedLSTMCell::step(const Carry& carry, const Tensor& inputs) {
  return run(carry, inputs, [&](const Tensor& x, const Tensor& h, const Tensor& c) {
    const FusedLSTMWeights w = fused_weights(x.size(-1));
    const auto p = promote_dtype({x, h, c, w.input_kernel, w.recurrent_kernel, w.bias}, options_.dtype);
    return std::pair{matmul(p[0], p[3]) + (matmul(p[1], p[4]) + p[5]), p[2]};
  });
}

StateDict LSTMCell::per_example_gate_grads(const Tensor& x, const Tensor& h, const Tensor& dz) const {
  const std::int64_t hidden = options_.features;
  const Tensor xt = swapaxes(cast(x, dz.dtype()), 1, 2), ht = swapaxes(cast(h, dz.dtype()), 1, 2);  // [B, ·, R]
  const char* input_names[] = {"ii", "if", "ig", "io"};
  const char* recurrent_names[] = {"hi", "hf", "hg", "ho"};
  StateDict out;
  for (int gate = 0; gate < 4; ++gate) {
    // One product per gate on dz's slice: the (large) results are written once, in place.
    const Tensor dz_gate = slice(dz, -1, gate * hidden, (gate + 1) * hidden);  // [B, R, H]
    out[std::string(input_names[gate]) + ".kernel"] = matmul(xt, dz_gate);
    out[std::string(recurrent_names[gate]) + ".kernel"] = matmul(ht, dz_gate);
    out[std::string(recurrent_names[gate]) + ".bias"] = sum(dz_gate, {1});
  }
  return in_param_dtypes(std::move(out));
}

std::optional<StateDict> LSTMCell::per_example_tapped_grads(const Tensor& input, const std::vector<Tensor>& saved,
                                                            const std::vector<Tensor>&,
                                                            const std::vector<Tensor>& tap_grads) const {
  // saved {x, h} and tap z are [rows, ·] with rows = the flattened batch dims, example-major.
  const Tensor& dz = tap_grads.at(0);
  if (!is_floating(dz.dtype()) || input.dim() < 2 || input.size(0) == 0) return std::nullopt;
  const std::int64_t batch = input.size(0);
  const auto grouped = [batch](const Tensor& t) { return reshape(t, {batch, -1, t.size(-1)}); };
  return per_example_gate_grads(grouped(saved.at(0)), grouped(saved.at(1)), grouped(dz));
}

}  // namespace xgrad::nn
