// Block conversions between the 16-bit floats and float32, for kernels that compute
// in float32: bit-identical to half.hpp's scalar conversions (round to nearest even)
// for every non-NaN value, vectorised (F16C instructions when the CPU has them).
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/half.hpp"

namespace xgrad::kernels {

template <class T>
inline constexpr bool is_float16_v = std::is_same_v<T, half> || std::is_same_v<T, bfloat16>;

// Length of the float32 staging buffers (on the stack) for 16-bit operands.
inline constexpr std::int64_t kStageLength = 256;

void widen(const half* in, float* out, std::int64_t n);
void widen(const bfloat16* in, float* out, std::int64_t n);
void narrow(const float* in, half* out, std::int64_t n);
void narrow(const float* in, bfloat16* out, std::int64_t n);

}  // namespace xgrad::kernels
