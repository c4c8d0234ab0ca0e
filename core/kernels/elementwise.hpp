// Elementwise kernels (no tape): dtype rules, broadcasting, tight loops.
//
// dtype rules follow jax.numpy (docs/convlocal.md §7.2): binary ops promote both operands with
// promote_types; 16-bit floats compute in float32 and round on store.
// Integer arithmetic wraps around (two's complement), as in JAX.
#pragma once

#include <optional>
#include <utility>

#include "core/tensor.hpp"

namespace xgrad::kernels {

Tensor cast(const Tensor& x, DType dtype);  // returns x itself when the dtype already matches

enum class Binary { Add, Sub, Mul, Div, Pow, Maximum, Minimum };

// Promotes, broadcasts and applies op. The result dtype is promote_types(a, b) except:
//   Add/Mul on bool are logical or/and; Sub on bool throws DTypeError (as jnp.subtract);
//   Div is true division (a non-floating result becomes default_float_dtype());
//   Pow on bool computes in Int32; integer Pow with a negative exponent throws ValueError.
// Maximum/Minimum propagate NaN.
Tensor binary(Binary op, const Tensor& a, const Tensor& b);

// a op s (s op a when scalar_first) for a weak C++ scalar s: the result of
// binary(op, a, weak scalar tensor) without materialising the scalar as a tensor.
Tensor binary_scalar(Binary op, const Tensor& a, double s, bool s_is_floating, bool scalar_first);

// x ** exponent with a weak float exponent: result dtype promote_with_scalar(x, true).
Tensor pow_scalar(const Tensor& x, double exponent);

enum class Compare { Equal, NotEqual, Less, LessEqual, Greater, GreaterEqual };

// Compares in the promoted dtype; Bool result.
Tensor compare(Compare op, const Tensor& a, const Tensor& b);

// condition ? a : b, all three broadcast together; condition must be Bool.
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);

// JAX's balanced-equality weight for the gradient of max/min: 1 where x == z != y,
// 1/2 where x == z == y, 0 elsewhere, in z's dtype (z is the max or min of x and y).
Tensor tie_weight(const Tensor& x, const Tensor& z, const Tensor& y);

// g where out > 0, else 0, in g's dtype: relu's VJP from its saved output in one
// pass (NaN in out gives 0, as where(out > 0, g, 0)). g and out must have the same
// shape and dtype.
Tensor relu_grad(const Tensor& g, const Tensor& out);

// relu(x) and its tangent relu_grad(t, relu(x)) in one pass over x and t, for forward
// mode (same values as the two kernels). x and t: the same shape and dtype, float32
// or float64 (std::nullopt otherwise: the caller runs the two kernels).
std::optional<std::pair<Tensor, Tensor>> relu_with_tangent(const Tensor& x, const Tensor& t);

enum class Unary {
  // Keep the dtype (Neg rejects bool; Abs of bool is the identity).
  Neg, Abs,
  // Keep integer dtypes; bool computes in Int32 (JAX's numeric promotion).
  Square, Sign, Relu,
  // Floating results: integer and bool inputs become default_float_dtype().
  Exp, Log, Sqrt, Rsqrt, Sin, Cos, Tanh, Sigmoid, Softplus, GeluTanh, GeluErf,
  GeluTanhDerivative, GeluErfDerivative,  // d gelu / dx, fused (the VJPs' hot path)
  // Bool result: x == 0.
  LogicalNot,
};

Tensor unary(Unary op, const Tensor& x);

// min(max(x, lo), hi) in x's dtype (bool computes in Int32; integer tensors clamp
// to ceil(lo) and floor(hi)). NaN stays NaN.
Tensor clip(const Tensor& x, double lo, double hi);

}  // namespace xgrad::kernels
