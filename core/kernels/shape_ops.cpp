#include "core/kernels/shape_ops.hpp"

#include <cstring>

#include <fmt/format.h>

#include "core/tensor_impl.hpp"

namespace xgrad::kernels {

Shape infer_reshape(const Shape& from, const Shape& to, const char* op) {
  Shape out = to;
  std::int64_t known = 1;
  int inferred = -1;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      if (inferred >= 0) throw ShapeError(fmt::format("{}: more than one -1 in target shape {}", op, shape_str(to)));
      inferred = static_cast<int>(i);
    } else if (out[i] < 0) {
      throw ShapeError(fmt::format("{}: negative dimension in target shape {}", op, shape_str(to)));
    } else {
      known *= out[i];
    }
  }
  const std::int64_t n = numel(from);
  if (inferred >= 0) {
    if (known == 0 || n % known != 0)
      throw ShapeError(fmt::format("{}: cannot reshape {} ({} elements) into {}", op, shape_str(from), n,
                                   shape_str(to)));
    out[static_cast<std::size_t>(inferred)] = n / known;
  } else if (known != n) {
    throw ShapeError(fmt::format("{}: cannot reshape {} ({} elements) into {} ({} elements)", op, shape_str(from),
                                 n, shape_str(to), known));
  }
  return out;
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  const Shape target = infer_reshape(x.shape(), shape, "reshape");
  if (target == x.shape()) return x.detach();  // a new handle: ops never return their input's impl
  Tensor out = empty(target, x.dtype());
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    std::memcpy(static_cast<void*>(out.data<T>()), x.data<T>(), static_cast<std::size_t>(x.numel()) * sizeof(T));
  });
  return out;
}

}  // namespace xgrad::kernels
