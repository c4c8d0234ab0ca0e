// Forward mode: the jvp scope, tangent propagation through record, and the
// transforms built on it (hvp, jacfwd, jacrev).
#include "autograd/forward_mode.hpp"

#include <atomic>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "autograd/backward.hpp"
#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "core/kernels/elementwise.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad {

namespace {

// The active jvp scopes' numbers, outermost first (jvp inside jvp nests them, as
// JAX's trace levels), and how many of them propagate: levels[0, ceiling). A JVP
// rule of level j runs with ceiling j, so its ops carry the tangents of the levels
// below (forward over forward) and none of its own. Scope numbers are never reused,
// so a tangent left on a tensor by an ended scope is stale, not wrong.
thread_local std::vector<std::uint64_t> t_levels;
thread_local std::size_t t_ceiling = 0;
thread_local bool t_suspended = false;  // SuspendGuard: nothing propagates
std::atomic<std::uint64_t> next_level{0};
// A tensor's own slot (TensorImpl::tangent) holds one level's tangent; the tangents
// of the other active levels (nested scopes only) live here, per level, keyed by
// the tensor (its weak_ptr tells a dead key's reuse apart).
struct ExtraTangent {
  std::weak_ptr<TensorImpl> owner;
  std::shared_ptr<TensorImpl> tangent;
};
thread_local std::vector<std::unordered_map<const TensorImpl*, ExtraTangent>> t_extra;  // parallel to t_levels
// Every tensor given a tangent in each active scope. A tangent recorded on the tape
// can reach its own primal (exp's tangent t * out keeps out), a reference cycle:
// the scope's end drops them all.
thread_local std::vector<std::vector<std::weak_ptr<TensorImpl>>> t_holders;  // parallel to t_levels

// The level tangent() reads and set_tangent() writes: the innermost propagating one
// (the innermost scope while a SuspendGuard or a rule pauses propagation); 0: none.
std::uint64_t current_level() {
  if (t_levels.empty()) return 0;
  return !t_suspended && t_ceiling > 0 ? t_levels[t_ceiling - 1] : t_levels.back();
}

std::size_t level_index(std::uint64_t level) {
  for (std::size_t j = 0; j < t_levels.size(); ++j)
    if (t_levels[j] == level) return j;
  return t_levels.size();
}

bool is_active(std::uint64_t level) { return level != 0 && level_index(level) < t_levels.size(); }

// `impl`'s tangent at `level` (null: zero), without applying a deferred mask.
std::shared_ptr<TensorImpl> raw_tangent_at(const TensorImpl* impl, std::uint64_t level) {
  if (impl->tangent_level == level) return impl->tangent;
  const std::size_t j = level_index(level);
  if (j >= t_extra.size()) return nullptr;
  const auto it = t_extra[j].find(impl);
  if (it == t_extra[j].end() || it->second.owner.lock().get() != impl) return nullptr;
  return it->second.tangent;
}

void set_tangent_at(const Tensor& primal, std::uint64_t level, const Tensor& tangent) {
  TensorImpl* impl = primal.impl();
  std::shared_ptr<TensorImpl> value = tangent.defined() ? tangent.impl_ptr() : nullptr;
  const std::size_t j = level_index(level);
  if (impl->tangent_level == level || !impl->tangent || !is_active(impl->tangent_level)) {
    impl->tangent = std::move(value);
    impl->tangent_level = level;
    impl->tangent_masked_by_positive = false;
  } else {
    t_extra[j][impl] = ExtraTangent{primal.impl_ptr(), std::move(value)};
  }
  t_holders[j].push_back(primal.impl_ptr());
}

// Sets how many levels propagate for its scope (a rule of level j: the levels below j).
class CeilingGuard {
 public:
  explicit CeilingGuard(std::size_t ceiling) : previous_(t_ceiling) { t_ceiling = ceiling; }
  ~CeilingGuard() { t_ceiling = previous_; }
  CeilingGuard(const CeilingGuard&) = delete;
  CeilingGuard& operator=(const CeilingGuard&) = delete;

