// The attention ops: the two contractions of dot-product attention in Flax's
// [batch..., length, heads, depth] layout, and the masked softmax between them.
// Each contraction's VJP is the other contraction (or itself on swapped axes), so
// the VJPs are differentiable ops and second order comes for free.
#include <algorithm>

#include <fmt/format.h>

#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "autograd/tangents.hpp"
#include "core/error.hpp"
#include "core/kernels/attention.hpp"

namespace xgrad {

namespace {

// The dtype the contraction runs in, promoted as jnp.einsum promotes its operands.
DType compute_dtype(DType a, DType b) {
  const DType d = promote_types(a, b);
  return is_floating(d) ? d : default_float_dtype();
}

bool kernel_dtype(DType d) { return d == DType::Float32 || d == DType::Float64; }

Tensor as_dtype(const Tensor& x, DType d) { return x.dtype() == d ? x : cast(x, d); }

// Checks `a` [batch..., A, H, X] against `b` [batch..., B, H, Y]: same rank (>= 3), batch
// dims and heads; `same_last` also asks X == Y.
void check_operands(const char* op, const char* a_name, const Tensor& a, const char* b_name, const Tensor& b,
                    const char* layout, bool same_last) {
  const Shape &as = a.shape(), &bs = b.shape();
  const auto problem = [&](const char* what) {
    return ShapeError(fmt::format("{}: {} {} and {} {} {} (both must be {})", op, a_name, shape_str(as), b_name,
                                  shape_str(bs), what, layout));
  };
  if (as.size() < 3 || bs.size() < 3) throw problem("need rank >= 3");
  if (as.size() != bs.size()) throw problem("differ in rank");
  const std::size_t r = as.size();
  if (!std::equal(as.begin(), as.end() - 3, bs.begin())) throw problem("differ in their batch dims");
  if (as[r - 2] != bs[r - 2]) throw problem("differ in their number of heads");
  if (same_last && as[r - 1] != bs[r - 1]) throw problem("differ in their depth per head");
}

}  // namespace

Tensor attention_scores(const Tensor& query, const Tensor& key, double scale) {
  check_operands("attention_scores", "query", query, "key", key, "[batch..., length, heads, depth]", true);
  const DType d = compute_dtype(query.dtype(), key.dtype());
  if (!kernel_dtype(d))
    return cast(attention_scores(as_dtype(query, DType::Float32), as_dtype(key, DType::Float32), scale), d);
  const Tensor q = as_dtype(query, d), k = as_dtype(key, d);
  Tensor out = kernels::attention_scores(q, k, scale);
  // s = scale q.k^T per (batch, head): dq = scale g.k, dk = scale g^T.q.
  return record("attention_scores", out, {q, k}, [q, k, scale](const Tensor& g, const Tensor&) -> Grads {
    Tensor gq, gk;
    if (q.requires_grad()) gq = attention_values(g, k, scale);
    if (k.requires_grad()) gk = attention_values(swapaxes(g, -1, -2), q, scale);
    return {gq, gk};
  }, Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {  // bilinear: s(dq, k) + s(q, dk)
    return tangents::plus(t[0].defined() ? attention_scores(t[0], k, scale) : Tensor(),
                          t[1].defined() ? attention_scores(q, t[1], scale) : Tensor());
  });
}

Tensor attention_values(const Tensor& weights, const Tensor& value, double scale) {
  const Shape &ws = weights.shape(), &vs = value.shape();
  if (ws.size() >= 3 && vs.size() == ws.size()) {
    const std::size_t r = ws.size();
    if (!std::equal(ws.begin(), ws.end() - 3, vs.begin()) || ws[r - 3] != vs[r - 2] || ws[r - 1] != vs[r - 3])
      throw ShapeError(fmt::format("attention_values: weights {} [batch..., heads, q_length, kv_length] do not "
                                   "match value {} [batch..., kv_length, heads, depth]",
                                   shape_str(ws), shape_str(vs)));
  } else {
    throw ShapeError(fmt::format("attention_values: weights {} and value {} must have the same rank >= 3",
                                 shape_str(ws), shape_str(vs)));
  }
  const DType d = compute_dtype(weights.dtype(), value.dtype());
  if (!kernel_dtype(d))
    return cast(attention_values(as_dtype(weights, DType::Float32), as_dtype(value, DType::Float32), scale), d);
  const Tensor w = as_dtype(weights, d), v = as_dtype(value, d);
  Tensor out = kernels::attention_values(w, v, scale);
  // o = scale w.v per (batch, head): dw = scale g.v^T, dv = scale w^T.g.
  return record("attention_values", out, {w, v}, [w, v, scale](const Tensor& g, const Tensor&) -> Grads {
    Tensor gw, gv;
    if (w.requires_grad()) gw = attention_scores(g, v, scale);
    if (v.requires_grad()) gv = attention_values(swapaxes(w, -1, -2), g, scale);
    return {gw, gv};
  }, Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {  // bilinear: o(dw, v) + o(w, dv)
    return tangents::plus(t[0].defined() ? attention_values(t[0], v, scale) : Tensor(),
                          t[1].defined() ? attention_values(w, t[1], scale) : Tensor());
  });
}

Tensor masked_softmax(const Tensor& x, const Tensor& mask) {
  if (x.dim() == 0) throw ShapeError("masked_softmax: x is a scalar; it needs an axis to normalise over");
  Tensor keep;
  if (mask.defined()) {
    const Shape &ms = mask.shape(), &xs = x.shape();
    bool broadcasts = ms.size() <= xs.size();
    for (std::size_t i = 0; broadcasts && i < ms.size(); ++i) {
      const std::int64_t m = ms[ms.size() - 1 - i];
      broadcasts = m == 1 || m == xs[xs.size() - 1 - i];
    }
    if (!broadcasts)
      throw ShapeError(fmt::format("masked_softmax: mask {} does not broadcast to the scores {}", shape_str(ms),
                                   shape_str(xs)));
    NoGradGuard no_grad;
    keep = mask.dtype() == DType::Bool ? mask : not_equal(mask, zeros({}, mask.dtype()));
    if (keep.shape() != xs) keep = broadcast_to(keep, xs);
  }
  const DType d = is_floating(x.dtype()) ? x.dtype() : default_float_dtype();
  if (!kernel_dtype(d)) return cast(masked_softmax(as_dtype(x, DType::Float32), keep), d);
  const Tensor xc = as_dtype(x, d);
  Tensor out = kernels::masked_softmax(xc, keep);
  return record("masked_softmax", out, {xc}, [keep](const Tensor& g, const Tensor& y) -> Grads {
    // Under create_graph the gradient must itself be differentiable.
    if (GradMode::is_enabled()) {
      const Tensor dx = y * (g - sum(g * y, {-1}, true));
      return {keep.defined() ? where(keep, dx, zeros_like(dx)) : dx};
    }
    return {kernels::masked_softmax_backward(y, as_dtype(g, y.dtype()), keep)};
  }, Saves::Output, [&](const Grads&, const Grads& t, const Tensor& y) {
    // J t = y * (t' - sum(t' * y)) with t' = t where kept, 0 where masked: a masked
    // score does not move the output (a fully masked row stays uniform).
    if (!t[0].defined()) return Tensor();
    const Tensor kept = keep.defined() ? where(keep, t[0], zeros_like(t[0])) : t[0];
    return y * (kept - sum(kept * y, {-1}, true));
  });
}

}  // namespace xgrad
