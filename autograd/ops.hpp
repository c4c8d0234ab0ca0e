// Differentiable ops. Each records itself on the tape (autograd/node.hpp) when
// grad mode is on and an input requires grad; its VJP sits next to its forward
// in autograd/ops_*.cpp.
//
// Binary ops broadcast as NumPy does and promote dtypes on the JAX lattice
// (core/dtype.hpp); C++ scalars are weak (x_f16 * 2.0 stays float16).
// Gradients flow only into floating tensors.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/pad_mode.hpp"
#include "core/tensor.hpp"

namespace xgrad {

using Axes = std::vector<std::int64_t>;  // empty = every axis

// ---- elementwise binary (broadcasting, promoting)
// As jax.numpy: div is true division (integer and bool quotients are default_float_dtype());
// on bools, add is logical or and mul logical and, sub throws DTypeError, pow computes in
// int32; integer pow with a negative exponent throws ValueError. Integers wrap on overflow.
Tensor add(const Tensor& a, const Tensor& b);  // a + b
Tensor sub(const Tensor& a, const Tensor& b);  // a - b
Tensor mul(const Tensor& a, const Tensor& b);  // a * b
Tensor div(const Tensor& a, const Tensor& b);  // a / b, true division
Tensor pow(const Tensor& a, const Tensor& b);  // gradient w.r.t. b uses log(a): a > 0 there
Tensor pow(const Tensor& a, double exponent);  // a weak float exponent: integer a gives a float result
Tensor maximum(const Tensor& a, const Tensor& b);  // ties send the gradient half to each side
Tensor minimum(const Tensor& a, const Tensor& b);  // elementwise min; ties send the gradient half to each side
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);  // condition: Bool

// Comparisons and logic: no gradient, Bool result.
Tensor equal(const Tensor& a, const Tensor& b);  // a == b
Tensor not_equal(const Tensor& a, const Tensor& b);  // a != b
Tensor less(const Tensor& a, const Tensor& b);  // a < b
Tensor less_equal(const Tensor& a, const Tensor& b);  // a <= b
Tensor greater(const Tensor& a, const Tensor& b);  // a > b
Tensor greater_equal(const Tensor& a, const Tensor& b);  // a >= b
Tensor logical_not(const Tensor& a);  // !a, elementwise

// ---- elementwise unary
// exp, log, sqrt, rsqrt, tanh, sigmoid, softplus and gelu of integer or bool tensors are
// default_float_dtype(); neg, abs, square, sign, relu and clip keep integer dtypes (bools:
// abs is the identity, neg throws DTypeError, the others compute in int32).
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);  // e^x
Tensor log(const Tensor& x);  // natural logarithm; -inf at 0, NaN below
Tensor sqrt(const Tensor& x);  // square root; NaN below 0
Tensor rsqrt(const Tensor& x);  // 1 / sqrt(x)
Tensor abs(const Tensor& x);  // |x|; gradient sign(x), 0 at 0
Tensor square(const Tensor& x);  // x * x
Tensor sign(const Tensor& x);  // no gradient (zero almost everywhere)
Tensor sin(const Tensor& x);  // sine (radians)
Tensor cos(const Tensor& x);  // cosine (radians)
Tensor tanh(const Tensor& x);  // hyperbolic tangent
Tensor sigmoid(const Tensor& x);  // 1 / (1 + exp(-x)), stable for large |x|
Tensor relu(const Tensor& x);  // slope 0 at 0, as jax.nn.relu
Tensor softplus(const Tensor& x);  // log(1 + exp(x)), stable for large |x|
Tensor gelu(const Tensor& x, bool approximate = true);  // tanh form by default (jax.nn.gelu)
Tensor clip(const Tensor& x, double lo, double hi);  // min(max(x, lo), hi); slope 1/2 on a bound, as jnp.clip

// ---- casts
Tensor cast(const Tensor& x, DType dtype);  // gradient flows between floating dtypes