 private:
  std::size_t previous_;
};

// The tangent a rule returned, checked and shaped like the output.
Tensor conform_tangent(const char* op, const Tensor& out, Tensor t) {
  if (t.shape() != out.shape()) {
    try {
      t = broadcast_to(t, out.shape());
    } catch (const ShapeError&) {
      throw AutogradError(fmt::format("forward-mode AD: the JVP rule of '{}' returned a tangent of shape {} for an "
                                      "output of shape {} (a rule returns the output's shape or one that broadcasts "
                                      "to it)",
                                      op, shape_str(t.shape()), shape_str(out.shape())));
    }
  }
  if (t.dtype() != out.dtype()) t = cast(t, out.dtype());
  return t;
}

}  // namespace

namespace forward_ad {

bool propagating() { return !t_suspended && t_ceiling > 0; }

std::uint64_t level() { return current_level(); }

std::size_t depth() { return t_levels.size(); }

Tensor fusable_tangent(const Tensor& x) {
  if (!propagating() || t_levels.size() > 1) return Tensor();  // nested: the rules carry the outer tangents
  Tensor t = tangent(x);
  if (t.defined() && GradMode::is_enabled() && t.requires_grad()) return Tensor();
  return t;
}

Tensor tangent(const Tensor& t) {
  const std::uint64_t level = current_level();
  if (level == 0 || !t.defined()) return Tensor();
  TensorImpl* impl = t.impl();
  if (impl->tangent_level != level) return Tensor(raw_tangent_at(impl, level));
  if (!impl->tangent) return Tensor();
  if (impl->tangent_masked_by_positive) {
    // relu's deferred rule, applied once on this first read that cannot fuse it.
    if (t.version() != impl->tangent_mask_version)
      throw AutogradError(fmt::format("forward-mode AD: relu's output {} {} was written in place after relu inside "
                                      "the jvp scope, so its tangent (masked by that output > 0) is lost; write into "
                                      "a clone() instead",
                                      dtype_name(t.dtype()), shape_str(t.shape())));
    impl->tangent = kernels::relu_grad(Tensor(impl->tangent), t).impl_ptr();
    impl->tangent_masked_by_positive = false;
  }
  return Tensor(impl->tangent);
}

bool carries_tangent(const Tensor& x) {
  if (!propagating() || !x.defined()) return false;
  for (std::size_t j = 0; j < t_ceiling; ++j)
    if (raw_tangent_at(x.impl(), t_levels[j])) return true;
  return false;
}

void copy_tangents(const Tensor& from, const Tensor& to) {
  if (t_levels.empty() || !from.defined()) return;
  for (std::size_t j = 0; j < t_levels.size(); ++j) {
    if (!raw_tangent_at(from.impl(), t_levels[j])) continue;
    const std::uint64_t level = t_levels[j];
    // tangent() at that level applies a deferred mask first.
    const Tensor t = level == current_level() ? tangent(from) : Tensor(raw_tangent_at(from.impl(), level));
    set_tangent_at(to, level, t);
  }
}

void set_tangent(const Tensor& primal, const Tensor& tangent) {
  const std::uint64_t level = current_level();
  if (level == 0) throw AutogradError("forward_ad::set_tangent: no jvp scope is active");
  if (!primal.defined()) throw ValueError("forward_ad::set_tangent: the primal is undefined");
  set_tangent_at(primal, level, tangent);
}

void set_tangent_masked_by_positive(const Tensor& primal, const Tensor& raw) {
  set_tangent(primal, raw);
  TensorImpl* impl = primal.impl();
  if (impl->tangent_level != current_level()) {  // not in the tensor's own slot: apply the mask now
    set_tangent(primal, raw.defined() ? kernels::relu_grad(raw, primal) : Tensor());
    return;
  }
  impl->tangent_masked_by_positive = raw.defined();
  impl->tangent_mask_version = primal.version();
}

Tensor fusable_masked_tangent(const Tensor& x) {
  if (!propagating() || t_levels.size() > 1 || !x.defined()) return Tensor();
  const TensorImpl* impl = x.impl();
  if (!impl->tangent || impl->tangent_level != current_level() || !impl->tangent_masked_by_positive ||
      x.version() != impl->tangent_mask_version)
    return Tensor();
  Tensor raw(impl->tangent);
  if (GradMode::is_enabled() && raw.requires_grad()) return Tensor();  // as fusable_tangent: the rule must be recorded
  return raw;
}

SuspendGuard::SuspendGuard() : previous_(t_suspended) { t_suspended = true; }
SuspendGuard::~SuspendGuard() { t_suspended = previous_; }

namespace {

// Gives `out` (just recorded from `primals`) its tangent `t`, computed by `rule`.
template <class Rule>
Tensor attach_tangent(const char* op, Tensor out, const std::vector<Tensor>& primals, Rule&& rule) {
  if (!is_floating(out.dtype())) return out;  // integer and bool results carry no tangent
  Tensor t;
  {
    SuspendGuard rule_only;  // the rule's own ops compute no tangents of tangents
    t = rule();
    if (!t.defined()) return out;
    t = conform_tangent(op, out, std::move(t));
  }
  // An identity-like op run without recording returns its input: the tangent then
  // goes on a new handle, so the input keeps its own.
  for (const Tensor& p : primals)
    if (p.defined() && p.impl() == out.impl()) {
      out = out.detach();
      break;
    }
  set_tangent(out, t);
  if (const auto& node = out.grad_fn(); node && node->output_storage == out.impl()->storage && !node->output_tangent) {
    node->output_tangent = t.detach().impl_ptr();  // without its graph: the node must not own itself
    node->output_tangent_level = current_level();
  }
  return out;
}

// record_with_rule inside nested jvp scopes: each propagating level's tangent, from
// the outermost in, by the rule run with the levels below it propagating. So the
// rule's ops of an inner level carry the outer levels' tangents (the output and the
// inputs' inner tangents carry theirs already), which is what makes jvp of jvp
// give second directional derivatives.
Tensor record_nested(const char* op, Tensor out, std::vector<Tensor> inputs, VJP vjp, Saves saves, const JVP& rule) {
  const std::size_t top = t_ceiling;
  std::vector<std::vector<Tensor>> tangents(top, std::vector<Tensor>(inputs.size()));
  std::vector<bool> any(top, false);
  bool any_level = false;
  for (std::size_t j = 0; j < top; ++j) {
    CeilingGuard reading(j + 1);  // tangent() reads level j
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      tangents[j][i] = tangent(inputs[i]);
      if (tangents[j][i].defined()) any[j] = any_level = true;
    }
  }
  if (!any_level) return detail::record_on_tape(op, std::move(out), std::move(inputs), std::move(vjp), saves);
  std::vector<Tensor> primals = inputs;
  out = detail::record_on_tape(op, std::move(out), std::move(inputs), std::move(vjp), saves);
  if (!is_floating(out.dtype())) return out;
  for (const Tensor& p : primals)  // an identity-like op: the tangents go on a new handle
    if (p.defined() && p.impl() == out.impl()) {
      out = out.detach();
      break;
    }
  for (std::size_t j = 0; j < top; ++j) {
    if (!any[j]) continue;
    Tensor t;
    {
      CeilingGuard below(j);  // the rule's ops propagate the outer levels only
      t = rule(primals, tangents[j], out);
      if (t.defined()) t = conform_tangent(op, out, std::move(t));
    }
    if (!t.defined()) continue;
    set_tangent_at(out, t_levels[j], t);
    // A backward runs with one scope at most (run_backward refuses nested ones): the
    // outermost, so the node keeps that level's tangent for its output (output_alias).
    if (const auto& node = out.grad_fn();
        j == 0 && node && node->output_storage == out.impl()->storage && !node->output_tangent) {
      node->output_tangent = t.detach().impl_ptr();
      node->output_tangent_level = t_levels[0];
    }
  }
  return out;
}

}  // namespace

