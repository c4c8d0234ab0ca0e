#include "layers/batch_norm.hpp"

#include <algorithm>

#include "autograd/grad_mode.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "layers/norm_stats.hpp"
#include "layers/per_example_capture.hpp"

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
    if (PerExampleCapture::active() && !is_initializing())
      throw ValueError(
          "BatchNorm in training mode (batch statistics) couples the examples of a batch, so per-example gradients "
          "are not defined for it; call eval() (or set use_running_average) to use the running statistics, or use "
          "GroupNorm / LayerNorm, which normalise each example alone");
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

std::optional<StateDict> BatchNorm::per_example_param_grads(const Tensor& x, const Tensor&, const Tensor& g) const {
  if (!options_.use_running_average.value_or(!is_training()) || x.dim() < 2 || (!options_.use_scale && !options_.use_bias))
    return std::nullopt;
  const auto features = normalize_axes(options_.axis, x.dim(), "axis");
  const Shape stats_shape = broadcast_feature_shape(x.shape(), features);
  const NormStats stats{reshape(find_buffer("mean"), stats_shape), reshape(find_buffer("var"), stats_shape)};
  return per_example_scale_bias_grads(x, g, stats, features, options_.epsilon, options_.dtype, find_parameter("scale"),
                                      find_parameter("bias"));
}

}  // namespace xgrad::nn
