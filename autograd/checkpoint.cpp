#include "autograd/checkpoint.hpp"

#include <memory>
#include <unordered_set>

#include <fmt/format.h>

#include "autograd/backward.hpp"
#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "core/rng_replay.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad {

namespace {

// What the backward needs to run f again.
struct Segment {
  CheckpointFunction f;
  std::vector<Tensor> inputs;    // f's explicit inputs, as given
  std::vector<Tensor> captured;  // leaves f read without being given them (parameters)
  std::vector<Key> keys;         // random keys the forward drew, replayed by the recomputation
  std::vector<Shape> output_shapes;
};

// Fresh leaves on the inputs' storage: the graph f records stops at them.
std::vector<Tensor> leaf_copies(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> copies;
  copies.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    Tensor copy = t.detach();
    if (t.requires_grad()) copy.requires_grad_(true);
    copies.push_back(copy);
  }
  return copies;
}

// The leaves requiring grad that f's graph reaches, other than its input copies.
// A node older than f's first (sequence_nr < first) is a tensor computed outside f.
std::vector<Tensor> captured_leaves(const std::vector<Tensor>& outputs, const std::vector<Tensor>& copies,
                                    std::uint64_t first) {
  std::unordered_set<const TensorImpl*> own, seen;
  for (const Tensor& c : copies) own.insert(c.impl());
  std::unordered_set<const Node*> visited;
  std::vector<const Node*> stack;
  std::vector<Tensor> captured;
  auto visit = [&](const Tensor& t) {
    if (!t.defined() || !t.requires_grad()) return;
    if (const Node* node = t.grad_fn().get()) {
      if (node->sequence_nr < first)
        throw ValueError(fmt::format("checkpoint: the function uses a tensor of shape {} computed outside it by '{}' "
                                     "that requires grad; pass it as one of the function's inputs",
                                     shape_str(t.shape()), node->op));
      if (visited.insert(node).second) stack.push_back(node);
    } else if (!own.count(t.impl()) && seen.insert(t.impl()).second) {
      captured.push_back(t);
    }
  };
  for (const Tensor& out : outputs) visit(out);
  while (!stack.empty()) {
    const Node* node = stack.back();
    stack.pop_back();
    for (const Tensor& input : node->inputs) visit(input);
  }
  return captured;
}

// Runs f again under the recorded keys and backpropagates `cotangent` through it.
Grads recompute_and_backward(const Segment& segment, const Tensor& cotangent) {
  const bool create_graph = GradMode::is_enabled();  // the engine records VJPs only under create_graph
  GradModeGuard recording(true);
  std::vector<Tensor> copies = leaf_copies(segment.inputs);
  std::vector<Tensor> outputs;
  {
    RngReplay replay(RngReplay::Mode::Replay, const_cast<std::vector<Key>&>(segment.keys));
    outputs = segment.f(copies);
  }
  // The cotangent of each output: the packed one's pieces when there are several.
  std::vector<Tensor> cotangents;
  if (outputs.size() == 1) {
    cotangents.push_back(cotangent);
  } else {
    std::int64_t offset = 0;
    for (const Shape& s : segment.output_shapes) {
      const std::int64_t n = numel(s);
      cotangents.push_back(reshape(slice(cotangent, 0, offset, offset + n), s));
      offset += n;
    }
  }
  std::vector<Tensor> differentiable_outputs, used_cotangents, targets;
  for (std::size_t i = 0; i < outputs.size(); ++i)
    if (outputs[i].requires_grad()) {
      differentiable_outputs.push_back(outputs[i]);
      used_cotangents.push_back(cotangents[i]);
    }
  for (const Tensor& c : copies)
    if (c.requires_grad()) targets.push_back(c);
  targets.insert(targets.end(), segment.captured.begin(), segment.captured.end());
  std::vector<Tensor> grads;
  if (!differentiable_outputs.empty() && !targets.empty())
    grads = grad(differentiable_outputs, targets, used_cotangents,
                 {.create_graph = create_graph, .allow_unused = true});
  else
    grads.resize(targets.size());
  if (create_graph) {
    // The gradients' graph reads the input copies; joining each copy to its original
    // by an identity makes higher-order gradients reach the original inputs.
    for (std::size_t i = 0; i < copies.size(); ++i) {
      if (!copies[i].requires_grad()) continue;
      const Tensor& original = segment.inputs[i];
      const Tensor link = record("checkpoint_input", original, {original},
                                 [](const Tensor& g, const Tensor&) -> Grads { return {g}; }, Saves::Nothing);
      copies[i].impl()->grad_fn = link.grad_fn();
    }
  }
  Grads result;
  std::size_t next = 0;
  for (const Tensor& c : copies) result.push_back(c.requires_grad() ? grads[next++] : Tensor());
  for (std::size_t i = 0; i < segment.captured.size(); ++i) result.push_back(grads[next++]);
  return result;
}

