// Shapes, axes and broadcasting rules shared by every op.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace xgrad {

// The extents of a tensor's axes, outermost first (also used for indices, strides and window sizes).
using Shape = std::vector<std::int64_t>;

// (lo, hi) pads per axis: what padding resolves to, and what pad() and the pooling
// and conv geometries take.
using PadPairs = std::vector<std::pair<std::int64_t, std::int64_t>>;

// The element count; ShapeError if it does not fit in int64. A zero dim makes it 0
// whatever the others (as numpy: np.empty((0, 2**62, 2**62)) is fine).
std::int64_t numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[32, 64]"

// The element count of a tensor about to be made, checked (ShapeError naming `op`):
// no negative dim, and the product of the non-zero dims in bytes fits what one
// allocation can address (ptrdiff_t), as numpy requires even of an empty array.
std::int64_t checked_numel(const Shape& shape, std::size_t item_bytes, const char* op);

// a + b and a * b on sizes, strides, dilations and pads that a caller chose: a
// result beyond int64 is the caller's error (ValueError naming `op` and `what`),
// not undefined behaviour.
std::int64_t checked_add(std::int64_t a, std::int64_t b, const char* op, const char* what);
// a * b, checked as checked_add is.
std::int64_t checked_mul(std::int64_t a, std::int64_t b, const char* op, const char* what);

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
