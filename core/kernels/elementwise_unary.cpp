// Unary elementwise kernels, clip and pow with a scalar exponent.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <type_traits>

#include <fmt/format.h>

#include "core/kernels/convert16.hpp"
#include "core/kernels/elementwise.hpp"
#include "core/tensor_impl.hpp"
#include "core/threading.hpp"

namespace xgrad::kernels {

namespace {

template <class V>
inline constexpr bool is_integer_v = std::is_integral_v<V> && !std::is_same_v<V, bool>;

// out[i] = f(x[i]) with f on the compute type: 16-bit inputs are widened to float32
// a stage at a time and the results rounded back on store.
template <class Out, class In, class F>
Tensor map(const Tensor& x, DType out_dtype, F f) {
  Tensor out = empty(x.shape(), out_dtype);
  const In* px = x.data<In>();
  Out* po = out.data<Out>();
  parallel_for_elements(x.numel(), [&](std::int64_t begin, std::int64_t end) {
    if constexpr (!is_float16_v<In>) {
      for (std::int64_t i = begin; i < end; ++i) po[i] = static_cast<Out>(f(px[i]));
    } else {
      using R = decltype(f(0.0f));
      float xv[kStageLength];
      R rv[kStageLength];
      for (std::int64_t j = begin; j < end; j += kStageLength) {
        const std::int64_t m = std::min(kStageLength, end - j);
        widen(px + j, xv, m);
        for (std::int64_t k = 0; k < m; ++k) rv[k] = f(xv[k]);
        if constexpr (is_float16_v<Out>) narrow(rv, po + j, m);
        else std::copy(rv, rv + m, po + j);
      }
    }
  });
  return out;
}

const char* unary_name(Unary op) {
  switch (op) {
    case Unary::Neg: return "neg";
    case Unary::Abs: return "abs";
    case Unary::Square: return "square";
    case Unary::Sign: return "sign";
    case Unary::Relu: return "relu";
    case Unary::Exp: return "exp";
    case Unary::Log: return "log";
    case Unary::Sqrt: return "sqrt";
    case Unary::Rsqrt: return "rsqrt";
    case Unary::Sin: return "sin";
    case Unary::Cos: return "cos";
    case Unary::Tanh: return "tanh";
    case Unary::Sigmoid: return "sigmoid";
    case Unary::Softplus: return "softplus";
    case Unary::GeluTanh: return "gelu";
    case Unary::GeluErf: return "gelu";
    case Unary::GeluTanhDerivative: return "gelu_derivative";
    case Unary::GeluErfDerivative: return "gelu_derivative";
    case Unary::LogicalNot: return "logical_not";
  }
  return "unary";
}

// Integer and bool ops: integers keep their dtype and wrap around (in the unsigned
// type, since signed overflow is undefined in C++).
template <class V>
V integer_op(Unary op, V x) {
  using U = std::make_unsigned_t<V>;
  switch (op) {
    case Unary::Neg: return static_cast<V>(U(0) - U(x));
    case Unary::Abs: return x < 0 ? static_cast<V>(U(0) - U(x)) : x;
    case Unary::Square: return static_cast<V>(U(x) * U(x));
    case Unary::Sign: return static_cast<V>((x > 0) - (x < 0));
    case Unary::Relu: return x > 0 ? x : V(0);
    default: return x;
  }
}

template <class T>
Tensor integer_unary(Unary op, const Tensor& x) {
  using V = compute_t<T>;
  switch (op) {
    case Unary::Neg: return map<T, T>(x, x.dtype(), [](V v) { return integer_op(Unary::Neg, v); });
    case Unary::Abs: return map<T, T>(x, x.dtype(), [](V v) { return integer_op(Unary::Abs, v); });
    case Unary::Square: return map<T, T>(x, x.dtype(), [](V v) { return integer_op(Unary::Square, v); });
    case Unary::Sign: return map<T, T>(x, x.dtype(), [](V v) { return integer_op(Unary::Sign, v); });
    case Unary::Relu: return map<T, T>(x, x.dtype(), [](V v) { return integer_op(Unary::Relu, v); });
    default: throw DTypeError(fmt::format("{}: not defined for {}", unary_name(op), dtype_name(x.dtype())));
  }
}

// 1 / (1 + e^-v), taking exp of a non-positive argument only, so nothing overflows.
template <class V>
V sigmoid(V v) {
  if (v >= 0) return V(1) / (V(1) + std::exp(-v));
  const V e = std::exp(v);
  return e / (V(1) + e);
}

template <class T>
Tensor floating_unary(Unary op, const Tensor& x) {
  using V = compute_t<T>;
  constexpr V half_one = V(0.5);
  const DType d = x.dtype();
  switch (op) {
    case Unary::Neg: return map<T, T>(x, d, [](V v) { return -v; });
    case Unary::Abs: return map<T, T>(x, d, [](V v) { return std::abs(v); });
    case Unary::Square: return map<T, T>(x, d, [](V v) { return v * v; });
    // sign(±0) = ±0 and sign(NaN) = NaN, as jnp.sign.
    case Unary::Sign: return map<T, T>(x, d, [](V v) { return v > 0 ? V(1) : v < 0 ? V(-1) : v; });
    case Unary::Relu: return map<T, T>(x, d, [](V v) { return v > 0 || v != v ? v : V(0); });
    case Unary::Exp: return map<T, T>(x, d, [](V v) { return std::exp(v); });
    case Unary::Log: return map<T, T>(x, d, [](V v) { return std::log(v); });
    case Unary::Sqrt: return map<T, T>(x, d, [](V v) { return std::sqrt(v); });
    case Unary::Rsqrt: return map<T, T>(x, d, [](V v) { return V(1) / std::sqrt(v); });
    case Unary::Sin: return map<T, T>(x, d, [](V v) { return std::sin(v); });
    case Unary::Cos: return map<T, T>(x, d, [](V v) { return std::cos(v); });
    case Unary::Tanh: return map<T, T>(x, d, [](V v) { return std::tanh(v); });
    case Unary::Sigmoid: return map<T, T>(x, d, [](V v) { return sigmoid(v); });
    // log(1 + e^x) = max(x, 0) + log1p(e^-|x|): exact for large |x|, no overflow.
    case Unary::Softplus:
      return map<T, T>(x, d, [](V v) { return std::max(v, V(0)) + std::log1p(std::exp(-std::abs(v))); });
    // (1 + tanh(u)) / 2 = sigmoid(2u): one exp instead of a (much slower) tanh.
    case Unary::GeluTanh:
      return map<T, T>(x, d, [](V v) {
        const V two_c = V(2) * std::numbers::sqrt2_v<V> * std::numbers::inv_sqrtpi_v<V>;  // 2 sqrt(2 / pi)
        return v * sigmoid(two_c * (v + V(0.044715) * v * v * v));
      });
    case Unary::GeluErf:
      return map<T, T>(x, d, [](V v) { return half_one * v * (V(1) + std::erf(v / std::numbers::sqrt2_v<V>)); });
    // The formulas are derived next to gelu's VJP in autograd/ops_unary.cpp.
    case Unary::GeluTanhDerivative:
      return map<T, T>(x, d, [](V v) {
        const V c = std::numbers::sqrt2_v<V> * std::numbers::inv_sqrtpi_v<V>;
        const V k = V(0.044715);
        const V s = sigmoid(V(2) * c * (v + k * v * v * v));
        return s + V(2) * c * v * s * (V(1) - s) * (V(1) + V(3) * k * v * v);
      });
    case Unary::GeluErfDerivative:
      return map<T, T>(x, d, [](V v) {
        const V cdf = half_one * (V(1) + std::erf(v / std::numbers::sqrt2_v<V>));
        const V pdf = std::exp(-half_one * v * v) * half_one * std::numbers::sqrt2_v<V> * std::numbers::inv_sqrtpi_v<V>;
        return cdf + v * pdf;
      });
    case Unary::LogicalNot: break;
  }
  throw DTypeError(fmt::format("{}: not defined for {}", unary_name(op), dtype_name(d)));
}

}  // namespace

Tensor unary(Unary op, const Tensor& x) {
  const DType d = x.dtype();
  if (op == Unary::LogicalNot) {
    return visit_dtype(d, [&](auto tag) {
      using T = decltype(tag);
      return map<bool, T>(x, DType::Bool, [](compute_t<T> v) { return v == compute_t<T>(0); });
    });
  }
  if (is_floating(d)) {
    return visit_dtype(d, [&](auto tag) -> Tensor {
      using T = decltype(tag);
      if constexpr (std::is_floating_point_v<compute_t<T>>) return floating_unary<T>(op, x);
      else return Tensor();  // unreachable: d is floating
    });
  }
  switch (op) {
    case Unary::Neg:
      if (d == DType::Bool)
        throw DTypeError(fmt::format("neg: negating a bool tensor {} is not supported, as in jnp.negative; use "
                                     "logical_not", shape_str(x.shape())));
      break;
    case Unary::Abs:
      if (d == DType::Bool) return x.clone();
      break;
    case Unary::Square:
    case Unary::Sign:
    case Unary::Relu:
      if (d == DType::Bool) return unary(op, cast(x, DType::Int32));
      break;
    default:  // a floating op: integers and bools compute in the default float dtype
      return unary(op, cast(x, default_float_dtype()));
  }
  return d == DType::Int32 ? integer_unary<std::int32_t>(op, x) : integer_unary<std::int64_t>(op, x);
}

namespace {

// A bound for an integer clip: the nearest representable value inside [lo, hi].
template <class V>
V integer_bound(double bound, bool is_lower) {
  const double r = is_lower ? std::ceil(bound) : std::floor(bound);
  const double lowest = static_cast<double>(std::numeric_limits<V>::lowest());
  const double highest = static_cast<double>(std::numeric_limits<V>::max());
  if (std::isnan(r)) throw ValueError("clip: the bounds must not be NaN");
  if (r <= lowest) return std::numeric_limits<V>::lowest();
  if (r >= highest) return std::numeric_limits<V>::max();
  return static_cast<V>(r);
}

}  // namespace

Tensor clip(const Tensor& x, double lo, double hi) {
  if (x.dtype() == DType::Bool) return clip(cast(x, DType::Int32), lo, hi);
  return visit_dtype(x.dtype(), [&](auto tag) -> Tensor {
    using T = decltype(tag);
    using V = compute_t<T>;
    if constexpr (std::is_same_v<T, bool>) {
      return Tensor();  // unreachable: bool computes in Int32 above
    } else {
      // The bounds are weak scalars: they materialise in x's dtype, as in jnp.clip.
      V l, h;
      if constexpr (is_integer_v<V>) {
        l = integer_bound<V>(lo, true);
        h = integer_bound<V>(hi, false);
      } else {
        l = static_cast<V>(convert_element<T>(lo));
        h = static_cast<V>(convert_element<T>(hi));
      }
      // min(max(x, lo), hi): comparisons with NaN are false, so NaN passes through.
      return map<T, T>(x, x.dtype(), [l, h](V v) {
        const V m = v < l ? l : v;
        return m > h ? h : m;
      });
    }
  });
}

Tensor pow_scalar(const Tensor& x, double exponent) {
  const DType dtype = promote_with_scalar(x.dtype(), true);
  const Tensor cx = cast(x, dtype);
  return visit_dtype(dtype, [&](auto tag) -> Tensor {
    using T = decltype(tag);
    using V = compute_t<T>;
    if constexpr (std::is_floating_point_v<V>) {
      const V e = static_cast<V>(exponent);
      if (exponent == 2.0) return map<T, T>(cx, dtype, [](V v) { return v * v; });
      return map<T, T>(cx, dtype, [e](V v) { return std::pow(v, e); });
    } else {
      return Tensor();  // unreachable: a weak float exponent always gives a floating dtype
    }
  });
}

}  // namespace xgrad::kernels
