#include "layers/rnn.hpp"

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "autograd/recurrent.hpp"
#include "core/error.hpp"
#include "layers/dtypes.hpp"
#include "layers/gru_cell.hpp"
#include "layers/lstm_cell.hpp"
#include "layers/per_example_capture.hpp"

namespace xgrad::nn {

namespace {

Tensor step_of(const Tensor& x, std::int64_t t) { return squeeze(slice(x, 0, t, t + 1), {0}); }

// Flax's flip_sequences on a time-major [T, B, F] tensor: without lengths the time
// axis reversed; with them each sequence's first len_b steps reversed and its
// padding left at the end: source step (T - 1 - t + len_b) mod T. An involution,
// so the same call flips the outputs back.
Tensor flip_sequences(const Tensor& x, const std::vector<std::int64_t>& lengths) {
  const std::int64_t steps = x.size(0), batch = x.size(1);
  std::vector<double> index(static_cast<std::size_t>(steps * batch));
  for (std::int64_t t = 0; t < steps; ++t)
    for (std::int64_t b = 0; b < batch; ++b) {
      const std::int64_t len = lengths.empty() ? steps : lengths[static_cast<std::size_t>(b)];
      const std::int64_t source = (steps - 1 - t + len) % steps;
      index[static_cast<std::size_t>(t * batch + b)] = static_cast<double>(source * batch + b);
    }
  const Shape shape = x.shape();
  const Tensor rows = reshape(x, {steps * batch, -1});
  return reshape(take(rows, from_vector(index, {steps * batch}, DType::Int64), 0), shape);
}

// history [T, B, F] -> [B, F]: row (len_b - 1, b) for every b.
Tensor select_last(const Tensor& history, const std::vector<std::int64_t>& lengths) {
  const std::int64_t batch = history.size(1);
  std::vector<double> index(static_cast<std::size_t>(batch));
  for (std::int64_t b = 0; b < batch; ++b)
    index[static_cast<std::size_t>(b)] = static_cast<double>((lengths[static_cast<std::size_t>(b)] - 1) * batch + b);
  const Tensor rows = reshape(history, {history.size(0) * batch, -1});
  return take(rows, from_vector(index, {batch}, DType::Int64), 0);
}

}  // namespace

RNN::RNN(RNNCellBase& cell, RNNOptions options) : cell_(&cell), options_(options) { register_module("cell", cell); }

RNN::RNN(std::shared_ptr<RNNCellBase> cell, RNNOptions options) : cell_(cell.get()), owned_(cell), options_(options) {
  if (!cell) throw ValueError("RNN: the cell must not be null");
  register_module("cell", owned_);
}

std::string RNN::describe() const { return fmt::format("RNN, cell={}", cell_->describe()); }

RNNOutput RNN::operator()(const Tensor& inputs, const RNNCall& call) {
  pending_call_ = &call;
  struct Reset {
    const RNNCall*& slot;
    ~Reset() { slot = nullptr; }
  } reset{pending_call_};
  Tensor outputs = Module::operator()(inputs);
  RNNOutput out = std::move(result_);
  result_ = {};
  out.outputs = outputs;
  return out;
}

Tensor RNN::forward(const Tensor& inputs) {
  static const RNNCall no_call;
  const RNNCall& call = pending_call_ ? *pending_call_ : no_call;
  pending_call_ = nullptr;
  result_ = run(inputs, call);
  return result_.outputs;
}

RNNOutput RNN::run(const Tensor& inputs, const RNNCall& call) {
  const bool time_major = call.time_major.value_or(options_.time_major);
  const bool reverse = call.reverse.value_or(options_.reverse);
  const bool keep_order = call.keep_order.value_or(options_.keep_order);
  const bool return_carry = call.return_carry.value_or(options_.return_carry);
  if (cell_->num_feature_axes() != 1) throw ValueError("RNN: only cells with one feature axis are supported");
  const std::int64_t rank = inputs.dim();
  if (rank < 2)
    throw ShapeError(fmt::format("inputs {} need [batch..., time, features]{}", shape_str(inputs.shape()),
                                 time_major ? " (time_major: [time, batch..., features])" : ""));
  const Shape& s = inputs.shape();
  const std::int64_t time_axis = time_major ? 0 : rank - 2;
  const Shape batch_shape = time_major ? Shape(s.begin() + 1, s.end() - 1) : Shape(s.begin(), s.end() - 2);
  const std::int64_t steps = s[static_cast<std::size_t>(time_axis)], in = s.back(), batch = numel(batch_shape);
  if (steps == 0) throw ShapeError(fmt::format("inputs {} have no time steps", shape_str(s)));

  std::vector<std::int64_t> lengths;
  if (call.seq_lengths.defined()) {
    if (!is_integral(call.seq_lengths.dtype()) || call.seq_lengths.shape() != batch_shape)
      throw ShapeError(fmt::format("seq_lengths {} {} must be integers of the batch shape {}",
                                   dtype_name(call.seq_lengths.dtype()), shape_str(call.seq_lengths.shape()),
                                   shape_str(batch_shape)));
    for (double v : call.seq_lengths.to_vector()) {
      if (v < 1 || v > static_cast<double>(steps))
        throw ValueError(fmt::format("seq_lengths holds {}, outside [1, {}] (the time steps)", v, steps));
      lengths.push_back(static_cast<std::int64_t>(v));
    }
  }

  // Time-major [T, B, F] whatever the layout.
  Tensor x = time_major ? reshape(inputs, {steps, batch, in}) : swapaxes(reshape(inputs, {batch, steps, in}), 0, 1);
  if (reverse) x = flip_sequences(x, lengths);

  // The carry: given (checked against what initialize_carry would make) or made.
  Shape cell_input = batch_shape;
  cell_input.push_back(in);
  const Carry expected = cell_->initialize_carry(call.init_key.value_or(make_key(0)), cell_input);
  Carry carry = call.initial_carry.empty() ? expected : call.initial_carry;
  {
    bool ok = carry.size() == expected.size();
    for (std::size_t k = 0; ok && k < carry.size(); ++k) ok = carry[k].defined() && carry[k].shape() == expected[k].shape();
    if (!ok) {
      std::vector<std::string> got, want;
      for (const Tensor& t : carry) got.push_back(t.defined() ? shape_str(t.shape()) : "undefined");
      for (const Tensor& t : expected) want.push_back(shape_str(t.shape()));
      throw ShapeError(fmt::format("initial_carry [{}] does not match the carry [{}] of {} for inputs {}",
                                   fmt::join(got, ", "), fmt::join(want, ", "), cell_->describe(), shape_str(s)));
    }
  }
  for (Tensor& t : carry) t = reshape(t, {batch, t.size(-1)});

  const bool slice_carry = !lengths.empty() && return_carry;
  Tensor ys;  // [T, B, H]
  Carry final_carry;
  auto* lstm = dynamic_cast<LSTMCell*>(cell_);
  if (lstm && !lstm->default_activations()) lstm = nullptr;  // the user's gate functions: step by step
  auto* gru = dynamic_cast<GRUCell*>(cell_);
  if (gru && !gru->default_activations()) gru = nullptr;
  const auto gru_weights = gru ? gru->fused_weights(in) : FusedGRUWeights{};
  const auto pg = gru ? promote_dtype({x, gru_weights.input_kernel, gru_weights.input_bias,
                                       gru_weights.recurrent_kernel, gru_weights.recurrent_bias, carry[0]},
                                      gru->options().dtype)
                      : std::vector<Tensor>{};
  const auto fused_weights = lstm ? lstm->fused_weights(in) : FusedLSTMWeights{};
  const auto p = lstm ? promote_dtype({x, fused_weights.input_kernel, fused_weights.recurrent_kernel,
                                       fused_weights.bias, carry[0], carry[1]},
                                      lstm->options().dtype)
                      : std::vector<Tensor>{};
  // Under per_example_grads the fused paths tap their input projections (the rule
  // above); time-major inputs (axis 0 is time, not the example) and several batch axes
  // on the step-by-step path decline every parameter under this RNN.
  PerExampleCapture* capture = PerExampleCapture::active();
  const bool fused = (lstm && (p[0].dtype() == DType::Float32 || p[0].dtype() == DType::Float64)) ||
                     (gru && (pg[0].dtype() == DType::Float32 || pg[0].dtype() == DType::Float64));
  if (capture && (time_major || batch_shape.empty() || (!fused && batch_shape.size() != 1))) {
    capture->tap(this, {}, {});
    capture = nullptr;
  }
  if (lstm && (p[0].dtype() == DType::Float32 || p[0].dtype() == DType::Float64)) {
    // The input projection of every step in one GEMM, then the recurrence as one op.
    // (xp stays [T * B, 4H]: xgrad's reshape copies, 3.6 MB each way for 28 x 64 x 512.)
    const Tensor xp = matmul(reshape(p[0], {steps * batch, in}), p[1]);
    const Tensor states = lstm_sequence(xp, p[2], p[3], p[4], p[5]);  // [T, 2, B, H]
    ys = squeeze(slice(states, 1, 1, 2), {1});
    if (capture) capture->tap(this, {p[0], p[5], ys}, {xp});
    if (slice_carry) {
      final_carry = {select_last(squeeze(slice(states, 1, 0, 1), {1}), lengths), select_last(ys, lengths)};
    } else if (return_carry) {
      const Tensor last = step_of(states, steps - 1);
      final_carry = {step_of(last, 0), step_of(last, 1)};
    }
  } else if (gru && (pg[0].dtype() == DType::Float32 || pg[0].dtype() == DType::Float64)) {
    // The input projection of every step in one GEMM, then the recurrence as one op.
    const Tensor xp = matmul(reshape(pg[0], {steps * batch, in}), pg[1]) + pg[2];  // [T * B, 3H]
    ys = gru_sequence(xp, pg[3], pg[4], pg[5]);  // [T, B, H]
    if (capture) capture->tap(this, {pg[0], pg[5], ys, pg[3]}, {xp});
    if (slice_carry) final_carry = {select_last(ys, lengths)};
    else if (return_carry) final_carry = {step_of(ys, steps - 1)};
  } else {
    std::vector<Tensor> outputs;
    std::vector<std::vector<Tensor>> history(carry.size());
    for (std::int64_t t = 0; t < steps; ++t) {
      auto [next, y] = (*cell_)(carry, step_of(x, t));
      carry = std::move(next);
      outputs.push_back(y);
      if (slice_carry)
        for (std::size_t k = 0; k < carry.size(); ++k) history[k].push_back(carry[k]);
    }
    ys = stack(outputs, 0);
    if (slice_carry) {
      for (auto& h : history) final_carry.push_back(select_last(stack(h, 0), lengths));
    } else if (return_carry) {
      final_carry = carry;
    }
  }
  if (reverse && keep_order) ys = flip_sequences(ys, lengths);

  RNNOutput out;
  const std::int64_t features = ys.size(-1);
  Shape out_shape = batch_shape;
  if (time_major) {
    out_shape.insert(out_shape.begin(), steps);
    out_shape.push_back(features);
    out.outputs = reshape(ys, out_shape);
  } else {
    out_shape.push_back(steps);
    out_shape.push_back(features);
    out.outputs = reshape(swapaxes(ys, 0, 1), out_shape);
  }
  for (const Tensor& t : final_carry) {
    Shape carry_shape = batch_shape;
    carry_shape.push_back(t.size(-1));
    out.carry.push_back(reshape(t, carry_shape));
  }
  return out;
}

std::optional<StateDict> RNN::per_example_tapped_grads(const Tensor& input, const std::vector<Tensor>& saved,
                                                       const std::vector<Tensor>& taps,
                                                       const std::vector<Tensor>& tap_grads) const {
  if (saved.size() < 3 || input.dim() < 3) return std::nullopt;  // declined in run()
  // saved: x [T, B', in] (time-major, in processing order), h0 [B', H], ys [T, B', H];
  // B' = the flattened batch dims, example-major, so example b owns A = B'/B rows.
  const Tensor &x = saved[0], &h0 = saved[1], &ys = saved[2];
  const std::int64_t steps = x.size(0), rows = x.size(1), batch = input.size(0);
  const Tensor h_prev = steps == 1 ? unsqueeze(h0, 0) : concat({unsqueeze(h0, 0), slice(ys, 0, 0, steps - 1)}, 0);
  const Tensor dz = reshape(tap_grads.at(0), {steps, rows, -1});
  // [T, B', ·] -> [B, A·T, ·]: every step of example b as its rows.
  const auto grouped = [batch](const Tensor& t) { return reshape(swapaxes(t, 0, 1), {batch, -1, t.size(-1)}); };
  StateDict cell_grads;
  if (const auto* lstm = dynamic_cast<const LSTMCell*>(cell_)) {
    cell_grads = lstm->per_example_gate_grads(grouped(x), grouped(h_prev), grouped(dz));
  } else if (const auto* gru = dynamic_cast<const GRUCell*>(cell_); gru && saved.size() == 4) {
    // hp = h W_h + [0 | 0 | b_hn]: its gradient is dz for r and z, r ⊙ dz_n for n, with
    // r = sigmoid(xp_r + h W_hr) recomputed from the tapped xp.
    const std::int64_t hidden = gru->features();
    const auto part = [hidden](const Tensor& t, std::int64_t from, std::int64_t to) {
      return slice(t, -1, from * hidden, to * hidden);
    };
    const Tensor xp = reshape(taps.at(0), {steps, rows, -1});
    const Tensor r = sigmoid(part(xp, 0, 1) + matmul(h_prev, part(saved[3], 0, 1)));
    const Tensor dhp = concat({part(dz, 0, 2), r * part(dz, 2, 3)}, -1);
    cell_grads = gru->per_example_gate_grads(grouped(x), grouped(h_prev), grouped(dz), grouped(dhp));
  } else {
    return std::nullopt;
  }
  StateDict out;
  for (auto& [name, value] : cell_grads) out["cell." + name] = value;
  return out;
}

}  // namespace xgrad::nn
