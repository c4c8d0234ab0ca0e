// Internal to optim/: state allocation and the fused elementwise loop every
// transformation's update runs on. Not part of the public API.
#pragma once

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/tensor.hpp"
#include "optim/base.hpp"

namespace xgrad::optim::detail {

// The dtype optimizer state and update arithmetic use for a parameter dtype:
// float64 stays float64, everything else (16-bit floats included) is float32.
DType state_dtype(DType param_dtype);

// One tensor per parameter, filled with `value`, in `dtype` (default state_dtype(param)).
NamedTensors state_buffer(const NamedTensors& params, double value, std::optional<DType> dtype = std::nullopt);

// Σ x² over all elements, accumulated in float64.
double sum_of_squares(const Tensor& t);

// Throws ValueError unless `other` (a state buffer or the params) has one entry per update.
void check_aligned(const char* op, const NamedTensors& updates, const NamedTensors& other, const char* what);

// A stateless transformation from its update function.
GradientTransformation stateless(std::function<void(NamedTensors&, const NamedTensors&)> update);

// Copies elements [offset, offset + count) of a floating tensor into `out`,
// converted to T (float or double); store_chunk writes them back, rounded to the
// tensor's dtype.
template <class T>
void load_chunk(const Tensor& t, std::int64_t offset, std::int64_t count, T* out);
template <class T>
void store_chunk(Tensor& t, std::int64_t offset, std::int64_t count, const T* in);

// Runs `kernel(n, T* p0, T* p1, ...)` over the elements of same-shaped floating
// tensors, with T = double if any operand is float64 and float otherwise. When
// every operand already has that dtype the kernel sees whole buffers in one call;
// otherwise it runs chunk by chunk, with the other operands (16-bit floats,
// float32 among float64) converted into a small scratch buffer and, if `written`,
// rounded back. Written operands get their version bumped.
template <std::size_t N, class Kernel>
void elementwise(const char* op, const std::string& path, const Tensor (&operands)[N], const bool (&written)[N],
                 Kernel&& kernel) {
  const Shape& shape = operands[0].shape();
  bool any_double = false;
  for (const Tensor& t : operands) {
    if (!is_floating(t.dtype()))
      throw DTypeError(
          fmt::format("{}: '{}' is {}; optimizers work on floating tensors", op, path, dtype_name(t.dtype())));
    if (t.shape() != shape)
      throw ShapeError(fmt::format("{}: '{}': shapes {} and {} do not match (update, state or parameter)", op,
                                   path, shape_str(shape), shape_str(t.shape())));
    any_double = any_double || t.dtype() == DType::Float64;
  }
  const DType compute = any_double ? DType::Float64 : DType::Float32;
  Tensor handles[N];
  bool native[N];
  bool all_native = true;
  for (std::size_t i = 0; i < N; ++i) {
    handles[i] = operands[i];
    native[i] = operands[i].dtype() == compute;
    all_native = all_native && native[i];
  }
  const std::int64_t n = numel(shape);
  auto run = [&]<class T, std::size_t... I>(std::index_sequence<I...>) {
    if (all_native) {
      kernel(n, handles[I].template data<T>()...);
      return;
    }
    constexpr std::int64_t kChunk = 1024;  // scratch stays in L1
    std::vector<T> scratch(N * kChunk);
    T* pointers[N];
    for (std::int64_t start = 0; start < n; start += kChunk) {
      const std::int64_t count = std::min(kChunk, n - start);
      for (std::size_t i = 0; i < N; ++i) {
        if (native[i]) {
          pointers[i] = handles[i].template data<T>() + start;
        } else {
          pointers[i] = scratch.data() + i * kChunk;
          load_chunk(handles[i], start, count, pointers[i]);
        }
      }
      kernel(count, pointers[I]...);
      for (std::size_t i = 0; i < N; ++i)
        if (written[i] && !native[i]) store_chunk(handles[i], start, count, pointers[i]);
    }
  };
  if (compute == DType::Float64) run.template operator()<double>(std::make_index_sequence<N>{});
  else run.template operator()<float>(std::make_index_sequence<N>{});
  for (std::size_t i = 0; i < N; ++i)
    if (written[i]) handles[i].bump_version();
}

}  // namespace xgrad::optim::detail
