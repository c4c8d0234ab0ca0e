// Binary, comparison and selection kernels.
#include <algorithm>
#include <array>
#include <cmath>
#include <type_traits>

#include <fmt/format.h>

#include "core/kernels/broadcast.hpp"
#include "core/kernels/convert16.hpp"
#include "core/kernels/elementwise.hpp"
#include "core/tensor_impl.hpp"
#include "core/threading.hpp"

namespace xgrad::kernels {

Tensor cast(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = empty(x.shape(), dtype);
  visit_dtype(dtype, [&](auto to_tag) {
    using To = decltype(to_tag);
    To* po = out.data<To>();
    visit_dtype(x.dtype(), [&](auto from_tag) {
      using From = decltype(from_tag);
      const From* px = x.data<From>();
      const std::int64_t n = x.numel();
      if constexpr (is_float16_v<From> && std::is_same_v<To, float>) widen(px, po, n);
      else if constexpr (std::is_same_v<From, float> && is_float16_v<To>) narrow(px, po, n);
      else for (std::int64_t i = 0; i < n; ++i) po[i] = convert_element<To>(px[i]);
    });
  });
  return out;
}

namespace {

template <class V>
inline constexpr bool is_integer_v = std::is_integral_v<V> && !std::is_same_v<V, bool>;

// Integer arithmetic wraps around like XLA's; signed overflow is undefined in
// C++, so it runs in the unsigned type (whose conversion back is modular in C++20).
template <class V>
using Unsigned = std::make_unsigned_t<V>;

// The binary ops on compute-type values (bool: add is or, mul is and, as in jnp).
struct Add {
  template <class V>
  V operator()(V x, V y) const {
    if constexpr (std::is_same_v<V, bool>) return x || y;
    else if constexpr (is_integer_v<V>) return static_cast<V>(Unsigned<V>(x) + Unsigned<V>(y));
    else return x + y;
  }
};
struct Sub {
  template <class V>
  V operator()(V x, V y) const {
    if constexpr (is_integer_v<V>) return static_cast<V>(Unsigned<V>(x) - Unsigned<V>(y));
    else return x - y;
  }
};
struct Mul {
  template <class V>
  V operator()(V x, V y) const {
    if constexpr (std::is_same_v<V, bool>) return x && y;
    else if constexpr (is_integer_v<V>) return static_cast<V>(Unsigned<V>(x) * Unsigned<V>(y));
    else return x * y;
  }
};
// Exponentiation by squaring for integers; NumPy's rule for negative exponents.
struct Pow {
  template <class V>
  V operator()(V x, V y) const {
    if constexpr (is_integer_v<V>) {
      if (y < 0)
        throw ValueError(fmt::format("pow: integers cannot be raised to negative integer powers (got exponent {}); "
                                     "cast the base to a floating dtype first", y));
      Unsigned<V> result = 1, base = Unsigned<V>(x);
      for (auto e = Unsigned<V>(y); e != 0; e >>= 1, base *= base)
        if (e & 1u) result *= base;
      return static_cast<V>(result);
    } else {
      return std::pow(x, y);
    }
  }
};
// NaN wins, as in jnp.maximum / jnp.minimum (x != x only for NaN).
struct Maximum {
  template <class V>
  V operator()(V x, V y) const { return x > y || x != x ? x : y; }
};
struct Minimum {
  template <class V>
  V operator()(V x, V y) const { return x < y || x != x ? x : y; }
};

// out[j] = f(a[j * sa], b[j * sb]) for j < n; the steps are 0 (a broadcast value) or
// 1 (contiguous), and each case is its own loop so that the compiler vectorises it.
template <class R, class V, class F>
void loops(const V* a, std::int64_t sa, const V* b, std::int64_t sb, R* out, std::int64_t n, F f) {
  if (sa != 0 && sb != 0) {
    for (std::int64_t j = 0; j < n; ++j) out[j] = f(a[j], b[j]);
  } else if (sa != 0) {
    const V y = *b;
    for (std::int64_t j = 0; j < n; ++j) out[j] = f(a[j], y);
  } else if (sb != 0) {
    const V x = *a;
    for (std::int64_t j = 0; j < n; ++j) out[j] = f(x, b[j]);
  } else {
    const R v = f(*a, *b);
    for (std::int64_t j = 0; j < n; ++j) out[j] = v;
  }
}

// The same on storage values. f works on compute-type values: 16-bit operands are
// widened to float32 a stage at a time and the results rounded back on store.
template <class Out, class In, class F>
void run(const In* a, std::int64_t sa, const In* b, std::int64_t sb, Out* out, std::int64_t n, F f) {
  if constexpr (!is_float16_v<In>) {
    loops(a, sa, b, sb, out, n, f);
  } else {
    using R = decltype(f(0.0f, 0.0f));
    float av[kStageLength], bv[kStageLength];
    R rv[kStageLength];
    if (sa == 0) widen(a, av, 1);
    if (sb == 0) widen(b, bv, 1);
    for (std::int64_t j = 0; j < n; j += kStageLength) {
      const std::int64_t m = std::min(kStageLength, n - j);
      if (sa != 0) widen(a + j, av, m);
      if (sb != 0) widen(b + j, bv, m);
      loops(av, sa, bv, sb, rv, m, f);
      if constexpr (is_float16_v<Out>) narrow(rv, out + j, m);
      else std::copy(rv, rv + m, out + j);
    }
  }
}

// Two operands cast to a common dtype (no copy when already there), their broadcast
// shape and how they map onto it, worked out once per op.
class Operands {
 public:
  Operands(const Tensor& a, const Tensor& b, DType dtype, const char* op) : a_(&a), b_(&b) {
    const Shape& sa = a.shape();
    const Shape& sb = b.shape();
    if (sa == sb) {
      shape_ = &sa;
      layout_ = Layout::Same;
    } else {
      broadcast_ = broadcast_shapes(sa, sb, op);
      shape_ = &broadcast_;
      layout_ = sa == broadcast_ && numel(sb) == 1   ? Layout::ScalarB
                : sb == broadcast_ && numel(sa) == 1 ? Layout::ScalarA
                                                     : Layout::General;
    }
    if (a.dtype() != dtype) a_ = &(cast_a_ = cast(a, dtype));
    if (b.dtype() != dtype) b_ = &(cast_b_ = cast(b, dtype));
  }
  const Shape& shape() const { return *shape_; }

