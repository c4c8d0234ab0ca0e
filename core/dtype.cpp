#include "core/dtype.hpp"

#include <array>
#include <atomic>

#include "core/error.hpp"

namespace xgrad {

namespace {

constexpr std::array<std::string_view, kNumDTypes> kNames = {
    "bool", "int32", "int64", "float16", "bfloat16", "float32", "float64"};

constexpr std::array<std::size_t, kNumDTypes> kItemSizes = {1, 4, 8, 2, 2, 4, 8};

// JAX lattice restricted to xgrad's seven dtypes (docs/convlocal.md §7.2, x64 enabled).
// Rows and columns in DType order: b1 i32 i64 f16 bf16 f32 f64.
using D = DType;
constexpr D b1 = D::Bool, i32 = D::Int32, i64 = D::Int64, f16 = D::Float16, bf16 = D::BFloat16,
            f32 = D::Float32, f64 = D::Float64;
constexpr std::array<std::array<DType, kNumDTypes>, kNumDTypes> kPromotion = {{
    //        b1   i32  i64  f16  bf16  f32  f64
    /* b1 */ {b1, i32, i64, f16, bf16, f32, f64},
    /* i32*/ {i32, i32, i64, f16, bf16, f32, f64},
    /* i64*/ {i64, i64, i64, f16, bf16, f32, f64},
    /* f16*/ {f16, f16, f16, f16, f32, f32, f64},
    /* bf16*/ {bf16, bf16, bf16, f32, bf16, f32, f64},
    /* f32*/ {f32, f32, f32, f32, f32, f32, f64},
    /* f64*/ {f64, f64, f64, f64, f64, f64, f64},
}};

std::atomic<DType> g_default_float{DType::Float32};

std::size_t index(DType d) { return static_cast<std::size_t>(d); }

}  // namespace

std::string_view dtype_name(DType dtype) { return kNames.at(index(dtype)); }

DType dtype_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kNames.size(); ++i)
    if (kNames[i] == name) return static_cast<DType>(i);
  throw ValueError("unknown dtype name '" + std::string(name) +
                   "' (expected bool, int32, int64, float16, bfloat16, float32 or float64)");
}

std::size_t itemsize(DType dtype) { return kItemSizes.at(index(dtype)); }

bool is_floating(DType d) {
  return d == D::Float16 || d == D::BFloat16 || d == D::Float32 || d == D::Float64;
}
bool is_integral(DType d) { return d == D::Int32 || d == D::Int64; }

DType promote_types(DType a, DType b) { return kPromotion.at(index(a)).at(index(b)); }

DType result_type(std::initializer_list<DType> dtypes) {
  if (dtypes.size() == 0) throw ValueError("result_type: needs at least one dtype");
  DType r = *dtypes.begin();
  for (DType d : dtypes) r = promote_types(r, d);
  return r;
}

DType promote_with_scalar(DType tensor_dtype, bool scalar_is_floating) {
  if (scalar_is_floating) return is_floating(tensor_dtype) ? tensor_dtype : default_float_dtype();
  return tensor_dtype == D::Bool ? D::Int32 : tensor_dtype;
}

DType default_float_dtype() { return g_default_float.load(std::memory_order_relaxed); }

void set_default_float_dtype(DType dtype) {
  if (!is_floating(dtype))
    throw DTypeError("set_default_float_dtype: " + std::string(dtype_name(dtype)) +
                     " is not a floating dtype");
  g_default_float.store(dtype, std::memory_order_relaxed);
}

}  // namespace xgrad
