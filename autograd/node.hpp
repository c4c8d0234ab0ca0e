// A recorded op on the tape: its inputs (the graph's edges) and its
// vector-Jacobian product. Ops are recorded with `record`, right after their
// forward computation, the way micrograd's engine.py and Flashlight's
// Functions.cpp keep the forward and the gradient side by side:
//
//   Tensor mul(const Tensor& a, const Tensor& b) {
//     Tensor out = kernels::mul(a, b);
//     return record("mul", out, {a, b}, [a, b](const Tensor& g, const Tensor&) -> Grads {
//       return {sum_to(g * b, a.shape()), sum_to(g * a, b.shape())};
//     });
//   }
//
// VJPs are written with differentiable ops, so backward with create_graph=true
// records the gradient computation itself (higher-order derivatives).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad {

struct Storage;

// One gradient per input, in input order; an undefined Tensor means "no gradient".
using Grads = std::vector<Tensor>;
// (cotangent of the output, the output itself when the op saved it) -> input gradients.
using VJP = std::function<Grads(const Tensor& grad_output, const Tensor& output)>;

// What the VJP reads, so backward can check that nothing it needs was modified in
// place after the forward pass (version counters), and so the output is kept.
enum class Saves : std::uint8_t { Nothing = 0, Inputs = 1, Output = 2, InputsAndOutput = 3 };

struct Node : std::enable_shared_from_this<Node> {
  const char* op = "";
  std::vector<Tensor> inputs;
  std::vector<std::uint64_t> input_versions;
  Saves saves = Saves::Inputs;
  // The output is kept as storage, not as a Tensor: a Tensor would own this node
  // through its grad_fn and make a reference cycle.
  std::shared_ptr<Storage> output_storage;
  std::uint64_t output_version = 0;
  Shape output_shape;
  DType output_dtype = DType::Float32;
  VJP vjp;
  bool released = false;  // vjp, output and inputs freed by a backward without retain_graph

  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Tears the graph down iteratively: dropping the last tensor of a long chain
  // would otherwise recurse once per op and overflow the stack.
  ~Node();
};

// Attaches `out` to the tape as the result of `op` applied to `inputs`, unless
// recording is off or no input requires grad. Returns `out`.
Tensor record(const char* op, Tensor out, std::vector<Tensor> inputs, VJP vjp, Saves saves = Saves::Inputs);

}  // namespace xgrad