  // out = f(a, b) elementwise, with f on the compute type of In.
  template <class Out, class In, class F>
  void apply(Tensor& out, F f) const {
    const In* pa = raw<In>(*a_);
    const In* pb = raw<In>(*b_);
    Out* po = raw<Out>(out);
    const std::int64_t n = numel(*shape_);
    switch (layout_) {
      case Layout::Same: return run(pa, 1, pb, 1, po, n, f);
      case Layout::ScalarB: return run(pa, 1, pb, 0, po, n, f);
      case Layout::ScalarA: return run(pa, 0, pb, 1, po, n, f);
      case Layout::General: break;
    }
    const Shape& shape = *shape_;
    for_each_broadcast_run<2>(shape, {broadcast_strides(a_->shape(), shape), broadcast_strides(b_->shape(), shape)},
                              [&](std::int64_t o, const auto& off, std::int64_t count, const auto& step) {
                                run(pa + off[0], step[0], pb + off[1], step[1], po + o, count, f);
                              });
  }

 private:
  enum class Layout { Same, ScalarB, ScalarA, General };
  template <class T>
  static T* raw(const Tensor& t) { return storage_array<T>(*t.impl()).data(); }

  const Tensor* a_;
  const Tensor* b_;
  Tensor cast_a_, cast_b_;
  Shape broadcast_;
  const Shape* shape_;
  Layout layout_;
};

const char* binary_name(Binary op) {
  switch (op) {
    case Binary::Add: return "add";
    case Binary::Sub: return "sub";
    case Binary::Mul: return "mul";
    case Binary::Div: return "div";
    case Binary::Pow: return "pow";
    case Binary::Maximum: return "maximum";
    case Binary::Minimum: return "minimum";
  }
  return "binary";
}

const char* compare_name(Compare op) {
  switch (op) {
    case Compare::Equal: return "equal";
    case Compare::NotEqual: return "not_equal";
    case Compare::Less: return "less";
    case Compare::LessEqual: return "less_equal";
    case Compare::Greater: return "greater";
    case Compare::GreaterEqual: return "greater_equal";
  }
  return "compare";
}

DType binary_dtype(Binary op, DType a, DType b, const Shape& sa, const Shape& sb) {
  const DType d = promote_types(a, b);
  switch (op) {
    case Binary::Sub:
      if (d == DType::Bool)
        throw DTypeError(fmt::format("sub: subtracting bool tensors is not supported (shapes {} and {}), as in "
                                     "jnp.subtract; use logical_not / not_equal, or cast to an integer dtype first",
                                     shape_str(sa), shape_str(sb)));
      return d;
    case Binary::Div: return is_floating(d) ? d : default_float_dtype();
    case Binary::Pow: return d == DType::Bool ? DType::Int32 : d;
    default: return d;
  }
}

// Calls apply(f) with op's functor f on compute-type values of T.
template <class T, class Apply>
void binary_loop(Binary op, Apply&& apply) {
  using V = compute_t<T>;
  switch (op) {
    case Binary::Add: return apply(Add{});
    case Binary::Mul: return apply(Mul{});
    case Binary::Maximum: return apply(Maximum{});
    case Binary::Minimum: return apply(Minimum{});
    default: break;
  }
  if constexpr (!std::is_same_v<T, bool>) {
    switch (op) {
      case Binary::Sub: return apply(Sub{});
      case Binary::Pow: return apply(Pow{});
      case Binary::Div:
        if constexpr (std::is_floating_point_v<V>) return apply([](V x, V y) { return x / y; });
        break;
      default: break;
    }
  }
  throw DTypeError(fmt::format("{}: not defined for {}", binary_name(op), dtype_name(dtype_v<T>)));
}

}  // namespace

Tensor binary(Binary op, const Tensor& a, const Tensor& b) {
  const DType dtype = binary_dtype(op, a.dtype(), b.dtype(), a.shape(), b.shape());
  const Operands operands(a, b, dtype, binary_name(op));
  Tensor out = empty(operands.shape(), dtype);
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    binary_loop<T>(op, [&](auto f) { operands.apply<T, T>(out, f); });
  });
  return out;
}