// ---- reductions (keepdims keeps reduced axes as size 1)
Tensor sum(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
// sum / count over the axes
Tensor mean(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor max(const Tensor& x, const Axes& axes = {}, bool keepdims = false);  // ties share the gradient
Tensor min(const Tensor& x, const Axes& axes = {}, bool keepdims = false);  // ties share the gradient
// log(sum(exp(x))), stable (max subtracted)
Tensor logsumexp(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
// variance: mean of squared deviations, divided by count - ddof
Tensor var(const Tensor& x, const Axes& axes = {}, bool keepdims = false, std::int64_t ddof = 0);
Tensor argmax(const Tensor& x, std::int64_t axis);  // Int64, no gradient
Tensor softmax(const Tensor& x, std::int64_t axis = -1);  // exp(x) / sum(exp(x)) along axis, stable
Tensor log_softmax(const Tensor& x, std::int64_t axis = -1);  // x - logsumexp(x) along axis
// Sums `x` down to `shape` (the inverse of broadcasting), for VJPs of broadcasting ops.
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- linear algebra
// Batched matrix product with NumPy matmul rules: 1-D operands are promoted and
// the batch dims broadcast. float32/float64 go to cblas.
Tensor matmul(const Tensor& a, const Tensor& b);

// ---- attention (flax.linen.dot_product_attention's pieces; layers/attention.hpp composes them)
// In Flax's layout, with batch... the same for both operands:
//   attention_scores(q [batch..., Q, H, D], k [batch..., K, H, D]) -> [batch..., H, Q, K]
//     = scale * einsum('...qhd,...khd->...hqk', q, k)
//   attention_values(w [batch..., H, Q, K], v [batch..., K, H, D]) -> [batch..., Q, H, D]
//     = scale * einsum('...hqk,...khd->...qhd', w, v)
// computed without transposes, in float32 for 16-bit floats. ShapeError on other shapes.
Tensor attention_scores(const Tensor& query, const Tensor& key, double scale = 1.0);
Tensor attention_values(const Tensor& weights, const Tensor& value, double scale = 1.0);  // shapes above
// softmax over the last axis of where(mask, x, lowest) in one op, lowest the dtype's
// most negative finite value (Flax fills masked scores with jnp.finfo(dtype).min; a
// row masked everywhere is uniform). `mask`: any dtype, nonzero keeps, broadcastable
// to x (ShapeError otherwise); undefined for none. Masked entries get no gradient.
Tensor masked_softmax(const Tensor& x, const Tensor& mask);

// -log softmax(logits)[label] per example, as one op: logits (..., K) float32 or
// float64, integer labels (...) in [0, K), result (...) in logits' dtype. The fused
// kernel computes loss and log-normaliser in one pass; the VJP is
// g * (softmax(logits) - one_hot(label)). losses::softmax_cross_entropy builds on it
// (shape checks, float32 at least, reductions).
Tensor integer_label_cross_entropy(const Tensor& logits, const Tensor& labels);

// ---- shape and indexing
Tensor reshape(const Tensor& x, const Shape& shape);  // one -1 entry is inferred
// numpy.transpose; ShapeError if not a permutation
Tensor transpose(const Tensor& x, const std::vector<std::int64_t>& permutation);
Tensor transpose(const Tensor& x);  // reverses the axes
Tensor swapaxes(const Tensor& x, std::int64_t a, std::int64_t b);  // exchanges two axes (negative count from the end)
Tensor broadcast_to(const Tensor& x, const Shape& shape);  // NumPy broadcasting; ShapeError if impossible
Tensor squeeze(const Tensor& x, const Axes& axes = {});  // empty = every size-1 axis
Tensor unsqueeze(const Tensor& x, std::int64_t axis);  // inserts a size-1 axis at `axis`
Tensor flatten(const Tensor& x, std::int64_t start_axis = 0, std::int64_t end_axis = -1);  // merges axes start..end
// Python-style slice along one axis: [start, stop) with step (step may be negative;
// out-of-range bounds clamp as in Python, so INT64_MIN / INT64_MAX act as open ends).
Tensor slice(const Tensor& x, std::int64_t axis, std::int64_t start, std::int64_t stop, std::int64_t step = 1);
Tensor concat(const std::vector<Tensor>& xs, std::int64_t axis = 0);  // joins along an existing axis
Tensor stack(const std::vector<Tensor>& xs, std::int64_t axis = 0);  // joins equal shapes along a new axis

// pads[i] = (lo, hi) for axis i; negative values crop. Wrap and Reflect follow
// numpy.pad (mode="wrap" / "reflect") including pads larger than the axis.
// PadMode: core/pad_mode.hpp.
Tensor pad(const Tensor& x, const PadPairs& pads,
           PadMode mode = PadMode::Constant, double value = 0.0);

// take(x, indices, axis): numpy.take with integer indices (negative wrap once; out of range throws).
Tensor take(const Tensor& x, const Tensor& indices, std::int64_t axis = 0);
// numpy.take_along_axis: indices has x's rank.
Tensor take_along_axis(const Tensor& x, const Tensor& indices, std::int64_t axis);
// jax.nn.one_hot: int32/int64 labels (...) -> (..., num_classes) of `dtype`; out-of-range
// labels give all-zero rows; no gradient. DTypeError for other label dtypes, ValueError
// for num_classes < 0.
Tensor one_hot(const Tensor& labels, std::int64_t num_classes, DType dtype = DType::Float32);

// ---- operators (differentiable); scalars are weak
Tensor operator+(const Tensor& a, const Tensor& b);  // add(a, b)
Tensor operator-(const Tensor& a, const Tensor& b);  // sub(a, b)
Tensor operator*(const Tensor& a, const Tensor& b);  // mul(a, b)
Tensor operator/(const Tensor& a, const Tensor& b);  // div(a, b)
Tensor operator-(const Tensor& a);  // neg(a)
// A 0-d tensor holding a weak C++ scalar materialised next to `like`:
// its dtype is promote_with_scalar(like.dtype(), is_floating_scalar).
Tensor weak_scalar(double value, bool is_floating_scalar, const Tensor& like);

template <class S>
concept Scalar = std::is_arithmetic_v<S>;

// The operator of scalar_op.
enum class ScalarOp { Add, Sub, Mul, Div };
// t OP s, or s OP t when scalar_first, for a weak scalar s: the same result (and
// gradient) as with weak_scalar(s, ...), without making the scalar a tensor.
Tensor scalar_op(ScalarOp op, const Tensor& t, double s, bool s_is_floating, bool scalar_first);

#define XGRAD_SCALAR_OPERATOR(OP, NAME)                                                               \
  template <Scalar S>                                                                                 \
  Tensor operator OP(const Tensor& a, S b) {                                                          \
    return scalar_op(ScalarOp::NAME, a, static_cast<double>(b), std::is_floating_point_v<S>, false);  \
  }                                                                                                   \
  template <Scalar S>                                                                                 \
  Tensor operator OP(S a, const Tensor& b) {                                                          \
    return scalar_op(ScalarOp::NAME, b, static_cast<double>(a), std::is_floating_point_v<S>, true);   \
  }
XGRAD_SCALAR_OPERATOR(+, Add)
XGRAD_SCALAR_OPERATOR(-, Sub)
XGRAD_SCALAR_OPERATOR(*, Mul)
XGRAD_SCALAR_OPERATOR(/, Div)
#undef XGRAD_SCALAR_OPERATOR

}  // namespace xgrad
