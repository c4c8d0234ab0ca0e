// The shared state behind a Tensor handle. Internal: kernels and the autograd
// engine include this; user code includes core/tensor.hpp (or core/xarray.hpp).
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <type_traits>
#include <variant>

#include <xtensor/xarray.hpp>

#include "core/allocator.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"

namespace xgrad {

// A tensor's elements: an xtensor container over xgrad's caching allocator
// (core/allocator.hpp), so that a training step reuses the previous step's memory.
template <class T>
using StorageArray = xt::xarray<T, xt::layout_type::row_major, CachingAllocator<T>>;

// Element storage, shared between a tensor and its detach()ed aliases. The
// version counter lives here so that an in-place write through any alias is seen
// by the autograd engine (it checks saved tensors' versions at backward).
struct Storage {
  // One storage array per dtype.
  using Array = std::variant<StorageArray<bool>, StorageArray<std::int32_t>, StorageArray<std::int64_t>,
                             StorageArray<half>, StorageArray<bfloat16>, StorageArray<float>, StorageArray<double>>;
  Array array;  // the elements, row-major
  std::uint64_t version = 0;  // bumped by every in-place write
};

// What a Tensor handle points at: dtype, shape, shared storage and autograd state.
struct TensorImpl {
  DType dtype = DType::Float32;  // element type
  Shape shape;  // dimensions, row-major
  std::shared_ptr<Storage> storage;  // the elements, shared with detach()ed aliases

  // Autograd state. A leaf that requires grad accumulates into `grad`; a tensor
  // made by a recorded op points at the node that computes its input gradients.
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // the recorded op that made this tensor; null for leaves
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf

  // Forward-mode state (autograd/forward_mode.hpp): the tangent travelling with this
  // primal inside the jvp scope numbered `tangent_level`; stale once that scope ends.
  std::shared_ptr<TensorImpl> tangent;
  std::uint64_t tangent_level = 0;  // the jvp scope `tangent` belongs to
  // Whether `tangent` is still to be masked by this primal > 0: relu defers its rule
  // (tangent * (x > 0) = tangent * (relu(x) > 0)) so that a max or min pool reading
  // it masks only the elements it selects; the first other read applies the mask
  // (autograd/node.hpp: forward_ad::set_tangent_masked_by_positive).
  bool tangent_masked_by_positive = false;
  std::uint64_t tangent_mask_version = 0;  // the storage version the deferred mask refers to
};

// A fresh tensor of the given shape and dtype; contents uninitialised.
std::shared_ptr<TensorImpl> make_impl(const Shape& shape, DType dtype);

// The storage array of `impl`, which must hold T elements (std::bad_variant_access
// otherwise).
template <class T>
StorageArray<T>& storage_array(const TensorImpl& impl) {
  return std::get<StorageArray<T>>(impl.storage->array);
}

// Calls f(T{}) with T the C++ element type of `dtype` (bool, int32_t, ..., half, bfloat16, float, double).
template <class F>
decltype(auto) visit_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Bool: return f(bool{});
    case DType::Int32: return f(std::int32_t{});
    case DType::Int64: return f(std::int64_t{});
    case DType::Float16: return f(half{});
    case DType::BFloat16: return f(bfloat16{});
    case DType::Float32: return f(float{});
    case DType::Float64: return f(double{});
  }
  throw DTypeError("unknown dtype");
}

// Converts an element of any storage type to any other, through compute types.
template <class To, class From>
inline To convert_element(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<To, half> || std::is_same_v<To, bfloat16>) {
    // Doubles (and integers, exact in double up to 2^53) round once (half.hpp).
    if constexpr (std::is_same_v<From, double> || std::is_integral_v<From>) return To(static_cast<double>(v));
    else return To(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, bool>) {
    return static_cast<compute_t<From>>(v) != compute_t<From>(0);
  } else if constexpr (std::is_integral_v<To> && std::is_floating_point_v<compute_t<From>>) {
    // C++ leaves NaN and out-of-range float-to-int casts undefined; define them as
    // XLA (and so JAX) does: NaN becomes 0, everything else saturates.
    using F = compute_t<From>;
    const F f = static_cast<F>(v);
    constexpr To lo = std::numeric_limits<To>::min(), hi = std::numeric_limits<To>::max();
    if (f != f) return To(0);
    // lo = -2^k is exact in F; hi = 2^k - 1 is exact or rounds up to 2^k: either way
    // every f at or beyond these bounds maps to them, and f strictly inside casts safely.
    if (f <= static_cast<F>(lo)) return lo;
    if (f >= static_cast<F>(hi)) return hi;
    return static_cast<To>(f);
  } else {
    return static_cast<To>(static_cast<compute_t<From>>(v));
  }
}

}  // namespace xgrad
