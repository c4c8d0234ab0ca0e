#include "core/kernels/elementwise.hpp"

#include <fmt/format.h>

#include "core/kernels/broadcast.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad::kernels {

Shape broadcast_strides(const Shape& in, const Shape& out) {
  Shape strides(out.size(), 0);
  const Shape own = contiguous_strides(in);
  const std::size_t offset = out.size() - in.size();
  for (std::size_t i = 0; i < in.size(); ++i) strides[offset + i] = in[i] == 1 ? 0 : own[i];
  return strides;
}

Tensor cast(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = empty(x.shape(), dtype);
  out.copy_(x);
  out.impl()->storage->version = 0;
  return out;
}

namespace {

const char* binary_name(Binary op) {
  switch (op) {
    case Binary::Add: return "add";
    case Binary::Sub: return "sub";
    case Binary::Mul: return "mul";
    case Binary::Div: return "div";
  }
  return "binary";
}

template <class T, class F>
Tensor apply_binary(const Tensor& a, const Tensor& b, const Shape& out_shape, F f) {
  using C = compute_t<T>;
  Tensor out = empty(out_shape, dtype_v<T>);
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* po = out.data<T>();
  const std::int64_t n = out.numel();
  if (a.shape() == out_shape && b.shape() == out_shape) {
    for (std::int64_t i = 0; i < n; ++i) po[i] = T(f(C(pa[i]), C(pb[i])));
    return out;
  }
  for_each_broadcast_run(out_shape, broadcast_strides(a.shape(), out_shape), broadcast_strides(b.shape(), out_shape),
                         [&](std::int64_t o, std::int64_t ia, std::int64_t ib, std::int64_t count, std::int64_t sa,
                             std::int64_t sb) {
                           for (std::int64_t k = 0; k < count; ++k)
                             po[o + k] = T(f(C(pa[ia + k * sa]), C(pb[ib + k * sb])));
                         });
  return out;
}

}  // namespace

Tensor binary(Binary op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  const Shape out_shape = broadcast_shapes(a.shape(), b.shape(), name);
  const DType dtype = promote_types(a.dtype(), b.dtype());
  if (dtype == DType::Bool)
    throw DTypeError(fmt::format("{}: arithmetic on two bool tensors is not supported (shapes {} and {})", name,
                                 shape_str(a.shape()), shape_str(b.shape())));
  const Tensor ca = cast(a, dtype), cb = cast(b, dtype);
  return visit_dtype(dtype, [&](auto tag) -> Tensor {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      return Tensor();
    } else {
      switch (op) {
        case Binary::Add: return apply_binary<T>(ca, cb, out_shape, [](auto x, auto y) { return x + y; });
        case Binary::Sub: return apply_binary<T>(ca, cb, out_shape, [](auto x, auto y) { return x - y; });
        case Binary::Mul: return apply_binary<T>(ca, cb, out_shape, [](auto x, auto y) { return x * y; });
        case Binary::Div: return apply_binary<T>(ca, cb, out_shape, [](auto x, auto y) { return x / y; });
      }
      return Tensor();
    }
  });
}

}  // namespace xgrad::kernels
