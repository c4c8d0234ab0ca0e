// Shapes, axes and broadcasting rules shared by every op.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xgrad {

using Shape = std::vector<std::int64_t>;

std::int64_t numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[32, 64]"

// Row-major (C order) element strides, in elements.
Shape contiguous_strides(const Shape& shape);

// NumPy broadcasting of two shapes; throws ShapeError naming `op` when they do not broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Maps a possibly negative axis into [0, rank); throws ShapeError naming `op`.
std::int64_t normalize_axis(std::int64_t axis, std::int64_t rank, const char* op);

// Normalises and sorts a set of axes; empty `axes` means every axis. Throws on duplicates.
std::vector<std::int64_t> normalize_axes(const std::vector<std::int64_t>& axes, std::int64_t rank,
                                         const char* op);

}  // namespace xgrad
