// Iteration over broadcast row-major operands. Internal to kernels.
//
// Every output element is visited once, in row-major order, as runs along the
// last axis: body(out_offset, offsets, count, steps) covers output elements
// [out_offset, out_offset + count), reading operand k at offsets[k] + j * steps[k].
// Size-1 axes are dropped and adjacent axes that every operand walks contiguously
// are merged first, so [64, 1, 128] + [128] is one run per row and [1000, 1] + [1]
// is a single run: the inner loop stays long enough to vectorise.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/shape.hpp"

namespace xgrad::kernels {

// Strides (in elements) of an operand of shape `in` read as the broadcast shape
// `out`: size-1 and missing leading axes get stride 0.
inline Shape broadcast_strides(const Shape& in, const Shape& out) {
  Shape strides(out.size(), 0);
  const std::size_t offset = out.size() - in.size();
  std::int64_t s = 1;
  for (std::size_t i = in.size(); i-- > 0;) {
    strides[offset + i] = in[i] == 1 ? 0 : s;
    s *= in[i];
  }
  return strides;
}

template <std::size_t N, class Body>
void for_each_broadcast_run(const Shape& out, const std::array<Shape, N>& strides, Body&& body) {
  using Offsets = std::array<std::int64_t, N>;
  if (numel(out) == 0) return;
  // Collapse: drop size-1 axes, then merge axis i into i+1 when every operand's
  // stride on i equals its stride on i+1 times the extent of i+1.
  Shape dims;
  std::array<Shape, N> st;
  for (std::size_t ax = 0; ax < out.size(); ++ax) {
    if (out[ax] == 1) continue;
    bool mergeable = !dims.empty();
    for (std::size_t k = 0; k < N && mergeable; ++k) mergeable = st[k].back() == strides[k][ax] * out[ax];
    if (mergeable) {
      dims.back() *= out[ax];
      for (std::size_t k = 0; k < N; ++k) st[k].back() = strides[k][ax];
    } else {
      dims.push_back(out[ax]);
      for (std::size_t k = 0; k < N; ++k) st[k].push_back(strides[k][ax]);
    }
  }
  Offsets offsets{}, steps{};
  if (dims.empty()) {
    body(std::int64_t{0}, offsets, std::int64_t{1}, steps);
    return;
  }
  const std::size_t rank = dims.size();
  const std::int64_t inner = dims[rank - 1];
  const std::int64_t total = numel(dims);
  for (std::size_t k = 0; k < N; ++k) steps[k] = st[k][rank - 1];
  std::vector<std::int64_t> index(rank, 0);
  for (std::int64_t o = 0; o < total; o += inner) {
    body(o, offsets, inner, steps);
    // Advance the multi-index over the outer axes (odometer).
    for (std::size_t ax = rank - 1; ax-- > 0;) {
      ++index[ax];
      for (std::size_t k = 0; k < N; ++k) offsets[k] += st[k][ax];
      if (index[ax] < dims[ax]) break;
      for (std::size_t k = 0; k < N; ++k) offsets[k] -= st[k][ax] * dims[ax];
      index[ax] = 0;
    }
  }
}

// Two operands: body(out_offset, a_offset, b_offset, count, a_step, b_step).
template <class Body>
void for_each_broadcast_run(const Shape& out, const Shape& a_strides, const Shape& b_strides, Body&& body) {
  for_each_broadcast_run<2>(out, std::array<Shape, 2>{a_strides, b_strides},
                            [&](std::int64_t o, const std::array<std::int64_t, 2>& off, std::int64_t count,
                                const std::array<std::int64_t, 2>& step) {
                              body(o, off[0], off[1], count, step[0], step[1]);
                            });
}

}  // namespace xgrad::kernels
