// Parameter initializers, as jax.nn.initializers: each is a function
// (key, shape, dtype) -> Tensor. Random ones need a floating dtype.
//
//   nn::Dense fc({.features = 64, .kernel_init = nn::initializers::he_normal()});
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "core/random.hpp"
#include "core/tensor.hpp"

namespace xgrad::nn {

// A parameter initializer (jax.nn.initializers): a tensor of `shape` and `dtype` drawn from `key`.
using Initializer = std::function<Tensor(Key key, const Shape& shape, DType dtype)>;

namespace initializers {

enum class FanMode { FanIn, FanOut, FanAvg };
enum class Distribution { TruncatedNormal, Normal, Uniform };

// JAX's _compute_fans: fan_in = shape[in_axis] * receptive field, fan_out =
// shape[out_axis] * receptive field, where the receptive field is the product of
// every other axis (except batch_axis).
std::pair<double, double> compute_fans(const Shape& shape, std::int64_t in_axis = -2, std::int64_t out_axis = -1,
                                       const std::vector<std::int64_t>& batch_axis = {});

// Samples with variance scale / fan (fan per `mode`):
//   TruncatedNormal: N(0,1) truncated to [-2, 2] times sqrt(variance) / 0.87962566103423978
//                    (the stddev of that truncated normal);
//   Normal:          N(0, variance);
//   Uniform:         U(-sqrt(3 variance), sqrt(3 variance)).
Initializer variance_scaling(double scale, FanMode mode, Distribution distribution, std::int64_t in_axis = -2,
                             std::int64_t out_axis = -1, std::vector<std::int64_t> batch_axis = {});

Initializer lecun_normal(std::int64_t in_axis = -2, std::int64_t out_axis = -1);   // 1, fan_in, truncated normal
Initializer lecun_uniform(std::int64_t in_axis = -2, std::int64_t out_axis = -1);  // 1, fan_in, uniform
Initializer glorot_normal(std::int64_t in_axis = -2, std::int64_t out_axis = -1);  // 1, fan_avg, truncated normal
Initializer glorot_uniform(std::int64_t in_axis = -2, std::int64_t out_axis = -1); // 1, fan_avg, uniform
Initializer he_normal(std::int64_t in_axis = -2, std::int64_t out_axis = -1);      // 2, fan_in, truncated normal
Initializer he_uniform(std::int64_t in_axis = -2, std::int64_t out_axis = -1);     // 2, fan_in, uniform
inline Initializer xavier_normal(std::int64_t in_axis = -2, std::int64_t out_axis = -1) {
  return glorot_normal(in_axis, out_axis);
}
inline Initializer xavier_uniform(std::int64_t in_axis = -2, std::int64_t out_axis = -1) {
  return glorot_uniform(in_axis, out_axis);
}
inline Initializer kaiming_normal(std::int64_t in_axis = -2, std::int64_t out_axis = -1) {
  return he_normal(in_axis, out_axis);
}
inline Initializer kaiming_uniform(std::int64_t in_axis = -2, std::int64_t out_axis = -1) {
  return he_uniform(in_axis, out_axis);
}

Initializer normal(double stddev = 1e-2);    // N(0, stddev^2)
Initializer uniform(double scale = 1e-2);    // U[0, scale)
// stddev * N(0,1) truncated to [lower, upper].
Initializer truncated_normal(double stddev = 1e-2, double lower = -2.0, double upper = 2.0);
Initializer zeros();
Initializer ones();
Initializer constant(double value);
// A (semi-)orthogonal matrix: QR of a standard normal matrix, columns sign-corrected
// by diag(R) so the result is uniformly distributed (Haar). Shapes of rank > 2 are
// read as [prod(other axes), shape[column_axis]].
Initializer orthogonal(double scale = 1.0, std::int64_t column_axis = -1);

}  // namespace initializers
}  // namespace xgrad::nn
