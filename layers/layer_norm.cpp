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


std::optional<StateDict> LayerNorm::per_example_param_grads(const Tensor& x, const Tensor&, const Tensor& g) const {
  if (x.dim() < 2 || (!options_.use_scale && !options_.use_bias)) return std::nullopt;
  const auto reduction = normalize_axes(options_.reduction_axes, x.dim(), "reduction_axes");
  const auto features = normalize_axes(options_.feature_axes, x.dim(), "feature_axes");
  return per_example_scale_bias_grads(x, g, compute_stats(x, reduction, options_.dtype, true, options_.use_fast_variance),
                                features, options_.epsilon, options_.dtype, find_parameter("scale"),
                                find_parameter("bias"));
}

std::optional<StateDict> RMSNorm::per_example_param_grads(const Tensor& x, const Tensor&, const Tensor& g) const {
  if (x.dim() < 2 || !options_.use_scale) return std::nullopt;
  const auto reduction = normalize_axes(options_.reduction_axes, x.dim(), "reduction_axes");
  const auto features = normalize_axes(options_.feature_axes, x.dim(), "feature_axes");
  return per_example_scale_bias_grads(x, g, compute_stats(x, reduction, options_.dtype, false, false), features,
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
