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
  double epsilon = 1e-6;  // added to the variance (mean square) before the square root
  std::optional<DType> dtype = std::nullopt;  // output dtype; empty: promoted from input and params
  DType param_dtype = DType::Float32;  // dtype of scale and bias
  bool use_bias = true;  // add a learned `bias`
  bool use_scale = true;  // multiply by a learned `scale`
  Initializer bias_init = initializers::zeros();  // initializer of `bias`
  Initializer scale_init = initializers::ones();  // initializer of `scale`
  std::vector<std::int64_t> reduction_axes = {-1};  // axes the statistics are taken over
  std::vector<std::int64_t> feature_axes = {-1};  // axes scale and bias span
  bool use_fast_variance = true;  // Var = max(0, E[x^2] - E[x]^2) instead of E[(x - E[x])^2]
};

// flax.linen.LayerNorm: normalises x over reduction_axes to zero mean and unit
// variance, then scales and shifts per feature (formula above).
class LayerNorm : public Module {
 public:
  explicit LayerNorm(LayerNormOptions options = {});  // keeps the options; they are checked at the first call
  std::string describe() const override { return "LayerNorm"; }
  // The options it was built with.
  const LayerNormOptions& options() const { return options_; }
  // Per example: scale = Σ g_b · x̂_b, bias = Σ g_b over the axes that are neither the
  // batch axis 0 nor feature axes, x̂ = (x − mean) / √(var + ε) recomputed from the input.
  std::optional<StateDict> per_example_param_grads(const Tensor& input, const Tensor& output,
                                                   const Tensor& output_grad) const override;

 protected:
  // y of x's shape; ShapeError for axes out of range or repeated, and for a
  // later input whose feature sizes differ from the first.
  Tensor forward(const Tensor& x) override;

 private:
  LayerNormOptions options_;
};

// Designated initializers name the fields in this order: epsilon, dtype, param_dtype, use_scale,
//   scale_init, reduction_axes, feature_axes.
struct RMSNormOptions {
  double epsilon = 1e-6;  // added to the variance (mean square) before the square root
  std::optional<DType> dtype = std::nullopt;  // output dtype; empty: promoted from input and params
  DType param_dtype = DType::Float32;  // dtype of scale and bias
  bool use_scale = true;  // multiply by a learned `scale`
  Initializer scale_init = initializers::ones();  // initializer of `scale`
  std::vector<std::int64_t> reduction_axes = {-1};  // axes the statistics are taken over
  std::vector<std::int64_t> feature_axes = {-1};  // axes scale and bias span
};

// flax.linen.RMSNorm: divides x by its root mean square over reduction_axes, then
// scales per feature (formula above).
class RMSNorm : public Module {
 public:
  explicit RMSNorm(RMSNormOptions options = {});  // keeps the options; they are checked at the first call
  std::string describe() const override { return "RMSNorm"; }
  // The options it was built with.
  const RMSNormOptions& options() const { return options_; }
  // Per example: scale = Σ g_b · x_b / √(E[x²] + ε), as LayerNorm's.
  std::optional<StateDict> per_example_param_grads(const Tensor& input, const Tensor& output,
                                                   const Tensor& output_grad) const override;

 protected:
  // y of x's shape; ShapeError for axes out of range or repeated, and for a
  // later input whose feature sizes differ from the first.
  Tensor forward(const Tensor& x) override;

 private:
  RMSNormOptions options_;
};

}  // namespace xgrad::nn