Tensor record_with_rule(const char* op, Tensor out, std::vector<Tensor> inputs, VJP vjp, Saves saves,
                        const JVP& rule) {
  if (t_levels.size() > 1) return record_nested(op, std::move(out), std::move(inputs), std::move(vjp), saves, rule);
  std::vector<Tensor> tangents(inputs.size());
  bool any = false;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    tangents[i] = tangent(inputs[i]);
    any = any || tangents[i].defined();
  }
  if (!any) return detail::record_on_tape(op, std::move(out), std::move(inputs), std::move(vjp), saves);
  std::vector<Tensor> primals = inputs;
  out = detail::record_on_tape(op, std::move(out), std::move(inputs), std::move(vjp), saves);
  const Tensor recorded = out;  // the rule sees the recorded output (attach_tangent may give out a new handle)
  return attach_tangent(op, std::move(out), primals, [&] { return rule(primals, tangents, recorded); });
}

Tensor record_with_tangent(const char* op, Tensor out, std::vector<Tensor> inputs, VJP vjp, Saves saves,
                           const Tensor& out_tangent) {
  if (!propagating())
    return detail::record_on_tape(op, std::move(out), std::move(inputs), std::move(vjp), saves);
  std::vector<Tensor> primals = inputs;
  out = detail::record_on_tape(op, std::move(out), std::move(inputs), std::move(vjp), saves);
  return attach_tangent(op, std::move(out), primals, [&] { return out_tangent; });
}

}  // namespace forward_ad

