// Iteration over a broadcast pair of row-major operands. Internal to kernels.
#pragma once

#include <cstdint>
#include <vector>

#include "core/shape.hpp"

namespace xgrad::kernels {

// Strides (in elements) of an operand of shape `in` read as the broadcast shape
// `out`: size-1 and missing leading axes get stride 0.
Shape broadcast_strides(const Shape& in, const Shape& out);

// Calls body(out_offset, a_offset, b_offset, count, a_step, b_step) for runs along
// the last axis of `out`, covering every output element once.
template <class Body>
void for_each_broadcast_run(const Shape& out, const Shape& a_strides, const Shape& b_strides, Body&& body) {
  const std::size_t rank = out.size();
  if (rank == 0) {
    body(std::int64_t{0}, std::int64_t{0}, std::int64_t{0}, std::int64_t{1}, std::int64_t{0}, std::int64_t{0});
    return;
  }
  const std::int64_t inner = out[rank - 1];
  const std::int64_t total = numel(out);
  if (total == 0) return;
  std::vector<std::int64_t> index(rank, 0);
  std::int64_t a_off = 0, b_off = 0;
  for (std::int64_t o = 0; o < total; o += inner) {
    body(o, a_off, b_off, inner, a_strides[rank - 1], b_strides[rank - 1]);
    // Advance the multi-index over the outer axes (odometer).
    for (std::size_t ax = rank - 1; ax-- > 0;) {
      ++index[ax];
      a_off += a_strides[ax];
      b_off += b_strides[ax];
      if (index[ax] < out[ax]) break;
      a_off -= a_strides[ax] * out[ax];
      b_off -= b_strides[ax] * out[ax];
      index[ax] = 0;
    }
  }
}

}  // namespace xgrad::kernels
