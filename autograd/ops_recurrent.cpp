// The fused LSTM ops of recurrent.hpp with their VJPs.
//
// Without create_graph the VJPs call the kernels of core/kernels/lstm.*; with it
// (GradMode on inside the VJP) they are written with differentiable ops from the
// op's inputs, so second-order gradients see the whole dependence on them.
#include "autograd/recurrent.hpp"

#include <fmt/format.h>

#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "core/kernels/gru.hpp"
#include "core/kernels/lstm.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad {

namespace {

bool fused_dtype(DType d) { return d == DType::Float32 || d == DType::Float64; }

// The four gate pre-activations as slices of the last axis.
struct GateSlices {
  Tensor i, f, g, o;
};
GateSlices split_gates(const Tensor& z, std::int64_t hidden) {
  return {slice(z, -1, 0, hidden), slice(z, -1, hidden, 2 * hidden), slice(z, -1, 2 * hidden, 3 * hidden),
          slice(z, -1, 3 * hidden, 4 * hidden)};
}

// c' and h' with differentiable ops.
std::pair<Tensor, Tensor> composed_update(const Tensor& z, const Tensor& c) {
  const GateSlices s = split_gates(z, c.size(-1));
  const Tensor i = sigmoid(s.i), f = sigmoid(s.f), g = tanh(s.g), o = sigmoid(s.o);
  const Tensor c_new = f * c + i * g;
  return {c_new, o * tanh(c_new)};
}

// The step VJP with differentiable ops: (dz, dc) from the cotangents of c' and h'.
std::pair<Tensor, Tensor> composed_step_vjp(const Tensor& z, const Tensor& c, const Tensor& gc, const Tensor& gh) {
  const GateSlices s = split_gates(z, c.size(-1));
  const Tensor i = sigmoid(s.i), f = sigmoid(s.f), g = tanh(s.g), o = sigmoid(s.o);
  const Tensor tc = tanh(f * c + i * g);
  const Tensor dct = gc + gh * o * (1.0 - tc * tc);
  const Tensor dz = concat({dct * g * i * (1.0 - i), dct * c * f * (1.0 - f), dct * i * (1.0 - g * g),
                            gh * tc * o * (1.0 - o)},
                           -1);
  return {dz, dct * f};
}

Tensor take_index(const Tensor& x, std::int64_t index) {  // x[index] along axis 0, that axis dropped
  return squeeze(slice(x, 0, index, index + 1), {0});
}

// Step t's rows [B, G] of the input projections, given as [T, B, G] or as [T * B, G].
Tensor xp_step(const Tensor& xp, std::int64_t t, std::int64_t rows) {
  return xp.dim() == 3 ? take_index(xp, t) : slice(xp, 0, t * rows, (t + 1) * rows);
}

// The steps of xp [T, B, G] or [T * B, G] with B = rows; 0 when the shape fits neither.
std::int64_t steps_of(const Tensor& xp, std::int64_t rows, std::int64_t gates) {
  if (xp.dim() == 3 && xp.size(1) == rows && xp.size(2) == gates) return xp.size(0);
  if (xp.dim() == 2 && rows > 0 && xp.size(0) % rows == 0 && xp.size(1) == gates) return xp.size(0) / rows;
  return 0;
}

void check_cell_operands(const Tensor& gates, const Tensor& c) {
  if (!gates.defined() || !c.defined()) throw ValueError("lstm_cell_update: gates and c must be defined");
  if (gates.dtype() != c.dtype() || !is_floating(gates.dtype()))
    throw DTypeError(fmt::format("lstm_cell_update: gates ({}) and c ({}) must share one floating dtype",
                                 dtype_name(gates.dtype()), dtype_name(c.dtype())));
  Shape expected = c.shape();
  if (!expected.empty()) expected.back() *= 4;
  if (c.dim() == 0 || gates.shape() != expected)
    throw ShapeError(fmt::format("lstm_cell_update: gates {} must be c {} with a last dim 4 times as large",
                                 shape_str(gates.shape()), shape_str(c.shape())));
}

struct GruGates {
  Tensor r, z, n, hp_n;
};
GruGates gru_gates(const Tensor& xp, const Tensor& hp, std::int64_t hidden) {
  const auto part = [hidden](const Tensor& t, std::int64_t k) { return slice(t, -1, k * hidden, (k + 1) * hidden); };
  const Tensor r = sigmoid(part(xp, 0) + part(hp, 0)), z = sigmoid(part(xp, 1) + part(hp, 1));
  const Tensor hp_n = part(hp, 2);
  return {r, z, tanh(part(xp, 2) + r * hp_n), hp_n};
}

}  // namespace