namespace {

// Ends the scope however f exits: clears the tangents it set, then the level.
class JvpScope {
 public:
  JvpScope() : previous_ceiling_(t_ceiling), previous_suspended_(t_suspended) {
    t_levels.push_back(++next_level);
    t_extra.emplace_back();
    t_holders.emplace_back();
    t_ceiling = t_levels.size();
    t_suspended = false;
  }
  ~JvpScope() {
    const std::uint64_t level = t_levels.back();
    for (const auto& holder : t_holders.back())
      if (const auto impl = holder.lock(); impl && impl->tangent_level == level) {
        impl->tangent.reset();
        impl->tangent_masked_by_positive = false;
      }
    t_holders.pop_back();
    t_extra.pop_back();
    t_levels.pop_back();
    t_ceiling = previous_ceiling_;
    t_suspended = previous_suspended_;
  }
  JvpScope(const JvpScope&) = delete;
  JvpScope& operator=(const JvpScope&) = delete;

 private:
  std::size_t previous_ceiling_;
  bool previous_suspended_;
};

void check_primals(const char* what, const std::vector<Tensor>& primals, const std::vector<Tensor>& tangents) {
  if (primals.size() != tangents.size())
    throw ValueError(fmt::format("{}: {} primals but {} tangents (one tangent per primal; an undefined tangent is zero)",
                                 what, primals.size(), tangents.size()));
  std::unordered_set<const TensorImpl*> seen;
  for (std::size_t i = 0; i < primals.size(); ++i) {
    const Tensor& p = primals[i];
    const Tensor& t = tangents[i];
    if (!p.defined()) throw ValueError(fmt::format("{}: primal {} is undefined", what, i));
    if (!t.defined()) continue;
    if (!seen.insert(p.impl()).second)
      throw ValueError(fmt::format("{}: primal {} (shape {}) is the same tensor as an earlier primal with a tangent; "
                                   "pass a clone() so each primal carries its own tangent",
                                   what, i, shape_str(p.shape())));
    if (!is_floating(p.dtype()))
      throw DTypeError(fmt::format("{}: primal {} ({} {}) is not floating, so it has no tangent (pass an undefined "
                                   "tangent for it)",
                                   what, i, dtype_name(p.dtype()), shape_str(p.shape())));
    if (t.shape() != p.shape())
      throw ShapeError(fmt::format("{}: tangent {} has shape {} but its primal has shape {}", what, i,
                                   shape_str(t.shape()), shape_str(p.shape())));
    if (t.dtype() != p.dtype())
      throw DTypeError(fmt::format("{}: tangent {} ({} {}) must have its primal's dtype {}", what, i,
                                   dtype_name(t.dtype()), shape_str(t.shape()), dtype_name(p.dtype())));
  }
}

JvpResult run_jvp(const char* what, const MultiFunction& f, const std::vector<Tensor>& primals,
                  const std::vector<Tensor>& tangents) {
  check_primals(what, primals, tangents);
  JvpScope scope;
  for (std::size_t i = 0; i < primals.size(); ++i) {
    if (!tangents[i].defined()) continue;  // zero: the fresh scope number already makes any old tangent stale
    forward_ad::set_tangent(primals[i], tangents[i]);
  }
  JvpResult r;
  r.outputs = f(primals);
  for (const Tensor& out : r.outputs) {
    if (!out.defined() || !is_floating(out.dtype())) {
      r.output_tangents.emplace_back();
      continue;
    }
    const Tensor t = forward_ad::tangent(out);
    r.output_tangents.push_back(t.defined() ? t : zeros(out.shape(), out.dtype()));
  }
  return r;
}

}  // namespace

