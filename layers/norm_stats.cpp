#include "layers/norm_stats.hpp"

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

}  // namespace xgrad::nn
