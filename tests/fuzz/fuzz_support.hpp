// Shared by the libFuzzer targets: an oracle check that aborts (so libFuzzer saves
// the input as a crash) and exact comparison of tensors.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "core/tensor_impl.hpp"

namespace fuzz {

inline void expect(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz oracle failed: %s\n", what);
  std::abort();
}

// Same dtype, same shape, bit-identical elements.
inline bool identical(const xgrad::Tensor& a, const xgrad::Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const std::size_t bytes = static_cast<std::size_t>(a.numel()) * xgrad::itemsize(a.dtype());
  if (bytes == 0) return true;
  return xgrad::visit_dtype(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    return std::memcmp(a.data<T>(), b.data<T>(), bytes) == 0;
  });
}

inline std::string_view as_bytes(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace fuzz