Tensor binary_scalar(Binary op, const Tensor& a, double s, bool s_is_floating, bool scalar_first) {
  const DType dtype = binary_dtype(op, a.dtype(), promote_with_scalar(a.dtype(), s_is_floating), a.shape(), {});
  const Tensor ca = cast(a, dtype);
  Tensor out = empty(a.shape(), dtype);
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T weak = convert_element<T>(s);  // the scalar materialises in the result dtype first
    const T* pa = ca.data<T>();
    T* po = out.data<T>();
    const std::int64_t n = out.numel();
    binary_loop<T>(op, [&](auto f) {
      if (scalar_first) run(&weak, 0, pa, 1, po, n, f);
      else run(pa, 1, &weak, 0, po, n, f);
    });
  });
  return out;
}

Tensor compare(Compare op, const Tensor& a, const Tensor& b) {
  const DType dtype = promote_types(a.dtype(), b.dtype());
  const Operands operands(a, b, dtype, compare_name(op));
  Tensor out = empty(operands.shape(), DType::Bool);
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    switch (op) {
      case Compare::Equal: return operands.apply<bool, T>(out, [](auto x, auto y) { return x == y; });
      case Compare::NotEqual: return operands.apply<bool, T>(out, [](auto x, auto y) { return x != y; });
      case Compare::Less: return operands.apply<bool, T>(out, [](auto x, auto y) { return x < y; });
      case Compare::LessEqual: return operands.apply<bool, T>(out, [](auto x, auto y) { return x <= y; });
      case Compare::Greater: return operands.apply<bool, T>(out, [](auto x, auto y) { return x > y; });
      case Compare::GreaterEqual: return operands.apply<bool, T>(out, [](auto x, auto y) { return x >= y; });
    }
  });
  return out;
}