JvpResult jvp(const MultiFunction& f, const std::vector<Tensor>& primals, const std::vector<Tensor>& tangents) {
  return run_jvp("jvp", f, primals, tangents);
}

LinearizeResult linearize(const MultiFunction& f, const std::vector<Tensor>& primals) {
  // Seeds: zero tangents that require grad, so the JVP rules' ops are recorded as a
  // graph u -> J u (its value is zero; only its structure matters).
  std::vector<Tensor> inputs(primals.size()), seeds(primals.size());
  for (std::size_t i = 0; i < primals.size(); ++i) {
    if (!primals[i].defined()) throw ValueError(fmt::format("linearize: primal {} is undefined", i));
    inputs[i] = primals[i].detach();
    if (is_floating(primals[i].dtype())) seeds[i] = zeros(primals[i].shape(), primals[i].dtype()).requires_grad_();
  }
  JvpResult linear;
  {
    GradModeGuard on(true);
    linear = run_jvp("linearize", f, inputs, seeds);
  }
  // Transpose once: w -> Jᵀ w, recorded (create_graph), with probes w of the outputs' shapes.
  std::vector<Tensor> outputs, probes(linear.outputs.size()), recorded, used_seeds;
  std::vector<std::size_t> recorded_outputs, used_primals;
  for (std::size_t k = 0; k < linear.outputs.size(); ++k) {
    outputs.push_back(linear.outputs[k].defined() ? linear.outputs[k].detach() : Tensor());
    const Tensor& t = linear.output_tangents[k];
    if (t.defined() && t.requires_grad()) {
      probes[k] = zeros(t.shape(), t.dtype()).requires_grad_();
      recorded.push_back(t);
      recorded_outputs.push_back(k);
    }
  }
  std::vector<Tensor> transposed;
  for (std::size_t i = 0; i < seeds.size(); ++i)
    if (seeds[i].defined()) {
      used_seeds.push_back(seeds[i]);
      used_primals.push_back(i);
    }
  if (!recorded.empty() && !used_seeds.empty()) {
    std::vector<Tensor> recorded_probes;
    for (std::size_t k : recorded_outputs) recorded_probes.push_back(probes[k]);
    transposed = grad(recorded, used_seeds, recorded_probes, {.create_graph = true, .allow_unused = true});
  }
  // The map keeps what J v needs: Jᵀ w's graph, the probes, the primals (for the tangents' checks).
  struct State {
    std::vector<Tensor> primals, outputs_like, probes, transposed;
    std::vector<std::size_t> used_primals;
  };
  auto state = std::make_shared<State>();
  state->primals = inputs;  // for the tangents' checks (shapes, dtypes)
  state->outputs_like = outputs;
  state->probes = probes;
  state->transposed = transposed;
  state->used_primals = used_primals;
  LinearizeResult result;
  result.outputs = outputs;
  result.jvp = [state](const std::vector<Tensor>& tangents) {
    check_primals("linearize (the linear map)", state->primals, tangents);
    // J v = d/dw ⟨Jᵀ w, v⟩: one backward sweep of the transposed graph with cotangents v.
    std::vector<Tensor> sweep_outputs, sweep_cotangents, wanted;
    for (std::size_t j = 0; j < state->transposed.size(); ++j) {
      const Tensor& tj = state->transposed[j];
      const Tensor& v = tangents[state->used_primals[j]];
      if (!tj.defined() || !tj.requires_grad() || !v.defined()) continue;
      sweep_outputs.push_back(tj);
      sweep_cotangents.push_back(v);
    }
    for (const Tensor& w : state->probes)
      if (w.defined()) wanted.push_back(w);
    std::vector<Tensor> columns;
    if (!sweep_outputs.empty() && !wanted.empty())
      columns = grad(sweep_outputs, wanted, sweep_cotangents, {.retain_graph = true, .allow_unused = true});
    std::vector<Tensor> out;
    std::size_t next = 0;
    for (std::size_t k = 0; k < state->outputs_like.size(); ++k) {
      const Tensor& y = state->outputs_like[k];
      if (!y.defined() || !is_floating(y.dtype())) {
        out.emplace_back();
        continue;
      }
      Tensor jv;
      if (state->probes[k].defined()) {
        if (next < columns.size()) jv = columns[next];
        ++next;
      }
      out.push_back(jv.defined() ? jv.detach() : zeros(y.shape(), y.dtype()));
    }
    return out;
  };
  return result;
}

