// Rematerialisation (jax.checkpoint / jax.remat, torch.utils.checkpoint): trade
// compute for memory. The function runs forward without keeping its
// intermediates; backward runs it again to rebuild them, then backpropagates
// through the rebuilt graph.
//
//   auto block = xgrad::checkpoint([&](const std::vector<Tensor>& x) {
//     return std::vector<Tensor>{dense2(nn::gelu(dense1(x[0])))};
//   });
//   Tensor h = block({x})[0];   // keeps x and h; dense1's output and gelu's are dropped
//
// The recomputation replays the random keys the forward drew (core/rng_replay.hpp),
// so dropout masks are the same and the gradients bitwise those of the plain run.
// Checkpoints nest, and work under grad(create_graph) (higher-order gradients).
//
// f may read parameters (leaves that require grad, e.g. a module's) without
// passing them: they are found in its graph and get their gradients. A tensor
// computed outside f that requires grad must be passed as an input (ValueError
// otherwise). f must be deterministic apart from the keys it draws through
// Module::next_rng, and must not update state (BatchNorm's running statistics in
// training would be updated again by the recomputation).
//
// Backward calls f again: f, and everything it references, must outlive the
// backward pass. With recording off (NoGradGuard) f just runs. Several outputs must share one
// dtype (they are kept as one tensor on the tape).
#pragma once

#include <functional>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad {

// inputs -> outputs, the function checkpointed
using CheckpointFunction = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

CheckpointFunction checkpoint(CheckpointFunction f);  // jax.checkpoint: f, keeping only inputs and outputs for backward

}  // namespace xgrad
