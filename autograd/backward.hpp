// Reverse-mode sweeps over the tape.
#pragma once

#include <vector>

#include "core/tensor.hpp"

namespace xgrad {

// Designated initializers name the fields in this order: retain_graph, create_graph, allow_unused.
struct GradOptions {
  bool retain_graph = false;  // keep the graph for another backward (implied by create_graph)
  bool create_graph = false;  // record the backward pass itself, for higher-order gradients
  bool allow_unused = false;  // an input the outputs do not depend on gets an undefined Tensor
};

// Gradients of sum_i <outputs[i], cotangents[i]> with respect to `inputs`,
// returned without touching any `.grad()`. Cotangents may be omitted for
// one-element outputs (they default to ones).
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& cotangents = {}, GradOptions options = {});

// Accumulates the gradients into the `.grad()` of every leaf that requires grad.
void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& cotangents = {},
              GradOptions options = {});

}  // namespace xgrad
