#include "layers/flatten.hpp"

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "core/error.hpp"

namespace xgrad::nn {

Tensor Flatten::forward(const Tensor& x) {
  const std::int64_t start = normalize_axis(options_.start_axis, x.dim(), "start_axis");
  const std::int64_t end = normalize_axis(options_.end_axis, x.dim(), "end_axis");
  if (start > end)
    throw ShapeError(fmt::format("start_axis {} comes after end_axis {} for input {}", options_.start_axis,
                                 options_.end_axis, shape_str(x.shape())));
  const Shape& s = x.shape();
  Shape out(s.begin(), s.begin() + start);
  std::int64_t merged = 1;
  for (std::int64_t a = start; a <= end; ++a) merged *= s[static_cast<std::size_t>(a)];
  out.push_back(merged);
  out.insert(out.end(), s.begin() + end + 1, s.end());
  return reshape(x, out);
}

}  // namespace xgrad::nn
