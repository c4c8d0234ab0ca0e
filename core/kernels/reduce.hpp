// Reduction kernels (no tape). `axes` are normalised and sorted (normalize_axes);
// an empty list reduces nothing. Integer and bool inputs to mean, var, logsumexp
// and softmax compute in default_float_dtype().
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad::kernels {

using Axes = std::vector<std::int64_t>;

// The shape a reduction over `axes` produces.
Shape reduced_shape(const Shape& shape, const Axes& axes, bool keepdims);

// Sums in the compute type; bool sums to Int64, integers keep their dtype.
Tensor sum(const Tensor& x, const Axes& axes, bool keepdims);
Tensor mean(const Tensor& x, const Axes& axes, bool keepdims);
// NaN propagates. Throws ValueError for an empty reduction.
Tensor max(const Tensor& x, const Axes& axes, bool keepdims);
Tensor min(const Tensor& x, const Axes& axes, bool keepdims);
// Index of the first maximum along one axis (Int64); a NaN counts as the maximum.
Tensor argmax(const Tensor& x, std::int64_t axis);
// 1/count where x equals its reduced extremum (count = how many do), else 0: how
// max and min share their gradient among ties. `extremum` holds max(x, axes) or
// min(x, axes), with or without keepdims; x must be floating.
Tensor extremum_weights(const Tensor& x, const Tensor& extremum, const Axes& axes);

// log(sum(exp(x))), computed as m + log(sum(exp(x - m))) with m the max (0 where
// the max is not finite, so that all -inf gives -inf).
Tensor logsumexp(const Tensor& x, const Axes& axes, bool keepdims);
// sum((x - mean)^2) / max(n - ddof, 0), two passes.
Tensor var(const Tensor& x, const Axes& axes, bool keepdims, std::int64_t ddof);
// exp(x - logsumexp(x)) over `axes` (jax.nn.softmax takes several axes too), and its log.
Tensor softmax(const Tensor& x, const Axes& axes);
Tensor log_softmax(const Tensor& x, const Axes& axes);

}  // namespace xgrad::kernels
