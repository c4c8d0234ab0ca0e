#include "layers/activations.hpp"

#include <fmt/format.h>

#include "core/error.hpp"

namespace xgrad::nn {

namespace {

// A weak floating constant next to x (keeps x's dtype).
Tensor k(double value, const Tensor& x) { return weak_scalar(value, true, x); }

}  // namespace

Tensor relu6(const Tensor& x) {
  // Selecting x only strictly inside (0, 6) gives jax.nn.relu6's gradient (0 at both kinks).
  return where(less_equal(x, k(0, x)), k(0, x), where(greater_equal(x, k(6, x)), k(6, x), x));
}

Tensor leaky_relu(const Tensor& x, double negative_slope) {
  return where(greater_equal(x, k(0, x)), x, x * negative_slope);
}

Tensor elu(const Tensor& x, double alpha) {
  // exp only sees the non-positive side, so the unused branch cannot overflow to inf
  // (whose zero cotangent would turn into NaN).
  const Tensor positive = greater(x, k(0, x));
  const Tensor safe = where(positive, k(0, x), x);
  return where(positive, x, (exp(safe) - 1.0) * alpha);
}

Tensor celu(const Tensor& x, double alpha) {
  return maximum(x, k(0, x)) + (exp(minimum(x, k(0, x)) / alpha) - 1.0) * alpha;
}

Tensor selu(const Tensor& x) {
  constexpr double alpha = 1.6732632423543772848170429916717;
  constexpr double scale = 1.0507009873554804934193349852946;
  return elu(x, alpha) * scale;
}

Tensor silu(const Tensor& x) { return x * sigmoid(x); }

Tensor soft_sign(const Tensor& x) { return x / (abs(x) + 1.0); }

Tensor hard_tanh(const Tensor& x) {
  return where(greater(x, k(1, x)), k(1, x), where(less(x, k(-1, x)), k(-1, x), x));
}

Tensor hard_sigmoid(const Tensor& x) { return relu6(x + 3.0) / 6.0; }

Tensor hard_silu(const Tensor& x) { return x * hard_sigmoid(x); }

Tensor log_sigmoid(const Tensor& x) { return -softplus(-x); }

Tensor glu(const Tensor& x, std::int64_t axis) {
  const std::int64_t size = x.size(axis);
  if (size % 2 != 0)
    throw ShapeError(fmt::format("glu: axis {} of {} has odd size {}; it must split into two halves", axis,
                                 shape_str(x.shape()), size));
  return slice(x, axis, 0, size / 2) * sigmoid(slice(x, axis, size / 2, size));
}

Tensor standardize(const Tensor& x, const std::vector<std::int64_t>& axes, double epsilon) {
  const Tensor mu = mean(x, axes, true);
  const Tensor variance = mean(square(x), axes, true) - square(mu);
  return (x - mu) * rsqrt(variance + epsilon);
}

Tensor PReLU::forward(const Tensor& x) {
  const Tensor slope = param("negative_slope", {}, initializers::constant(options_.negative_slope_init),
                             options_.param_dtype);
  return where(greater_equal(x, k(0, x)), x, cast(slope, x.dtype()) * x);
}

Tensor ReLU::forward(const Tensor& x) { return relu(x); }

}  // namespace xgrad::nn
