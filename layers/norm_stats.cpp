#include "layers/norm_stats.hpp"

#include <algorithm>

#include "autograd/ops.hpp"
#include "layers/dtypes.hpp"

namespace xgrad::nn {

NormStats compute_stats(const Tensor& x, const std::vector<std::int64_t>& axes, std::optional<DType> dtype,
                        bool use_mean, bool use_fast_variance) {
  // At least float32: half-precision statistics lose too much.
  const Tensor xs = cast(x, promote_types(dtype.value_or(x.dtype()), DType::Float32));
  if (!use_mean) {
    const Tensor var = mean(square(xs), axes, true);
    return {zeros_like(var), var};
  }
  const Tensor mu = mean(xs, axes, true);
  if (use_fast_variance) {
    // E[x^2] - E[x]^2 can round below zero.
    return {mu, maximum(weak_scalar(0.0, true, mu), mean(square(xs), axes, true) - square(mu))};
  }
  return {mu, mean(square(xs - mu), axes, true)};
}

Tensor normalize(const Tensor& x, const NormStats& stats, const Tensor& scale, const Tensor& bias,
                 const Shape& feature_shape, double epsilon, std::optional<DType> dtype) {
  Tensor y = x - stats.mean;
  Tensor mul = rsqrt(stats.var + epsilon);
  std::vector<Tensor> args{x};
  if (scale.defined()) {
    mul = mul * reshape(scale, feature_shape);
    args.push_back(scale);
  }
  y = y * mul;
  if (bias.defined()) {
    y = y + reshape(bias, feature_shape);
    args.push_back(bias);
  }
  return cast(y, canonicalize_dtype(args, dtype));
}

Shape reduced_feature_shape(const Shape& x_shape, const std::vector<std::int64_t>& feature_axes) {
  Shape out;
  for (auto a : feature_axes) out.push_back(x_shape[static_cast<std::size_t>(a)]);
  return out;
}

Shape broadcast_feature_shape(const Shape& x_shape, const std::vector<std::int64_t>& feature_axes) {
  Shape out(x_shape.size(), 1);
  for (auto a : feature_axes) out[static_cast<std::size_t>(a)] = x_shape[static_cast<std::size_t>(a)];
  return out;
}

// The per-example scale and bias gradients of LayerNorm and RMSNorm: Σ g·x̂ and Σ g over
// the axes that are neither the batch axis 0 nor feature axes, x̂ the input normalised
// without scale and bias. None when a feature axis is 0 or the feature axes are out of
// order (the sum would not lay the result out as the parameter).
std::optional<StateDict> per_example_scale_bias_grads(const Tensor& x, const Tensor& g, const NormStats& stats,
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

}  // namespace xgrad::nn
