#include "core/shape.hpp"

#include <algorithm>
#include <cstddef>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"

namespace xgrad {

std::int64_t numel(const Shape& shape) {
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  std::int64_t n = 1;
  for (auto d : shape)
    if (__builtin_mul_overflow(n, d, &n))
      throw ShapeError(fmt::format("shape {} has more elements than an int64 can count", shape_str(shape)));
  return n;
}

std::int64_t checked_numel(const Shape& shape, std::size_t item_bytes, const char* op) {
  for (auto d : shape)
    if (d < 0) throw ShapeError(fmt::format("{}: negative dimension in shape {}", op, shape_str(shape)));
  // numpy's rule: the zero dims aside, the bytes must fit, even when the count is 0.
  // Strides are products of trailing dims, zero or not, and must not overflow either.
  constexpr std::int64_t kMaxBytes = std::numeric_limits<std::ptrdiff_t>::max();
  std::int64_t bytes = static_cast<std::int64_t>(item_bytes);
  for (auto d : shape)
    if (d != 0 && __builtin_mul_overflow(bytes, d, &bytes))
      throw ShapeError(fmt::format("{}: shape {} of {}-byte elements is too big for one allocation (over {} bytes)",
                                   op, shape_str(shape), item_bytes, kMaxBytes));
  return numel(shape);
}

std::int64_t checked_add(std::int64_t a, std::int64_t b, const char* op, const char* what) {
  std::int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    throw ValueError(fmt::format("{}: {} overflows int64 ({} + {})", op, what, a, b));
  return r;
}

std::int64_t checked_mul(std::int64_t a, std::int64_t b, const char* op, const char* what) {
  std::int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    throw ValueError(fmt::format("{}: {} overflows int64 ({} * {})", op, what, a, b));
  return r;
}

std::string shape_str(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  std::int64_t s = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const std::size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (std::size_t i = 0; i < rank; ++i) {
    const std::int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const std::int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1)
      throw ShapeError(fmt::format("{}: shapes {} and {} cannot be broadcast together (axis {}: {} vs {})",
                                   op, shape_str(a), shape_str(b), i, da, db));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

std::int64_t normalize_axis(std::int64_t axis, std::int64_t rank, const char* op) {
  if (axis < -rank || axis >= std::max<std::int64_t>(rank, 1) || (rank == 0 && axis != 0 && axis != -1))
    throw ShapeError(fmt::format("{}: axis {} is out of range for a tensor of rank {}", op, axis, rank));
  return axis < 0 ? axis + rank : axis;
}

std::vector<std::int64_t> normalize_axes(const std::vector<std::int64_t>& axes, std::int64_t rank,
                                         const char* op) {
  std::vector<std::int64_t> out;
  if (axes.empty()) {
    for (std::int64_t i = 0; i < rank; ++i) out.push_back(i);
    return out;
  }
  for (auto a : axes) {
    if (a < -rank || a >= rank)
      throw ShapeError(fmt::format("{}: axis {} is out of range for a tensor of rank {}", op, a, rank));
    out.push_back(a < 0 ? a + rank : a);
  }
  std::sort(out.begin(), out.end());
  if (std::adjacent_find(out.begin(), out.end()) != out.end())
    throw ShapeError(fmt::format("{}: repeated axis in [{}]", op, fmt::join(axes, ", ")));
  return out;
}

}  // namespace xgrad
