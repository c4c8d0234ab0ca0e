// BatchNorm (flax.linen.BatchNorm). Training normalises with the batch's mean and
// biased variance over every axis but `axis`, and updates the running statistics
//   ra = momentum * ra + (1 - momentum) * batch
// (not during init()). Evaluation normalises with the running statistics.
// The running statistics are float32 buffers "mean" (zeros) and "var" (ones).
//
// Per-example gradients (xgrad::per_example_grads). With the running statistics
// (eval(), or use_running_average) the layer is an affine map per feature and each
// example's output depends on that example alone: the batched rule gives example b's
// scale Σ g_b·x̂_b and bias Σ g_b over its non-feature axes. With batch statistics
// (training) every example's output depends on the whole batch, so no per-example
// gradient is defined by the per-example losses: the batched forward raises ValueError
// (before the running statistics move) naming the layer's path and suggesting eval(),
// GroupNorm or LayerNorm. Upstream agrees: Opacus rejects BatchNorm for DP-SGD
// (opacus/validators/batch_norm.py, replacing it with GroupNorm), and jax.vmap of a
// Flax BatchNorm normalises each example by its own statistics unless the batch axis
// is named (axis_name) — a different layer, not the gradient of the batched one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "layers/initializers.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

// Designated initializers name the fields in this order: use_running_average, axis, momentum,
//   epsilon, dtype, param_dtype, use_bias, use_scale, bias_init, scale_init, use_fast_variance.
struct BatchNormOptions {
  // Empty: follow the module's mode (running averages in eval(), batch statistics in train()).
  std::optional<bool> use_running_average = std::nullopt;
  std::vector<std::int64_t> axis = {-1};  // feature axes
  double momentum = 0.99;  // decay rate of the running statistics
  double epsilon = 1e-5;  // added to the variance before the inverse square root
  std::optional<DType> dtype = std::nullopt;  // computation dtype; empty: promoted from the input and the parameters
  DType param_dtype = DType::Float32;  // dtype of scale and bias
  bool use_bias = true;  // learn a bias (offset) per feature, initialised by bias_init
  bool use_scale = true;  // learn a scale per feature, initialised by scale_init
  Initializer bias_init = initializers::zeros();  // initializer of "bias"
  Initializer scale_init = initializers::ones();  // initializer of "scale"
  bool use_fast_variance = true;  // var = max(E[x²] − E[x]², 0), else E[(x − E[x])²]
};

// Batch normalisation (see the top of this file). Parameters "scale" and "bias" and buffers "mean" and "var",
// each of the feature axes' shape, are created at the first call.
class BatchNorm : public Module {
 public:
  // Stores the options; nothing is checked until the first call.
  explicit BatchNorm(BatchNormOptions options = {});
  std::string describe() const override { return "BatchNorm"; }
  // The options it was built with.
  const BatchNormOptions& options() const { return options_; }

  // With the running statistics: scale Σ g_b·x̂_b and bias Σ g_b over each example's
  // non-feature axes (x̂ normalised by the running statistics). Empty with batch
  // statistics (not reached: the forward raises under per_example_grads) or when a
  // feature axis is the batch axis 0.
  std::optional<StateDict> per_example_param_grads(const Tensor& input, const Tensor& output,
                                                   const Tensor& output_grad) const override;

 protected:
  // (x − mean) / sqrt(var + epsilon) · scale + bias, with batch or running statistics (see the top of this file);
  // ShapeError for an `axis` out of range for x.
  Tensor forward(const Tensor& x) override;

 private:
  BatchNormOptions options_;
};

}  // namespace xgrad::nn