Tensor gru_cell_update(const Tensor& xp, const Tensor& hp, const Tensor& h) {
  if (!xp.defined() || !hp.defined() || !h.defined()) throw ValueError("gru_cell_update: xp, hp and h must be defined");
  if (xp.dtype() != h.dtype() || hp.dtype() != h.dtype() || !is_floating(h.dtype()))
    throw DTypeError(fmt::format("gru_cell_update: xp ({}), hp ({}) and h ({}) must share one floating dtype",
                                 dtype_name(xp.dtype()), dtype_name(hp.dtype()), dtype_name(h.dtype())));
  Shape expected = h.shape();
  if (!expected.empty()) expected.back() *= 3;
  if (h.dim() == 0 || xp.shape() != expected || hp.shape() != expected)
    throw ShapeError(fmt::format("gru_cell_update: xp {} and hp {} must be h {} with a last dim 3 times as large",
                                 shape_str(xp.shape()), shape_str(hp.shape()), shape_str(h.shape())));
  const std::int64_t hidden = h.size(-1), rows = h.numel() / std::max<std::int64_t>(hidden, 1);
  // Under a jvp the composed form runs: its ops carry the tangents (no fused JVP rule).
  if (!fused_dtype(h.dtype()) || forward_ad::propagating()) {
    const GruGates s = gru_gates(xp, hp, hidden);
    return (1.0 - s.z) * s.n + s.z * h;
  }
  Tensor out = empty(h.shape(), h.dtype());
  visit_dtype(h.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
      kernels::gru_step_forward<T>(xp.data<T>(), hp.data<T>(), h.data<T>(), out.data<T>(), rows, hidden);
  });
  return record("gru_cell_update", out, {xp, hp, h}, [xp, hp, h, rows, hidden](const Tensor& g, const Tensor&) -> Grads {
    if (GradMode::is_enabled()) {  // create_graph: differentiable in xp, hp, h and g
      const GruGates s = gru_gates(xp, hp, hidden);
      const Tensor dn = g * (1.0 - s.z) * (1.0 - s.n * s.n);
      const Tensor dr = dn * s.hp_n * s.r * (1.0 - s.r);
      const Tensor dz = g * (h - s.n) * s.z * (1.0 - s.z);
      return {concat({dr, dz, dn}, -1), concat({dr, dz, dn * s.r}, -1), g * s.z};
    }
    Tensor dxp = empty(xp.shape(), xp.dtype()), dhp = empty(hp.shape(), hp.dtype()), dh = empty(h.shape(), h.dtype());
    visit_dtype(h.dtype(), [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
        kernels::gru_step_backward<T>(xp.data<T>(), hp.data<T>(), h.data<T>(), g.data<T>(), dxp.data<T>(),
                                      dhp.data<T>(), dh.data<T>(), rows, hidden);
    });
    return {dxp, dhp, dh};
  }, Saves::Inputs);
}

