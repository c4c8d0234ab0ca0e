// The tape and the reverse sweep.
//
// Every recorded op is a Node holding its inputs until a backward without
// retain_graph has run through it; a tensor made by an op points at its node
// (grad_fn). backward walks the nodes reachable from the outputs in a topological
// order computed iteratively (Kahn's algorithm over dependency counts), so a
// chain of any length runs without recursion.
#include <cmath>
#include <deque>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "autograd/anomaly.hpp"
#include "autograd/backward.hpp"
#include "autograd/forward_mode.hpp"
#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad {

namespace {

thread_local bool t_grad_enabled = true;
thread_local bool t_anomaly_enabled = false;
thread_local std::uint64_t t_sequence_nr = 0;

bool saves_inputs(Saves s) { return (static_cast<int>(s) & 1) != 0; }
bool saves_output(Saves s) { return (static_cast<int>(s) & 2) != 0; }

// The output tensor as the VJP sees it: same storage, and grad_fn = this node, so
// that under create_graph a VJP that uses the output stays connected to the graph.
Tensor output_alias(Node& node) {
  auto impl = std::make_shared<TensorImpl>();
  impl->dtype = node.output_dtype;
  impl->shape = node.output_shape;
  impl->storage = node.output_storage;
  impl->requires_grad = true;
  impl->grad_fn = node.shared_from_this();
  // Forward-over-reverse: a VJP run inside the jvp scope the op ran in sees the
  // output's tangent too.
  if (node.output_tangent && node.output_tangent_level == forward_ad::level() && forward_ad::level() != 0) {
    impl->tangent = node.output_tangent;
    impl->tangent_level = node.output_tangent_level;
  }
  return Tensor(impl);
}

// `to` (a detached or cloned `from`) keeps from's tangent in the active jvp scope,
// so gradients computed inside a jvp (hvp) carry theirs out of grad().
Tensor keep_tangent(const Tensor& from, Tensor to) {
  if (forward_ad::level() == 0) return to;
  forward_ad::copy_tangents(from, to);
  return to;
}

void check_saved_versions(const Node& node) {
  if (saves_inputs(node.saves)) {
    for (std::size_t i = 0; i < node.inputs.size(); ++i) {
      const Tensor& t = node.inputs[i];
      if (t.version() != node.input_versions[i])
        throw AutogradError(fmt::format(
            "backward: input {} (shape {}) of '{}' was modified in place after the forward pass "
            "(version {} when saved, {} now); backward needs its original value. Clone it before "
            "modifying it, or modify it after backward.",
            i, shape_str(t.shape()), node.op, node.input_versions[i], t.version()));
    }
  }
  if (saves_output(node.saves) && node.output_storage->version != node.output_version)
    throw AutogradError(fmt::format(
        "backward: the output (shape {}) of '{}' was modified in place after the forward pass "
        "(version {} when saved, {} now); backward needs its original value.",
        shape_str(node.output_shape), node.op, node.output_version, node.output_storage->version));
}

bool all_finite(const Tensor& t) {
  if (!is_floating(t.dtype())) return true;
  for (double v : t.to_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

void check_anomaly(const Node& node, std::size_t i, const Tensor& g) {
  if (all_finite(g)) return;
  const Tensor& input = node.inputs[i];
  const std::string creator = input.grad_fn() ? fmt::format("the output of '{}'", input.grad_fn()->op) : "a leaf";
  throw AutogradError(fmt::format("detect_anomaly: the backward of '{}' produced a non-finite gradient for its input {} "
                                  "(shape {}), which is {}",
                                  node.op, i, shape_str(input.shape()), creator));
}

Tensor accumulate(const Tensor& total, const Tensor& g) { return total.defined() ? add(total, g) : g; }

// Checks and normalises the gradient a VJP returned for input `i`.
Tensor conform(const Node& node, std::size_t i, Tensor g) {
  const Tensor& input = node.inputs[i];
  if (g.shape() != input.shape())
    throw AutogradError(fmt::format("backward: the VJP of '{}' returned a gradient of shape {} for its input {}, "
                                    "expected that input's shape {} (a VJP returns one gradient per input, shaped "
                                    "like it; sum_to(g, shape) undoes a broadcast)",
                                    node.op, shape_str(g.shape()), i, shape_str(input.shape())));
  if (g.dtype() != input.dtype()) g = cast(g, input.dtype());
  return g;
}

Tensor default_cotangent(const Tensor& output, const char* what) {
  if (output.numel() != 1)
    throw AutogradError(fmt::format("{}: a cotangent is required for an output of shape {} ({} elements); "
                                    "only one-element outputs default to a cotangent of 1 (reduce the loss, e.g. "
                                    "Reduction::Mean, or pass a cotangent)",
                                    what, shape_str(output.shape()), output.numel()));
  return ones(output.shape(), output.dtype());
}

struct Sweep {
  // Leaf (by impl) or non-leaf (by node) whose gradient grad() returns.
  std::unordered_map<const TensorImpl*, std::size_t> leaf_slots;
  std::unordered_map<const Node*, std::size_t> node_slots;
  std::vector<Tensor> captured;
  bool accumulate_into_leaves = true;
  // Leaves whose .grad() this sweep set, in delivery order (for give_leaves_own_gradients).
  std::vector<Tensor> delivered_leaves;
};

// Gradients a sweep hands out must not share storage with each other or with
// anything else. A VJP may hand one tensor to several inputs (add of equal shapes
// returns {g, g}) or return the cotangent the caller passed, and a leaf's first
// gradient is that very tensor: two leaves' .grad(), or a .grad() and a caller's
// tensor, would alias, and an in-place consumer (loss-scale unscaling, clipping,
// the all-reduce) would change them all, or one twice. Once the sweep is over its
// temporaries are gone, so a gradient whose storage has another owner than the
// engine's `handles` references to it is shared: only then is it copied (no copy
// in the common case). Under create_graph the graph itself holds the gradients,
// so there only storage already handed out earlier in the sweep is copied.
bool must_copy(const Tensor& g, long handles, bool create_graph, std::unordered_set<const Storage*>& handed_out) {
  const bool first = handed_out.insert(g.impl()->storage.get()).second;
  if (create_graph) return !first;
  return g.impl()->storage.use_count() > 1 || g.impl_ptr().use_count() > handles;
}

// A copy of g with storage of its own; under create_graph it is recorded as an
// identity, so the copy stays connected to g's graph.
Tensor private_copy(const Tensor& g, bool create_graph) {
  if (!create_graph) return keep_tangent(g, g.clone());
  return record("copy", g.clone(), {g}, [](const Tensor& grad_output, const Tensor&) -> Grads { return {grad_output}; },
                Saves::Nothing, [](const Grads&, const Grads& t, const Tensor&) { return t[0]; });
}

void give_leaves_own_gradients(Sweep& sweep, bool create_graph) {
  std::unordered_set<const Storage*> handed_out;
  std::unordered_set<const TensorImpl*> visited;  // a leaf reached twice is listed twice
  for (Tensor& leaf : sweep.delivered_leaves) {
    if (!visited.insert(leaf.impl()).second) continue;
    const Tensor g = leaf.grad();  // the leaf's slot and this handle: 2 references
    if (g.defined() && must_copy(g, 2, create_graph, handed_out)) leaf.set_grad(private_copy(g, create_graph));
  }
}

void run_backward(const std::vector<Tensor>& outputs, std::vector<Tensor> cotangents, GradOptions options,
                  Sweep& sweep, const char* what) {
  // A VJP inside a jvp scope sees the saved outputs' tangents (output_alias), which
  // the tape keeps for one level only.
  if (forward_ad::propagating() && forward_ad::depth() > 1)
    throw NotImplementedError(fmt::format("{}: reverse mode inside nested jvps (forward over forward over reverse) is "
                                          "not supported; take the gradient outside the inner jvp, or use one jvp "
                                          "(hvp) around it",
                                          what));
  if (!cotangents.empty() && cotangents.size() != outputs.size())
    throw AutogradError(fmt::format("{}: {} outputs but {} cotangents", what, outputs.size(), cotangents.size()));
  cotangents.resize(outputs.size());
  const bool retain = options.retain_graph || options.create_graph;
  GradModeGuard mode(options.create_graph);

  std::unordered_map<Node*, Tensor> node_grads;
  std::vector<Node*> roots;
  auto deliver_to_leaf = [&](const Tensor& leaf, const Tensor& g) {
    if (auto it = sweep.leaf_slots.find(leaf.impl()); it != sweep.leaf_slots.end()) {
      sweep.captured[it->second] = accumulate(sweep.captured[it->second], g);
    } else if (sweep.accumulate_into_leaves && leaf.requires_grad()) {
      Tensor total = accumulate(leaf.grad(), options.create_graph ? g : g.detach());
      const_cast<Tensor&>(leaf).set_grad(total);
      sweep.delivered_leaves.push_back(leaf);
    }
  };

  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    if (!out.requires_grad())
      throw AutogradError(fmt::format("{}: output {} (shape {}) does not require grad: nothing it depends on "
                                      "requires grad, or it was computed under NoGradGuard",
                                      what, i, shape_str(out.shape())));
    Tensor g = cotangents[i].defined() ? cotangents[i] : default_cotangent(out, what);
    if (g.shape() != out.shape())
      throw ShapeError(fmt::format("{}: cotangent shape {} does not match output shape {}", what,
                                   shape_str(g.shape()), shape_str(out.shape())));
    if (g.dtype() != out.dtype()) g = cast(g, out.dtype());
    if (Node* node = out.grad_fn().get()) {
      if (!node_grads.count(node)) roots.push_back(node);
      node_grads[node] = accumulate(node_grads[node], g);
    } else {
      deliver_to_leaf(out, g);
    }
  }

  // Dependency counts: how many reachable consumers feed each node a gradient.
  std::unordered_map<Node*, int> pending;
  std::vector<Node*> stack(roots.begin(), roots.end());
  for (Node* r : roots) pending.emplace(r, 0);
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const Tensor& input : node->inputs) {
      Node* next = input.defined() ? input.grad_fn().get() : nullptr;
      if (!next) continue;
      auto [it, inserted] = pending.emplace(next, 0);
      ++it->second;
      if (inserted) stack.push_back(next);
    }
  }

