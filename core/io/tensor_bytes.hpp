// A tensor's elements as raw little-endian bytes, and back (internal to the file
// formats). Every interop format here stores row-major little-endian data.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/shape.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad::io_detail {

inline constexpr bool kNativeLittle = std::endian::native == std::endian::little;

inline const char* tensor_bytes(const Tensor& t) {
  return visit_dtype(t.dtype(),
                     [&](auto tag) { return reinterpret_cast<const char*>(t.data<decltype(tag)>()); });
}

inline char* tensor_bytes(Tensor& t) {
  return visit_dtype(t.dtype(), [&](auto tag) { return reinterpret_cast<char*>(t.data<decltype(tag)>()); });
}

inline std::uint64_t tensor_nbytes(const Tensor& t) {
  return static_cast<std::uint64_t>(t.numel()) * itemsize(t.dtype());
}

// Reverses each element's bytes in place (a no-op for one-byte elements).
inline void swap_element_bytes(char* p, std::uint64_t bytes, std::size_t width) {
  if (width < 2) return;
  for (std::uint64_t i = 0; i < bytes; i += width) std::reverse(p + i, p + i + width);
}

// Native bytes of a tensor -> little-endian bytes appended to `out`.
inline void append_little_endian(std::string& out, const Tensor& t) {
  const std::size_t at = out.size();
  out.append(tensor_bytes(t), tensor_nbytes(t));
  if constexpr (!kNativeLittle) swap_element_bytes(out.data() + at, tensor_nbytes(t), itemsize(t.dtype()));
}

// A tensor of `shape` and `dtype` from exactly numel * itemsize little-endian bytes.
// Any nonzero byte of a bool is true (a C++ bool must hold 0 or 1).
inline Tensor tensor_from_little_endian(std::string_view bytes, const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  char* p = tensor_bytes(t);
  if (!bytes.empty()) std::memcpy(p, bytes.data(), bytes.size());
  if (dtype == DType::Bool)
    for (std::size_t i = 0; i < bytes.size(); ++i) p[i] = p[i] != 0;
  if constexpr (!kNativeLittle) swap_element_bytes(p, bytes.size(), itemsize(dtype));
  return t;
}

// numel * itemsize, or false when the product overflows `limit` (negative dims are the caller's check).
inline bool checked_nbytes(const Shape& shape, std::size_t item, std::uint64_t limit, std::uint64_t& bytes) {
  std::uint64_t n = item;
  bool empty_array = false;
  for (std::int64_t d : shape) {
    if (d < 0) return false;
    if (d == 0) empty_array = true;
    else if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(d), &n) || n > limit) return false;
  }
  bytes = empty_array ? 0 : n;
  return true;
}

}  // namespace xgrad::io_detail
