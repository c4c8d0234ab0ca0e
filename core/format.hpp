// Printing tensors with fmt and iostreams: fmt::print("{}", t), std::cout << t.
#pragma once

#include <ostream>

#include <fmt/format.h>

#include "core/tensor.hpp"

// fmt::formatter<Tensor> and fmt::formatter<DType>: "{}" formats as to_string() and dtype_name(). Kept out of
// the API reference by the cond below: doxygen cannot place specialisations of a template it has not seen.
// \cond
template <>
struct fmt::formatter<xgrad::Tensor> : fmt::formatter<std::string_view> {
  template <class Context>
  auto format(const xgrad::Tensor& t, Context& ctx) const {
    return fmt::formatter<std::string_view>::format(t.to_string(), ctx);
  }
};

template <>
struct fmt::formatter<xgrad::DType> : fmt::formatter<std::string_view> {
  template <class Context>
  auto format(xgrad::DType d, Context& ctx) const {
    return fmt::formatter<std::string_view>::format(xgrad::dtype_name(d), ctx);
  }
};
// \endcond

namespace xgrad {
// Writes t.to_string(): shape, dtype and (abbreviated) values.
inline std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }
// Writes dtype_name(d), e.g. "float32".
inline std::ostream& operator<<(std::ostream& os, DType d) { return os << dtype_name(d); }
}  // namespace xgrad