  // Owning handles: releasing a node below drops its inputs, which may hold the
  // last reference to a node still waiting here.
  std::deque<std::shared_ptr<Node>> ready;
  for (Node* r : roots)
    if (pending[r] == 0) ready.push_back(r->shared_from_this());
  while (!ready.empty()) {
    const std::shared_ptr<Node> owner = std::move(ready.front());
    ready.pop_front();
    Node* node = owner.get();
    Tensor g = std::move(node_grads[node]);
    node_grads.erase(node);
    auto release_edges = [&] {
      for (const Tensor& input : node->inputs) {
        Node* next = input.defined() ? input.grad_fn().get() : nullptr;
        if (next && --pending[next] == 0) ready.push_back(input.grad_fn());
      }
    };
    if (!g.defined()) {  // every consumer's VJP returned "no gradient" for it
      release_edges();
      continue;
    }
    if (auto it = sweep.node_slots.find(node); it != sweep.node_slots.end())
      sweep.captured[it->second] = accumulate(sweep.captured[it->second], g);
    if (node->released)
      throw AutogradError(fmt::format(
          "{}: trying to backward through '{}' a second time, but its saved tensors were freed by the "
          "first backward; pass retain_graph=true to the first call if you need to backward twice",
          what, node->op));
    check_saved_versions(*node);
    Grads grads = node->vjp(g, saves_output(node->saves) ? output_alias(*node) : Tensor());
    if (grads.size() != node->inputs.size())
      throw AutogradError(fmt::format("backward: the VJP of '{}' returned {} gradients for {} inputs", node->op,
                                      grads.size(), node->inputs.size()));
    for (std::size_t i = 0; i < grads.size(); ++i) {
      const Tensor& input = node->inputs[i];
      if (!input.defined() || !input.requires_grad() || !grads[i].defined()) continue;
      Tensor gi = conform(*node, i, std::move(grads[i]));
      if (t_anomaly_enabled) check_anomaly(*node, i, gi);
      if (Node* next = input.grad_fn().get()) {
        node_grads[next] = accumulate(node_grads[next], gi);
      } else {
        deliver_to_leaf(input, gi);
      }
    }
    release_edges();
    if (!retain) {
      // Everything the node held for this backward goes: its VJP's captures, its
      // output and its inputs. The inputs are the graph's edges, but a freed graph
      // is never walked again, and keeping them would keep every activation alive
      // for as long as anyone holds the output (a loss kept for logging).
      node->vjp = nullptr;
      node->output_storage.reset();
      node->output_tangent.reset();
      node->inputs.clear();
      node->input_versions.clear();
      node->released = true;
    }
  }
  cotangents.clear();  // the engine's handles on them are not owners that make a gradient shared
  give_leaves_own_gradients(sweep, options.create_graph);
}

}  // namespace

