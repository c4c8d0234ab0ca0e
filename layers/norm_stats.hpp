// Internal to the normalization layers: Flax's _compute_stats and _normalize
// (flax/linen/normalization.py).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/tensor.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

struct NormStats {
  Tensor mean, var;  // reduced axes kept as size 1, dtype at least float32
};

// Statistics over `axes` computed in promote_types(dtype or x's dtype, float32).
// use_mean=false (RMSNorm) gives mean = 0 and var = E[x^2]. The fast variance is
// max(0, E[x^2] - E[x]^2); otherwise E[(x - E[x])^2].
NormStats compute_stats(const Tensor& x, const std::vector<std::int64_t>& axes, std::optional<DType> dtype,
                        bool use_mean, bool use_fast_variance);

// y = (x - mean) * (rsqrt(var + epsilon) * scale) + bias, cast to
// canonicalize_dtype(x, scale, bias, dtype). scale and bias may be undefined and
// are viewed with `feature_shape` (x's rank, 1 outside the feature axes).
Tensor normalize(const Tensor& x, const NormStats& stats, const Tensor& scale, const Tensor& bias,
                 const Shape& feature_shape, double epsilon, std::optional<DType> dtype);

// Sizes of x along the feature axes (the parameter shape), and x's shape with
// every other axis set to 1 (the broadcasting view). Axes are normalised.
Shape reduced_feature_shape(const Shape& x_shape, const std::vector<std::int64_t>& feature_axes);
Shape broadcast_feature_shape(const Shape& x_shape, const std::vector<std::int64_t>& feature_axes);

// The per-example scale and bias gradients of LayerNorm, RMSNorm and BatchNorm (eval): Σ g·x̂ and Σ g over
// the axes that are neither the batch axis 0 nor feature axes, x̂ the input normalised
// without scale and bias. None when a feature axis is 0 or the feature axes are out of
// order (the sum would not lay the result out as the parameter).
std::optional<StateDict> per_example_scale_bias_grads(const Tensor& x, const Tensor& g, const NormStats& stats,
                                                      const std::vector<std::int64_t>& features, double epsilon,
                                                      std::optional<DType> dtype, const Tensor& scale, const Tensor& bias);

}  // namespace xgrad::nn
