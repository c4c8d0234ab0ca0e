// Runtime element types and the JAX type-promotion lattice (x64 enabled).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "core/half.hpp"

namespace xgrad {

// The element type of a tensor: bool, 32/64-bit signed integers, and IEEE half, bfloat16, float and
// double. The enumerator order is the row order of the promotion table.
enum class DType : std::uint8_t { Bool, Int32, Int64, Float16, BFloat16, Float32, Float64 };

// The number of DType enumerators.
inline constexpr int kNumDTypes = 7;

std::string_view dtype_name(DType dtype);          // "float32", "bfloat16", ...
DType dtype_from_name(std::string_view name);      // inverse of dtype_name; throws ValueError
std::size_t itemsize(DType dtype);                 // bytes per element: 1, 4, 8, 2, 2, 4, 8
bool is_floating(DType dtype);                     // "inexact" in JAX terms
bool is_integral(DType dtype);                     // Int32 / Int64 (not Bool)

// Least upper bound of two dtypes on the JAX lattice (docs/convlocal.md §7.2, x64 enabled).
DType promote_types(DType a, DType b);
// promote_types folded over `dtypes` (jnp.result_type of dtypes); ValueError if the list is empty.
DType result_type(std::initializer_list<DType> dtypes);

// C++ arithmetic scalars are *weak*, as Python scalars are in JAX: they never
// widen a tensor of their own kind (f16 * 2.0 stays f16, i32 * 3 stays i32); a
// floating scalar with an integer or bool tensor gives default_float_dtype(); an
// integer scalar with a bool tensor gives Int32.
DType promote_with_scalar(DType tensor_dtype, bool scalar_is_floating);

// The dtype weak floats materialise as (JAX: float64 with x64). xgrad defaults
// to Float32, the dtype a deep-learning user expects; settable per process.
DType default_float_dtype();
// Sets default_float_dtype() for the whole process; DTypeError unless `dtype` is floating.
void set_default_float_dtype(DType dtype);

// Compile-time mapping between C++ element types and DType.
template <class T> struct dtype_of;
template <> struct dtype_of<bool> { static constexpr DType value = DType::Bool; };
template <> struct dtype_of<std::int32_t> { static constexpr DType value = DType::Int32; };
template <> struct dtype_of<std::int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<half> { static constexpr DType value = DType::Float16; };
template <> struct dtype_of<bfloat16> { static constexpr DType value = DType::BFloat16; };
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };
// The DType of element type T, e.g. dtype_v<float> == DType::Float32.
template <class T> inline constexpr DType dtype_v = dtype_of<T>::value;

// The type kernels compute in: 16-bit floats widen to float.
template <class T> struct compute_type { using type = T; };
template <> struct compute_type<half> { using type = float; };
template <> struct compute_type<bfloat16> { using type = float; };
// The type kernels compute in for element type T: T, or float for half and bfloat16 (compute_type<T>::type).
template <class T> using compute_t = typename compute_type<T>::type;

}  // namespace xgrad