Tensor lstm_cell_update(const Tensor& gates, const Tensor& c) {
  check_cell_operands(gates, c);
  if (!fused_dtype(gates.dtype()) || forward_ad::propagating()) {  // (as gru_cell_update)
    auto [c_new, h_new] = composed_update(gates, c);
    return stack({c_new, h_new}, 0);
  }
  const std::int64_t hidden = c.size(-1), rows = c.numel() / std::max<std::int64_t>(hidden, 1);
  Shape out_shape = c.shape();
  out_shape.insert(out_shape.begin(), 2);
  Tensor out = empty(out_shape, c.dtype());
  visit_dtype(c.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      T* o = out.data<T>();
      kernels::lstm_step_forward<T>(gates.data<T>(), c.data<T>(), o, o + rows * hidden, nullptr, rows, hidden);
    }
  });
  return record("lstm_cell_update", out, {gates, c}, [gates, c, rows, hidden](const Tensor& g, const Tensor& output) -> Grads {
    if (GradMode::is_enabled()) {  // create_graph: differentiable in gates, c and g
      auto [dz, dc] = composed_step_vjp(gates, c, take_index(g, 0), take_index(g, 1));
      return {dz, dc};
    }
    Tensor dz = empty(gates.shape(), gates.dtype()), dc = empty(c.shape(), c.dtype());
    visit_dtype(c.dtype(), [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
        const T* gp = g.data<T>();
        kernels::lstm_step_backward<T>(gates.data<T>(), c.data<T>(), output.data<T>(), gp, gp + rows * hidden,
                                       dz.data<T>(), dc.data<T>(), rows, hidden);
      }
    });
    return {dz, dc};
  }, Saves::InputsAndOutput);
}

Tensor lstm_sequence(const Tensor& xp, const Tensor& wh, const Tensor& bias, const Tensor& c0, const Tensor& h0) {
  const auto describe = [&] {
    return fmt::format("xp {}, wh {}, bias {}, c0 {}, h0 {}", shape_str(xp.shape()), shape_str(wh.shape()),
                       bias.defined() ? shape_str(bias.shape()) : "none", shape_str(c0.shape()), shape_str(h0.shape()));
  };
  if (!xp.defined() || !wh.defined() || !c0.defined() || !h0.defined())
    throw ValueError("lstm_sequence: xp, wh, c0 and h0 must be defined");
  const DType dtype = xp.dtype();
  for (const Tensor& t : {wh, bias, c0, h0})
    if (t.defined() && t.dtype() != dtype)
      throw DTypeError(fmt::format("lstm_sequence: operands must share one dtype ({}): {}", dtype_name(dtype), describe()));
  if (!fused_dtype(dtype))
    throw DTypeError(fmt::format("lstm_sequence: needs float32 or float64, got {}", dtype_name(dtype)));
  if (wh.dim() != 2 || c0.dim() != 2 || c0.shape() != h0.shape())
    throw ShapeError(fmt::format("lstm_sequence: expected xp [T, B, 4H], wh [H, 4H], c0 and h0 [B, H]; got {}", describe()));
  const std::int64_t rows = c0.size(0), hidden = c0.size(1), steps = steps_of(xp, rows, 4 * hidden);
  if (steps == 0 || wh.size(0) != hidden || wh.size(1) != 4 * hidden ||
      (bias.defined() && bias.shape() != Shape{4 * hidden}))
    throw ShapeError(fmt::format("lstm_sequence: expected xp [T, B, 4H], wh [H, 4H], bias [4H], c0 and h0 [B, H]; got {}",
                                 describe()));
  // A missing bias is a zero one that nothing differentiates: one kernel signature.
  const Tensor b = bias.defined() ? bias : zeros({4 * hidden}, dtype);
  if (forward_ad::propagating()) {  // under a jvp: the steps as composed ops, which carry the tangents
    std::vector<Tensor> per_step;
    Tensor c = c0, h = h0;
    for (std::int64_t t = 0; t < steps; ++t) {
      std::tie(c, h) = composed_update(xp_step(xp, t, rows) + matmul(h, wh) + b, c);
      per_step.push_back(stack({c, h}, 0));
    }
    return stack(per_step, 0);
  }
  Tensor states = empty({steps, 2, rows, hidden}, dtype);
  Tensor gates = empty({steps, rows, 4 * hidden}, dtype);
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      kernels::lstm_sequence_forward<T>(xp.data<T>(), wh.data<T>(), b.data<T>(),
                                        c0.data<T>(), h0.data<T>(), states.data<T>(), gates.data<T>(), steps, rows,
                                        hidden);
    }
  });
  std::vector<Tensor> inputs = {xp, wh, b, c0, h0};
  return record("lstm_sequence", states, inputs,
                [xp, wh, b, c0, h0, gates, steps, rows, hidden](const Tensor& g, const Tensor& output) -> Grads {
    if (GradMode::is_enabled()) {
      // create_graph: replay the steps with differentiable ops, then run the same
      // backward-through-time loop with them.
      std::vector<Tensor> zs, c_prev, h_prev;
      Tensor c = c0, h = h0;
      for (std::int64_t t = 0; t < steps; ++t) {
        Tensor z = xp_step(xp, t, rows) + matmul(h, wh);
        z = z + b;
        zs.push_back(z);
        c_prev.push_back(c);
        h_prev.push_back(h);
        std::tie(c, h) = composed_update(z, c);
      }
      std::vector<Tensor> dzs(static_cast<std::size_t>(steps));
      Tensor dc = zeros_like(c0), dh = zeros_like(h0);
      for (std::int64_t t = steps - 1; t >= 0; --t) {
        const Tensor gt = take_index(g, t);
        const auto k = static_cast<std::size_t>(t);
        auto [dz, dc_prev] = composed_step_vjp(zs[k], c_prev[k], take_index(gt, 0) + dc, take_index(gt, 1) + dh);
        dzs[k] = dz;
        dc = dc_prev;
        dh = matmul(dz, transpose(wh));
      }
      const Tensor dz_rows = concat(dzs, 0);  // [T * B, 4H]
      const Tensor dwh = matmul(transpose(concat(h_prev, 0)), dz_rows);
      const Tensor dxp = xp.dim() == 3 ? reshape(dz_rows, xp.shape()) : dz_rows;
      return {dxp, dwh, sum(dz_rows, {0}), dc, dh};
    }
    Tensor dxp = empty(xp.shape(), xp.dtype()), dwh = empty(wh.shape(), wh.dtype());
    Tensor dbias = empty(b.shape(), b.dtype());
    Tensor dc0 = empty(c0.shape(), c0.dtype()), dh0 = empty(h0.shape(), h0.dtype());
    visit_dtype(xp.dtype(), [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
        kernels::lstm_sequence_backward<T>(wh.data<T>(), c0.data<T>(), h0.data<T>(), output.data<T>(),
                                           gates.data<T>(), g.data<T>(), dxp.data<T>(), dwh.data<T>(),
                                           dbias.data<T>(), dc0.data<T>(),
                                           dh0.data<T>(), steps, rows, hidden);
      }
    });
    return {dxp, dwh, dbias, dc0, dh0};
  }, Saves::InputsAndOutput);
}

