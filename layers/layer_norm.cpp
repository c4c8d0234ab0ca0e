#include "layers/layer_norm.hpp"

#include <algorithm>

#include "autograd/ops.hpp"
#include "layers/norm_stats.hpp"

namespace xgrad::nn {

LayerNorm::LayerNorm(LayerNormOptions options) : options_(std::move(options)) {
  bind_dtype_options(options_.dtype, options_.param_dtype);
}

Tensor LayerNorm::forward(const Tensor& x) {
  const auto reduction = normalize_axes(options_.reduction_axes, x.dim(), "reduction_axes");
  const auto features = normalize_axes(options_.feature_axes, x.dim(), "feature_axes");
  const NormStats stats = compute_stats(x, reduction, options_.dtype, true, options_.use_fast_variance);
  const Shape param_shape = reduced_feature_shape(x.shape(), features);
  const Tensor scale =
      options_.use_scale ? param("scale", param_shape, options_.scale_init, options_.param_dtype) : Tensor();
  const Tensor bias = options_.use_bias ? param("bias", param_shape, options_.bias_init, options_.param_dtype) : Tensor();
  return normalize(x, stats, scale, bias, broadcast_feature_shape(x.shape(), features), options_.epsilon,
                   options_.dtype);
}

namespace {

// The per-example scale and bias gradients of LayerNorm and RMSNorm: Σ g·x̂ and Σ g over
// the axes that are neither the batch axis 0 nor feature axes, x̂ the input normalised
// without scale and bias. None when a feature axis is 0 or the feature axes are out of
// order (the sum would not lay the result out as the parameter).
std::optional<StateDict> norm_per_example_grads(const Tensor& x, const Tensor& g, const NormStats& stats,
                                                const std::vector<std::int64_t>& features, double epsilon,
                                                std::optional<DType> dtype, const Tensor& scale, const Tensor& bias) {
  if (!std::is_sorted(features.begin(), features.end()) || features.front() == 0) return std::nullopt;
  Axes summed;
  for (std::int64_t a = 1; a < x.dim(); ++a)
    if (std::find(features.begin(), features.end(), a) == features.end()) summed.push_back(a);
  Shape param_shape = reduced_feature_shape(x.shape(), features);
  param_shape.insert(param_shape.begin(), x.size(0));
  // (sum with no axes would sum everything: an input of [B, features] has nothing to sum)
  const auto sum_per_example = [&](const Tensor& t) { return summed.empty() ? t : sum(t, summed); };
  StateDict out;
  if (scale.defined()) {
    const Tensor normalized = cast(
        normalize(x, stats, Tensor(), Tensor(), broadcast_feature_shape(x.shape(), features), epsilon, dtype), g.dtype());
    out["scale"] = cast(reshape(sum_per_example(g * normalized), param_shape), scale.dtype());
  }
  if (bias.defined()) out["bias"] = cast(reshape(sum_per_example(g), param_shape), bias.dtype());
  return out;
}

}  // namespace

std::optional<StateDict> LayerNorm::per_example_param_grads(const Tensor& x, const Tensor&, const Tensor& g) const {
  if (x.dim() < 2 || (!options_.use_scale && !options_.use_bias)) return std::nullopt;
  const auto reduction = normalize_axes(options_.reduction_axes, x.dim(), "reduction_axes");
  const auto features = normalize_axes(options_.feature_axes, x.dim(), "feature_axes");
  return norm_per_example_grads(x, g, compute_stats(x, reduction, options_.dtype, true, options_.use_fast_variance),
                                features, options_.epsilon, options_.dtype, find_parameter("scale"),
                                find_parameter("bias"));
}

std::optional<StateDict> RMSNorm::per_example_param_grads(const Tensor& x, const Tensor&, const Tensor& g) const {
  if (x.dim() < 2 || !options_.use_scale) return std::nullopt;
  const auto reduction = normalize_axes(options_.reduction_axes, x.dim(), "reduction_axes");
  const auto features = normalize_axes(options_.feature_axes, x.dim(), "feature_axes");
  return norm_per_example_grads(x, g, compute_stats(x, reduction, options_.dtype, false, false), features,
                                options_.epsilon, options_.dtype, find_parameter("scale"), Tensor());
}

RMSNorm::RMSNorm(RMSNormOptions options) : options_(std::move(options)) {
  bind_dtype_options(options_.dtype, options_.param_dtype);
}

Tensor RMSNorm::forward(const Tensor& x) {
  const auto reduction = normalize_axes(options_.reduction_axes, x.dim(), "reduction_axes");
  const auto features = normalize_axes(options_.feature_axes, x.dim(), "feature_axes");
  const NormStats stats = compute_stats(x, reduction, options_.dtype, false, false);
  const Tensor scale = options_.use_scale ? param("scale", reduced_feature_shape(x.shape(), features),
                                                  options_.scale_init, options_.param_dtype)
                                          : Tensor();
  return normalize(x, stats, scale, Tensor(), broadcast_feature_shape(x.shape(), features), options_.epsilon,
                   options_.dtype);
}

}  // namespace xgrad::nn