std::vector<Tensor> hvp(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& primals,
                        const std::vector<Tensor>& tangents) {
  std::vector<Tensor> leaves;
  for (std::size_t i = 0; i < primals.size(); ++i) {
    if (!primals[i].defined()) throw ValueError(fmt::format("hvp: primal {} is undefined", i));
    if (!is_floating(primals[i].dtype()))
      throw DTypeError(fmt::format("hvp: primal {} is {} {}; a Hessian needs floating primals", i,
                                   dtype_name(primals[i].dtype()), shape_str(primals[i].shape())));
    leaves.push_back(primals[i].detach().requires_grad_());
  }
  // x -> grad f(x): its VJPs run inside the jvp scope, so their tangents are H v.
  const MultiFunction gradient = [&f](const std::vector<Tensor>& xs) {
    GradModeGuard on(true);
    const Tensor y = f(xs);
    if (!y.defined() || y.numel() != 1)
      throw ShapeError(fmt::format("hvp: f must return a one-element tensor, got shape {}",
                                   y.defined() ? shape_str(y.shape()) : "undefined"));
    std::vector<Tensor> grads(xs.size());
    if (y.requires_grad()) grads = grad({y}, xs, {}, {.allow_unused = true});
    for (std::size_t i = 0; i < xs.size(); ++i)
      if (!grads[i].defined()) grads[i] = zeros(xs[i].shape(), xs[i].dtype());
    return grads;
  };
  std::vector<Tensor> out = run_jvp("hvp", gradient, leaves, tangents).output_tangents;
  for (std::size_t i = 0; i < out.size(); ++i)
    if (out[i].dtype() != primals[i].dtype()) out[i] = cast(out[i], primals[i].dtype());
  return out;
}

