// Internal to optim/: state allocation and the fused elementwise loop every
// transformation's update runs on. Not part of the public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/tensor.hpp"
#include "optim/transformation.hpp"

namespace xgrad::optim::detail {

// The dtype optimizer state and update arithmetic use for a parameter dtype:
// float64 stays float64, everything else (16-bit floats included) is float32.
DType state_dtype(DType param_dtype);

// One tensor per parameter, filled with `value`, in `dtype` (default state_dtype(param)).
NamedTensors state_buffer(const NamedTensors& params, double value, std::optional<DType> dtype = std::nullopt);

// A copy of `t` in `dtype`, not recorded on the tape.
Tensor converted(const Tensor& t, DType dtype);

// Σ x² over all elements, accumulated in float64.
double sum_of_squares(const Tensor& t);

// Throws ValueError unless `other` (a state buffer or the params) has one entry per update.
void check_aligned(const char* op, const NamedTensors& updates, const NamedTensors& other, const char* what);

// A stateless transformation from its update function.
GradientTransformation stateless(std::function<void(NamedTensors&, const NamedTensors&)> update);

// Runs `kernel(n, T* p0, T* p1, ...)` once over the n elements of same-shaped
// floating tensors, with T = double if any operand is float64 and float otherwise.
// Operands of another dtype (16-bit floats, float32 among float64) go through a
// converted copy; those marked `written` are stored back (rounded) afterwards.
// Written operands get their version bumped.
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
  Tensor work[N];
  for (std::size_t i = 0; i < N; ++i)
    work[i] = operands[i].dtype() == compute ? operands[i] : converted(operands[i], compute);
  const std::int64_t n = numel(shape);
  auto run = [&]<class T, std::size_t... I>(std::index_sequence<I...>) { kernel(n, work[I].template data<T>()...); };
  if (compute == DType::Float64) run.template operator()<double>(std::make_index_sequence<N>{});
  else run.template operator()<float>(std::make_index_sequence<N>{});
  for (std::size_t i = 0; i < N; ++i) {
    if (!written[i]) continue;
    Tensor target = operands[i];
    if (work[i].impl() != target.impl()) target.copy_(work[i]);
    else target.bump_version();
  }
}

}  // namespace xgrad::optim::detail