Node::~Node() {
  static thread_local bool tearing_down = false;
  static thread_local std::vector<std::shared_ptr<Node>> orphans;
  vjp = nullptr;  // its captures may hold the inputs too
  for (Tensor& input : inputs) {
    const auto& impl = input.impl_ptr();
    if (impl && impl.use_count() == 1 && impl->grad_fn) orphans.push_back(std::move(impl->grad_fn));
  }
  inputs.clear();
  if (tearing_down) return;
  tearing_down = true;
  while (!orphans.empty()) {
    std::shared_ptr<Node> next = std::move(orphans.back());
    orphans.pop_back();
    next.reset();  // may push that node's own orphans
  }
  tearing_down = false;
}

bool AnomalyMode::is_enabled() { return t_anomaly_enabled; }
void AnomalyMode::set_enabled(bool enabled) { t_anomaly_enabled = enabled; }

std::uint64_t next_sequence_nr() { return t_sequence_nr; }

bool GradMode::is_enabled() { return t_grad_enabled; }
void GradMode::set_enabled(bool enabled) { t_grad_enabled = enabled; }

Tensor record(const char* op, Tensor out, std::vector<Tensor> inputs, VJP vjp, Saves saves) {
  if (forward_ad::propagating())
    for (std::size_t i = 0; i < inputs.size(); ++i)
      if (forward_ad::carries_tangent(inputs[i]))
        throw NotImplementedError(fmt::format(
            "forward-mode AD: op '{}' has no JVP rule, but its input {} (shape {}) carries a tangent; record it "
            "with a JVP rule (autograd/node.hpp) or wrap it in custom_jvp (autograd/custom_derivatives.hpp)",
            op, i, shape_str(inputs[i].shape())));
  return forward_ad::detail::record_on_tape(op, std::move(out), std::move(inputs), std::move(vjp), saves);
}