Tensor hvp(const std::function<Tensor(const Tensor&)>& f, const Tensor& x, const Tensor& v) {
  return hvp([&f](const std::vector<Tensor>& xs) { return f(xs[0]); }, std::vector<Tensor>{x},
             std::vector<Tensor>{v})[0];
}

namespace {

void check_jacobian_input(const char* what, const Tensor& x) {
  if (!x.defined()) throw ValueError(fmt::format("{}: x is undefined", what));
  if (!is_floating(x.dtype()))
    throw DTypeError(fmt::format("{}: x is {} {}; a Jacobian needs a floating x", what, dtype_name(x.dtype()),
                                 shape_str(x.shape())));
}

// Stacks per-element slices (each of shape `inner`) along a new axis at `axis`
// and lays the result out as `shape`.
Tensor assemble(const std::vector<Tensor>& slices, std::int64_t axis, const Shape& shape, DType dtype) {
  if (slices.empty()) return zeros(shape, dtype);
  return reshape(stack(slices, axis), shape);
}

Shape concat_shapes(const Shape& a, const Shape& b) {
  Shape s = a;
  s.insert(s.end(), b.begin(), b.end());
  return s;
}

std::vector<double> unit(std::int64_t n, std::int64_t k) {
  std::vector<double> e(static_cast<std::size_t>(n), 0.0);
  e[static_cast<std::size_t>(k)] = 1.0;
  return e;
}

}  // namespace

Tensor jacfwd(const std::function<Tensor(const Tensor&)>& f, const Tensor& x) {
  check_jacobian_input("jacfwd", x);
  const MultiFunction g = [&f](const std::vector<Tensor>& xs) { return std::vector<Tensor>{f(xs[0])}; };
  const std::int64_t n = x.numel();
  Shape out_shape;
  DType out_dtype = x.dtype();
  std::vector<Tensor> columns;
  for (std::int64_t k = 0; k < n; ++k) {
    const JvpResult r = run_jvp("jacfwd", g, {x}, {from_vector(unit(n, k), x.shape(), x.dtype())});
    if (!r.output_tangents[0].defined())
      throw DTypeError(fmt::format("jacfwd: f returned a {} tensor, which has no derivative",
                                   dtype_name(r.outputs[0].dtype())));
    out_shape = r.outputs[0].shape();
    out_dtype = r.outputs[0].dtype();
    columns.push_back(reshape(r.output_tangents[0], {-1}));
  }
  if (n == 0) {
    const Tensor y = f(x);
    out_shape = y.shape();
    out_dtype = y.dtype();
  }
  return assemble(columns, 1, concat_shapes(out_shape, x.shape()), out_dtype);
}

Tensor jacrev(const std::function<Tensor(const Tensor&)>& f, const Tensor& x) {
  check_jacobian_input("jacrev", x);
  GradModeGuard on(true);
  Tensor leaf = x;
  if (!x.requires_grad()) {
    leaf = x.detach().requires_grad_();
    // Inside a jvp scope x's tangents come along (jacfwd of jacrev: forward-over-reverse).
    forward_ad::copy_tangents(x, leaf);
  }
  const Tensor y = f(leaf);
  if (!is_floating(y.dtype()))
    throw DTypeError(fmt::format("jacrev: f returned a {} tensor, which has no derivative", dtype_name(y.dtype())));
  const std::int64_t m = y.numel();
  std::vector<Tensor> rows;
  for (std::int64_t j = 0; j < m; ++j) {
    Tensor row;
    if (y.requires_grad())
      row = grad({y}, {leaf}, {from_vector(unit(m, j), y.shape(), y.dtype())},
                 {.retain_graph = true, .allow_unused = true})[0];
    if (!row.defined()) row = zeros(x.shape(), x.dtype());
    rows.push_back(reshape(row, {-1}));
  }
  return assemble(rows, 0, concat_shapes(y.shape(), x.shape()), x.dtype());
}

}  // namespace xgrad
