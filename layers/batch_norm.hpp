// BatchNorm (flax.linen.BatchNorm). Training normalises with the batch's mean and
// biased variance over every axis but `axis`, and updates the running statistics
//   ra = momentum * ra + (1 - momentum) * batch
// (not during init()). Evaluation normalises with the running statistics.
// The running statistics are float32 buffers "mean" (zeros) and "var" (ones).
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
  double momentum = 0.99;
  double epsilon = 1e-5;
  std::optional<DType> dtype = std::nullopt;
  DType param_dtype = DType::Float32;
  bool use_bias = true;
  bool use_scale = true;
  Initializer bias_init = initializers::zeros();
  Initializer scale_init = initializers::ones();
  bool use_fast_variance = true;
};

class BatchNorm : public Module {
 public:
  explicit BatchNorm(BatchNormOptions options = {});
  std::string describe() const override { return "BatchNorm"; }
  const BatchNormOptions& options() const { return options_; }

 protected:
  Tensor forward(const Tensor& x) override;

 private:
  BatchNormOptions options_;
};

}  // namespace xgrad::nn