Tensor forward_ad::detail::record_on_tape(const char* op, Tensor out, std::vector<Tensor> inputs, VJP vjp,
                                          Saves saves) {
  if (!GradMode::is_enabled()) return out;
  bool any = false;
  for (const Tensor& t : inputs) any = any || (t.defined() && t.requires_grad());
  if (!any) return out;
  // An identity-like op (a gradient-reversal layer returns its input) must not take
  // over a tensor that is already an input or on the tape: its output becomes a
  // new handle on the same storage.
  bool aliases_input = out.requires_grad();
  for (const Tensor& t : inputs) aliases_input = aliases_input || (t.defined() && t.impl() == out.impl());
  if (aliases_input) out = out.detach();
  auto node = std::make_shared<Node>();
  node->op = op;
  node->sequence_nr = t_sequence_nr++;
  node->saves = saves;
  if (saves_inputs(saves)) {
    node->input_versions.reserve(inputs.size());
    for (const Tensor& t : inputs) node->input_versions.push_back(t.defined() ? t.version() : 0);
  }
  node->inputs = std::move(inputs);
  if (saves_output(saves)) {
    node->output_storage = out.impl()->storage;
    node->output_version = out.version();
  }
  node->output_shape = out.shape();
  node->output_dtype = out.dtype();
  node->vjp = std::move(vjp);
  out.impl()->requires_grad = true;
  out.impl()->grad_fn = std::move(node);
  return out;
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& cotangents, GradOptions options) {
  Sweep sweep;
  sweep.accumulate_into_leaves = false;
  sweep.captured.resize(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (!t.requires_grad())
      throw AutogradError(fmt::format("grad: input {} (shape {}) does not require grad", i, shape_str(t.shape())));
    if (t.grad_fn()) sweep.node_slots.emplace(t.grad_fn().get(), i);
    else sweep.leaf_slots.emplace(t.impl(), i);
  }
  run_backward(outputs, cotangents, options, sweep, "grad");
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!sweep.captured[i].defined() && !options.allow_unused)
      throw AutogradError(fmt::format("grad: input {} (shape {}) is not used to compute the outputs; pass "
                                      "allow_unused=true to get an undefined gradient for it",
                                      i, shape_str(inputs[i].shape())));
    if (sweep.captured[i].defined() && !options.create_graph)
      sweep.captured[i] = keep_tangent(sweep.captured[i], sweep.captured[i].detach());
  }
  GradModeGuard mode(options.create_graph);  // private_copy records under create_graph
  std::unordered_set<const Storage*> handed_out;
  for (Tensor& g : sweep.captured)
    if (g.defined() && must_copy(g, 1, options.create_graph, handed_out)) g = private_copy(g, options.create_graph);
  return sweep.captured;
}

