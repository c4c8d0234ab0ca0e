#include "layers/batch_norm.hpp"

#include <algorithm>

#include "autograd/grad_mode.hpp"
#include "autograd/ops.hpp"
#include "layers/norm_stats.hpp"

namespace xgrad::nn {

BatchNorm::BatchNorm(BatchNormOptions options) : options_(std::move(options)) {
  bind_dtype_options(options_.dtype, options_.param_dtype);
}

Tensor BatchNorm::forward(const Tensor& x) {
  const auto features = normalize_axes(options_.axis, x.dim(), "axis");
  std::vector<std::int64_t> reduction;
  for (std::int64_t a = 0; a < x.dim(); ++a)
    if (std::find(features.begin(), features.end(), a) == features.end()) reduction.push_back(a);
  const Shape feature_shape = reduced_feature_shape(x.shape(), features);
  const Shape stats_shape = broadcast_feature_shape(x.shape(), features);

  Tensor ra_mean = buffer("mean", feature_shape, initializers::zeros(), DType::Float32);
  Tensor ra_var = buffer("var", feature_shape, initializers::ones(), DType::Float32);
  NormStats stats;
  if (options_.use_running_average.value_or(!is_training())) {
    stats = {reshape(ra_mean, stats_shape), reshape(ra_var, stats_shape)};
  } else {
    stats = compute_stats(x, reduction, options_.dtype, true, options_.use_fast_variance);
    if (!is_initializing()) {
      NoGradGuard no_grad;
      const double m = options_.momentum;
      ra_mean.copy_(ra_mean * m + reshape(stats.mean.detach(), feature_shape) * (1 - m));
      ra_var.copy_(ra_var * m + reshape(stats.var.detach(), feature_shape) * (1 - m));
    }
  }
  const Tensor scale =
      options_.use_scale ? param("scale", feature_shape, options_.scale_init, options_.param_dtype) : Tensor();
  const Tensor bias =
      options_.use_bias ? param("bias", feature_shape, options_.bias_init, options_.param_dtype) : Tensor();
  return normalize(x, stats, scale, bias, stats_shape, options_.epsilon, options_.dtype);
}

}  // namespace xgrad::nn
