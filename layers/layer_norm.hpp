// LayerNorm and RMSNorm (flax.linen.LayerNorm / RMSNorm). Statistics are taken
// over reduction_axes in at least float32; scale and bias have the sizes of the
// feature_axes.
//
//   LayerNorm: y = (x - E[x]) / sqrt(Var[x] + epsilon) * scale + bias
//   RMSNorm:   y = x / sqrt(E[x^2] + epsilon) * scale
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "layers/initializers.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

// Designated initializers name the fields in this order: epsilon, dtype, param_dtype, use_bias,
//   use_scale, bias_init, scale_init, reduction_axes, feature_axes, use_fast_variance.
struct LayerNormOptions {
  double epsilon = 1e-6;
  std::optional<DType> dtype = std::nullopt;
  DType param_dtype = DType::Float32;
  bool use_bias = true;
  bool use_scale = true;
  Initializer bias_init = initializers::zeros();
  Initializer scale_init = initializers::ones();
  std::vector<std::int64_t> reduction_axes = {-1};
  std::vector<std::int64_t> feature_axes = {-1};
  bool use_fast_variance = true;  // Var = max(0, E[x^2] - E[x]^2) instead of E[(x - E[x])^2]
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(LayerNormOptions options = {});
  std::string describe() const override { return "LayerNorm"; }
  const LayerNormOptions& options() const { return options_; }
  // Per example: scale = Σ g_b · x̂_b, bias = Σ g_b over the axes that are neither the
  // batch axis 0 nor feature axes, x̂ = (x − mean) / √(var + ε) recomputed from the input.
  std::optional<StateDict> per_example_param_grads(const Tensor& input, const Tensor& output,
                                                   const Tensor& output_grad) const override;

 protected:
  Tensor forward(const Tensor& x) override;

 private:
  LayerNormOptions options_;
};

// Designated initializers name the fields in this order: epsilon, dtype, param_dtype, use_scale,
//   scale_init, reduction_axes, feature_axes.
struct RMSNormOptions {
  double epsilon = 1e-6;
  std::optional<DType> dtype = std::nullopt;
  DType param_dtype = DType::Float32;
  bool use_scale = true;
  Initializer scale_init = initializers::ones();
  std::vector<std::int64_t> reduction_axes = {-1};
  std::vector<std::int64_t> feature_axes = {-1};
};

class RMSNorm : public Module {
 public:
  explicit RMSNorm(RMSNormOptions options = {});
  std::string describe() const override { return "RMSNorm"; }
  const RMSNormOptions& options() const { return options_; }
  // Per example: scale = Σ g_b · x_b / √(E[x²] + ε), as LayerNorm's.
  std::optional<StateDict> per_example_param_grads(const Tensor& input, const Tensor& output,
                                                   const Tensor& output_grad) const override;

 protected:
  Tensor forward(const Tensor& x) override;

 private:
  RMSNormOptions options_;
};

}  // namespace xgrad::nn