void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& cotangents, GradOptions options) {
  Sweep sweep;
  run_backward(outputs, cotangents, options, sweep, "backward");
}

// ---- Tensor's autograd methods

bool Tensor::requires_grad() const { return defined() && impl()->requires_grad; }

Tensor& Tensor::requires_grad_(bool enabled) {
  if (!defined()) throw ValueError("requires_grad_: the tensor is undefined");
  if (!is_leaf())
    throw AutogradError(fmt::format("requires_grad_: only leaf tensors can change requires_grad; this one was "
                                    "made by '{}' (use detach() to get a leaf)",
                                    grad_fn()->op));
  if (enabled && !is_floating(dtype()))
    throw DTypeError(fmt::format("requires_grad_: only floating tensors can require gradients, got {} {}",
                                 dtype_name(dtype()), shape_str(shape())));
  impl()->requires_grad = enabled;
  return *this;
}

bool Tensor::is_leaf() const { return !defined() || impl()->grad_fn == nullptr; }

Tensor Tensor::grad() const { return defined() && impl()->grad ? Tensor(impl()->grad) : Tensor(); }

void Tensor::set_grad(const Tensor& grad) {
  if (grad.defined() && grad.shape() != shape())
    throw ShapeError(fmt::format("set_grad: gradient shape {} does not match tensor shape {}",
                                 shape_str(grad.shape()), shape_str(shape())));
  impl()->grad = grad.impl_ptr();
}

void Tensor::zero_grad() {
  if (defined()) impl()->grad.reset();
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> none;
  return defined() ? impl()->grad_fn : none;
}

Tensor Tensor::detach() const {
  if (!defined()) return Tensor();
  auto impl = std::make_shared<TensorImpl>();
  impl->dtype = this->impl()->dtype;
  impl->shape = this->impl()->shape;
  impl->storage = this->impl()->storage;
  return Tensor(impl);
}

void Tensor::backward(const Tensor& cotangent, bool retain_graph, bool create_graph) const {
  xgrad::backward({*this}, cotangent.defined() ? std::vector<Tensor>{cotangent} : std::vector<Tensor>{},
                  {.retain_graph = retain_graph, .create_graph = create_graph});
}

Tensor Tensor::sum(const Axes& axes, bool keepdims) const { return xgrad::sum(*this, axes, keepdims); }
Tensor Tensor::mean(const Axes& axes, bool keepdims) const { return xgrad::mean(*this, axes, keepdims); }
Tensor Tensor::max(const Axes& axes, bool keepdims) const { return xgrad::max(*this, axes, keepdims); }
Tensor Tensor::min(const Axes& axes, bool keepdims) const { return xgrad::min(*this, axes, keepdims); }
Tensor Tensor::reshape(const Shape& shape) const { return xgrad::reshape(*this, shape); }
Tensor Tensor::astype(DType dtype) const { return cast(*this, dtype); }

}  // namespace xgrad
