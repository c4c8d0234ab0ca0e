// 16-bit floating-point storage types.
//
// xgrad stores float16 (IEEE binary16) and bfloat16 tensors as 2-byte values but
// never does arithmetic on them directly: kernels widen to float32, compute, and
// round back on store with round-to-nearest-even (the rounding JAX and NumPy use).
#pragma once

#include <bit>
#include <cstdint>

namespace xgrad {

namespace detail {

// float32 -> binary16 bits, round to nearest even; overflow gives +-inf, NaN stays NaN.
constexpr std::uint16_t float_to_half_bits(float value) {
  const std::uint32_t f = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = (f >> 16) & 0x8000u;
  const std::uint32_t abs = f & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) {  // inf or NaN
    return static_cast<std::uint16_t>(sign | 0x7C00u | (abs > 0x7F800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // rounds past 65504
  if (abs < 0x38800000u) {  // result is subnormal (or zero) in half
    if (abs < 0x33000000u) return static_cast<std::uint16_t>(sign);  // below half the smallest subnormal
    const std::uint32_t exponent = abs >> 23;
    const std::uint32_t mantissa = (abs & 0x7FFFFFu) | 0x800000u;
    const std::uint32_t shift = 126u - exponent;  // 14..24
    std::uint32_t half = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1u);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return static_cast<std::uint16_t>(sign | half);
  }
  // Normal: rebias exponent (127 -> 15) and round the 13 dropped mantissa bits.
  std::uint32_t bits = abs - 0x38000000u;
  const std::uint32_t rest = bits & 0x1FFFu;
  bits >>= 13;
  if (rest > 0x1000u || (rest == 0x1000u && (bits & 1u))) ++bits;  // may carry into the exponent: correct
  return static_cast<std::uint16_t>(sign | bits);
}

constexpr float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1Fu;
  std::uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0x1Fu) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  if (exponent == 0) {
    if (mantissa == 0) return std::bit_cast<float>(sign);
    // Subnormal half: value = mantissa * 2^-24, exact in float32.
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// float32 -> bfloat16 bits: keep the top 16 bits, round to nearest even; NaN stays quiet NaN.
constexpr std::uint16_t float_to_bfloat16_bits(float value) {
  const std::uint32_t f = std::bit_cast<std::uint32_t>(value);
  if ((f & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((f >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7FFFu + ((f >> 16) & 1u);
  return static_cast<std::uint16_t>((f + rounding) >> 16);
}

constexpr float bfloat16_bits_to_float(std::uint16_t b) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

// double -> float rounded to odd (truncate, then set the last bit if anything was
// dropped). Rounding that float to nearest-even half or bfloat16 then equals rounding
// the double directly, since float keeps at least 2 more bits than either; a plain
// double -> float -> half would round twice (1 + 2^-11 + 2^-40 would become 1).
constexpr float double_to_float_round_to_odd(double v) {
  const float f = static_cast<float>(v);
  if (static_cast<double>(f) == v || v != v) return f;  // exact, or NaN
  std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
  const double magnitude = v < 0 ? -v : v;
  const double rounded = f < 0 ? -static_cast<double>(f) : static_cast<double>(f);
  if (rounded > magnitude) --bits;  // rounded away from zero (possibly to inf): step back
  return std::bit_cast<float>(bits | 1u);
}

}  // namespace detail

// IEEE 754 binary16.
struct half {
  std::uint16_t bits = 0;  // the binary16 encoding: sign, 5-bit exponent, 10-bit mantissa
  constexpr half() = default;
  // Rounds to nearest even; beyond ±65504 gives ±inf; NaN stays NaN.
  constexpr explicit half(float v) : bits(detail::float_to_half_bits(v)) {}
  // Rounds the double once to nearest even (not twice, via float).
  constexpr explicit half(double v) : bits(detail::float_to_half_bits(detail::double_to_float_round_to_odd(v))) {}
  // The half with these binary16 bits.
  static constexpr half from_bits(std::uint16_t b) { half h; h.bits = b; return h; }
  // The exact float value.
  constexpr operator float() const { return detail::half_bits_to_float(bits); }
};

// Brain float: float32's exponent with a 7-bit mantissa.
struct bfloat16 {
  std::uint16_t bits = 0;  // the top 16 bits of the float32 encoding
  constexpr bfloat16() = default;
  // Rounds to nearest even; NaN stays a quiet NaN.
  constexpr explicit bfloat16(float v) : bits(detail::float_to_bfloat16_bits(v)) {}
  // Rounds the double once to nearest even (not twice, via float).
  constexpr explicit bfloat16(double v)
      : bits(detail::float_to_bfloat16_bits(detail::double_to_float_round_to_odd(v))) {}
  // The bfloat16 with these bits.
  static constexpr bfloat16 from_bits(std::uint16_t b) { bfloat16 h; h.bits = b; return h; }
  // The exact float value.
  constexpr operator float() const { return detail::bfloat16_bits_to_float(bits); }
};

static_assert(sizeof(half) == 2 && sizeof(bfloat16) == 2);

}  // namespace xgrad