std::vector<Tensor> run_checkpointed(const CheckpointFunction& f, const std::vector<Tensor>& inputs) {
  // Nothing is recorded without grad mode; under a jvp f runs as it is, its ops
  // carrying the tangents (the jvp keeps no tape to save memory on; JAX's checkpoint
  // is likewise transparent to forward mode).
  if (!GradMode::is_enabled() || forward_ad::propagating()) return f(inputs);
  auto segment = std::make_shared<Segment>();
  segment->f = f;
  segment->inputs = inputs;
  std::vector<Tensor> values;
  {
    const std::vector<Tensor> copies = leaf_copies(inputs);
    const std::uint64_t first = next_sequence_nr();
    std::vector<Tensor> outputs;
    {
      RngReplay record(RngReplay::Mode::Record, segment->keys);
      outputs = f(copies);
    }
    if (outputs.empty()) throw ValueError("checkpoint: the function returned no outputs");
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      if (!outputs[i].defined()) throw ValueError(fmt::format("checkpoint: the function's output {} is undefined", i));
      if (outputs[i].dtype() != outputs.front().dtype())
        throw DTypeError(fmt::format("checkpoint: the function's outputs must share one dtype, got {} and {}",
                                     dtype_name(outputs.front().dtype()), dtype_name(outputs[i].dtype())));
      segment->output_shapes.push_back(outputs[i].shape());
    }
    segment->captured = captured_leaves(outputs, copies, first);
    // Only the values stay: f's graph, and with it every intermediate, goes here.
    for (const Tensor& out : outputs) values.push_back(out.detach());
  }
  std::vector<Tensor> node_inputs = inputs;
  node_inputs.insert(node_inputs.end(), segment->captured.begin(), segment->captured.end());
  const VJP vjp = [segment](const Tensor& g, const Tensor&) -> Grads { return recompute_and_backward(*segment, g); };
  if (values.size() == 1) return {record("checkpoint", values.front(), node_inputs, vjp, Saves::Inputs)};
  // Several outputs ride on one node as one flat tensor, viewed back as each output.
  Tensor packed;
  {
    NoGradGuard values_only;
    std::vector<Tensor> flat;
    for (const Tensor& v : values) flat.push_back(reshape(v, {-1}));
    packed = concat(flat, 0);
  }
  packed = record("checkpoint", packed, node_inputs, vjp, Saves::Inputs);
  std::vector<Tensor> outputs;
  std::int64_t offset = 0;
  for (const Shape& s : segment->output_shapes) {
    const std::int64_t n = numel(s);
    outputs.push_back(reshape(slice(packed, 0, offset, offset + n), s));
    offset += n;
  }
  return outputs;
}

}  // namespace

CheckpointFunction checkpoint(CheckpointFunction f) {
  if (!f) throw ValueError("checkpoint: the function is empty");
  return [f = std::move(f)](const std::vector<Tensor>& inputs) { return run_checkpointed(f, inputs); };
}

}  // namespace xgrad
