// Per-example gradients: the gradient of each example's loss with respect to every
// parameter, as jax.vmap(jax.grad(per_example_loss), in_axes=(None, 0, 0)) gives.
//
//   auto grads = xgrad::per_example_grads(model, [](const Tensor& logits, const Tensor& labels) {
//     return losses::softmax_cross_entropy(logits, labels);    // Reduction::None: [B]
//   }, images, labels);
//   grads["conv1.kernel"];   // [B, 3, 3, 1, 32]: one kernel gradient per image
//
// Convention: loss_fn returns one loss per example, shape [B]; example b's
// gradient is that of losses[b] alone (their sum, not their mean, is what is
// differentiated), so the mean over b of the result is the gradient of
// Reduction::Mean's loss, and its sum that of Reduction::Sum's.
//
// How: one batched forward and backward. During the forward every module call is
// captured (input, output); the backward gives the gradient at each output; then
// each layer's rule (Module::per_example_param_grads) turns input and output
// gradient into per-example parameter gradients for the whole batch at once:
// Dense and DenseGeneral (x_bᵀ g_b), Conv and ConvLocal (from the input's patches),
// ConvTranspose and ConvLocalTranspose (from the output gradient's patches),
// LayerNorm, RMSNorm, GroupNorm and BatchNorm in eval mode (scale and bias), Embed
// (g_b's rows scattered into the table); the attention layers through their
// DenseGeneral projections. Recurrent layers (LSTMCell, OptimizedLSTMCell, GRUCell,
// nn::RNN's fused sequences, Bidirectional) tap their gate pre-activations during the
// forward (PerExampleCapture::tap) and sum x_tᵀ dz_t and h_{t-1}ᵀ dz_t over time per
// example. The parameters of any other layer (or of a call its rule declines) are
// computed by a loop over the examples, one forward and backward each on a batch of
// one; `report` says which.
//
// The model must treat examples independently: BatchNorm in training mode (batch
// statistics mix them) is a ValueError naming its path. Dropout draws other masks in
// the loop fallback than in the batched pass, so keep the model in eval() where exact
// agreement matters.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "layers/module.hpp"

namespace xgrad {

// (model outputs, targets) -> one loss per example, shape [B].
using PerExampleLoss = std::function<Tensor(const Tensor& outputs, const Tensor& targets)>;

// How per_example_grads computed each parameter (paths as in named_parameters(),
// in that order): by a layer's batched rule, or by the loop over single examples.
struct PerExampleReport {
  std::vector<std::string> batched;  // from batched rules
  std::vector<std::string> looped;   // from the loop fallback
};

// Each parameter's per-example gradient, [B, parameter shape...] in the
// parameter's dtype, keyed by its dotted path (model.named_parameters()). inputs
// and targets have the batch on axis 0. Throws ShapeError when their batch sizes
// differ or loss_fn does not return shape [B]. Leaves every .grad() untouched.
// `report`, when given, receives which parameters took a batched rule.
nn::StateDict per_example_grads(nn::Module& model, const PerExampleLoss& loss_fn, const Tensor& inputs,
                                const Tensor& targets, PerExampleReport* report = nullptr);

}  // namespace xgrad