namespace {

// Calls g with std::integral_constant 0 or 1 for a run's step, so that loops written
// with it have compile-time strides (and vectorise).
template <class G>
void with_step(std::int64_t step, G&& g) {
  if (step == 0) g(std::integral_constant<std::int64_t, 0>{});
  else g(std::integral_constant<std::int64_t, 1>{});
}

// out[j] = f(x[j kx], y[j ky], z[j kz]) with compile-time steps; the output never
// aliases an input (restrict spares the compiler a run-time overlap check).
template <class Out, class X, class Y, class Z, class F, class KX, class KY, class KZ>
void ternary_loop(const X* __restrict x, const Y* __restrict y, const Z* __restrict z, Out* __restrict out,
                  std::int64_t n, F f, KX kx, KY ky, KZ kz) {
  for (std::int64_t j = 0; j < n; ++j) out[j] = f(x[j * kx], y[j * ky], z[j * kz]);
}

// A bool is read through its byte: GCC vectorises selects on `byte != 0`, not on bool.
template <class T>
using Loaded = std::conditional_t<std::is_same_v<T, bool>, unsigned char, T>;

// out = f(x, y, z) over the broadcast of three operands of storage types X, Y, Z, with
// f taking them as Loaded<X>, Loaded<Y>, Loaded<Z>.
template <class Out, class X, class Y, class Z, class F>
void apply_ternary(const Tensor& x, const Tensor& y, const Tensor& z, Tensor& out, F f) {
  const auto* px = reinterpret_cast<const Loaded<X>*>(x.data<X>());
  const Y* py = y.data<Y>();
  const Z* pz = z.data<Z>();
  Out* po = out.data<Out>();
  const Shape& shape = out.shape();
  const std::array<Shape, 3> strides = {broadcast_strides(x.shape(), shape), broadcast_strides(y.shape(), shape),
                                        broadcast_strides(z.shape(), shape)};
  for_each_broadcast_run<3>(
      shape, strides,
      [&](std::int64_t o, const auto& off, std::int64_t count, const auto& step) {
        with_step(step[0], [&](auto kx) {
          with_step(step[1], [&](auto ky) {
            with_step(step[2], [&](auto kz) {
              ternary_loop(px + off[0], py + off[1], pz + off[2], po + o, count, f, kx, ky, kz);
            });
          });
        });
      });
}

Shape broadcast_three(const Tensor& x, const Tensor& y, const Tensor& z, const char* op, const char* names) {
  try {
    return broadcast_shapes(broadcast_shapes(x.shape(), y.shape(), op), z.shape(), op);
  } catch (const ShapeError&) {
    throw ShapeError(fmt::format("{}: {} shapes {}, {} and {} cannot be broadcast together", op, names,
                                 shape_str(x.shape()), shape_str(y.shape()), shape_str(z.shape())));
  }
}

}  // namespace

Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b) {
  if (condition.dtype() != DType::Bool)
    throw DTypeError(fmt::format("where: the condition must be a bool tensor, got {} {} (compare it first, "
                                 "e.g. not_equal(c, 0))",
                                 dtype_name(condition.dtype()), shape_str(condition.shape())));
  const Shape shape = broadcast_three(condition, a, b, "where", "condition, x and y");
  const DType dtype = promote_types(a.dtype(), b.dtype());
  const Tensor ca = cast(a, dtype), cb = cast(b, dtype);
  Tensor out = empty(shape, dtype);
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    apply_ternary<T, bool, T, T>(condition, ca, cb, out,
                                 [](unsigned char c, auto x, auto y) { return c != 0 ? x : y; });
  });
  return out;
}