Tensor gru_sequence(const Tensor& xp, const Tensor& wh, const Tensor& bhn, const Tensor& h0) {
  const auto describe = [&] {
    return fmt::format("xp {}, wh {}, bhn {}, h0 {}", shape_str(xp.shape()), shape_str(wh.shape()),
                       bhn.defined() ? shape_str(bhn.shape()) : "none", shape_str(h0.shape()));
  };
  if (!xp.defined() || !wh.defined() || !h0.defined()) throw ValueError("gru_sequence: xp, wh and h0 must be defined");
  const DType dtype = xp.dtype();
  for (const Tensor& t : {wh, bhn, h0})
    if (t.defined() && t.dtype() != dtype)
      throw DTypeError(fmt::format("gru_sequence: operands must share one dtype ({}): {}", dtype_name(dtype), describe()));
  if (!fused_dtype(dtype))
    throw DTypeError(fmt::format("gru_sequence: needs float32 or float64, got {}", dtype_name(dtype)));
  if (wh.dim() != 2 || h0.dim() != 2)
    throw ShapeError(fmt::format("gru_sequence: expected xp [T, B, 3H], wh [H, 3H], bhn [H], h0 [B, H]; got {}",
                                 describe()));
  const std::int64_t rows = h0.size(0), hidden = h0.size(1), steps = steps_of(xp, rows, 3 * hidden);
  if (steps == 0 || wh.size(0) != hidden || wh.size(1) != 3 * hidden || (bhn.defined() && bhn.shape() != Shape{hidden}))
    throw ShapeError(fmt::format("gru_sequence: expected xp [T, B, 3H], wh [H, 3H], bhn [H], h0 [B, H]; got {}",
                                 describe()));
  const Tensor b = bhn.defined() ? bhn : zeros({hidden}, dtype);
  // The recurrent projection of one step with differentiable ops: h W_h + [0 | 0 | b_hn].
  const auto projection = [hidden](const Tensor& h, const Tensor& w, const Tensor& bias) {
    const Tensor zero = zeros({2 * hidden}, bias.dtype());
    return matmul(h, w) + concat({zero, bias}, -1);
  };
  if (forward_ad::propagating()) {  // under a jvp: composed steps, which carry the tangents
    std::vector<Tensor> hs;
    Tensor h = h0;
    for (std::int64_t t = 0; t < steps; ++t) {
      const GruGates s = gru_gates(xp_step(xp, t, rows), projection(h, wh, b), hidden);
      h = (1.0 - s.z) * s.n + s.z * h;
      hs.push_back(h);
    }
    return stack(hs, 0);
  }
  Tensor hs = empty({steps, rows, hidden}, dtype), hps = empty({steps, rows, 3 * hidden}, dtype);
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
      kernels::gru_sequence_forward<T>(xp.data<T>(), wh.data<T>(), b.data<T>(), h0.data<T>(), hs.data<T>(),
                                       hps.data<T>(), steps, rows, hidden);
  });
  return record("gru_sequence", hs, {xp, wh, b, h0},
                [xp, wh, b, h0, hps, steps, rows, hidden, projection](const Tensor& g, const Tensor& output) -> Grads {
    if (GradMode::is_enabled()) {
      // create_graph: replay the steps with differentiable ops, then the same
      // backward-through-time loop with them.
      std::vector<Tensor> hp_steps, h_prev;
      Tensor h = h0;
      for (std::int64_t t = 0; t < steps; ++t) {
        const Tensor hp = projection(h, wh, b);
        hp_steps.push_back(hp);
        h_prev.push_back(h);
        const GruGates s = gru_gates(xp_step(xp, t, rows), hp, hidden);
        h = (1.0 - s.z) * s.n + s.z * h;
      }
      std::vector<Tensor> dxps(static_cast<std::size_t>(steps)), dhps(static_cast<std::size_t>(steps));
      Tensor dh = zeros_like(h0);
      for (std::int64_t t = steps - 1; t >= 0; --t) {
        const auto k = static_cast<std::size_t>(t);
        const Tensor gh = take_index(g, t) + dh;
        const GruGates s = gru_gates(xp_step(xp, t, rows), hp_steps[k], hidden);
        const Tensor dn = gh * (1.0 - s.z) * (1.0 - s.n * s.n);
        const Tensor dr = dn * s.hp_n * s.r * (1.0 - s.r);
        const Tensor dz = gh * (h_prev[k] - s.n) * s.z * (1.0 - s.z);
        dxps[k] = concat({dr, dz, dn}, -1);
        dhps[k] = concat({dr, dz, dn * s.r}, -1);
        dh = gh * s.z + matmul(dhps[k], transpose(wh));
      }
      const Tensor dhp_rows = concat(dhps, 0);  // [T * B, 3H]
      const Tensor dwh = matmul(transpose(concat(h_prev, 0)), dhp_rows);
      const Tensor dxp = xp.dim() == 3 ? stack(dxps, 0) : concat(dxps, 0);
      return {dxp, dwh, sum(slice(dhp_rows, -1, 2 * hidden, 3 * hidden), {0}), dh};
    }
    Tensor dxp = empty(xp.shape(), xp.dtype()), dhps = empty(hps.shape(), hps.dtype());
    Tensor dwh = empty(wh.shape(), wh.dtype()), db = empty(b.shape(), b.dtype()), dh0 = empty(h0.shape(), h0.dtype());
    visit_dtype(xp.dtype(), [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
        kernels::gru_sequence_backward<T>(xp.data<T>(), wh.data<T>(), h0.data<T>(), output.data<T>(), hps.data<T>(),
                                          g.data<T>(), dxp.data<T>(), dhps.data<T>(), dwh.data<T>(), db.data<T>(),
                                          dh0.data<T>(), steps, rows, hidden);
    });
    return {dxp, dwh, db, dh0};
  }, Saves::InputsAndOutput);
}

}  // namespace xgrad
