#include "layers/layer_norm.hpp"

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