Tensor tie_weight(const Tensor& x, const Tensor& z, const Tensor& y) {
  const DType dtype = z.dtype();
  const Tensor cx = cast(x, dtype), cy = cast(y, dtype);
  Tensor out = empty(broadcast_three(cx, z, cy, "tie_weight", "x, z and y"), dtype);
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using V = compute_t<T>;
    apply_ternary<T, T, T, T>(cx, z, cy, out, [](T a, T m, T b) {
      const V vm = static_cast<V>(m);
      return static_cast<V>(a) != vm ? T(V(0)) : static_cast<V>(b) == vm ? T(V(0.5)) : T(V(1));
    });
  });
  return out;
}

Tensor relu_grad(const Tensor& g, const Tensor& out) {
  if (g.shape() != out.shape() || g.dtype() != out.dtype())
    throw ShapeError(fmt::format("relu_grad: cotangent {} {} does not match output {} {}", dtype_name(g.dtype()),
                                 shape_str(g.shape()), dtype_name(out.dtype()), shape_str(out.shape())));
  Tensor result = empty(g.shape(), g.dtype());
  visit_dtype(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using V = compute_t<T>;
    const T* __restrict gp = g.data<T>();
    const T* __restrict op = out.data<T>();
    T* __restrict rp = result.data<T>();
    parallel_for_elements(g.numel(), [&](std::int64_t begin, std::int64_t end) {
      if constexpr (is_float16_v<T>) {
        // out > 0 read from the bits, without widening each element (a scalar conversion
        // per element made this 10% of a float16 training step): sign clear, not zero,
        // and at most +inf (above it are the NaNs). (bits - 1) wraps 0 out of range.
        constexpr std::uint16_t positive_inf = std::is_same_v<T, half> ? 0x7C00u : 0x7F80u;
        for (std::int64_t i = begin; i < end; ++i) {
          const T gi = gp[i];
          rp[i] = static_cast<std::uint16_t>(op[i].bits - 1u) < positive_inf ? gi : T{};
        }
      } else {
        // g is loaded unconditionally, so the select vectorises (a load under the condition does not).
        for (std::int64_t i = begin; i < end; ++i) {
          const T gi = gp[i];
          rp[i] = static_cast<V>(op[i]) > V(0) ? gi : T(V(0));
        }
      }
    });
  });
  return result;
}

std::optional<std::pair<Tensor, Tensor>> relu_with_tangent(const Tensor& x, const Tensor& t) {
  if (x.shape() != t.shape() || x.dtype() != t.dtype() ||
      (x.dtype() != DType::Float32 && x.dtype() != DType::Float64))
    return std::nullopt;
  Tensor out = empty(x.shape(), x.dtype()), out_tangent = empty(x.shape(), x.dtype());
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<T>) {
      const T* __restrict xp = x.data<T>();
      const T* __restrict tp = t.data<T>();
      T* __restrict op = out.data<T>();
      T* __restrict otp = out_tangent.data<T>();
      parallel_for_elements(x.numel(), [&](std::int64_t begin, std::int64_t end) {
        // As Unary::Relu (NaN passes) and relu_grad (out > 0, so NaN gives 0); both selects vectorise.
        for (std::int64_t i = begin; i < end; ++i) {
          const T v = xp[i], ti = tp[i];
          op[i] = v > T(0) || v != v ? v : T(0);
          otp[i] = v > T(0) ? ti : T(0);
        }
      });
    }
  });
  return std::make_pair(out, out_tangent);
}

}  // namespace xgrad::kernels
