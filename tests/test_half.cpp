// float16 and bfloat16 conversions, bit for bit: round to nearest even, subnormals,
// overflow, NaN, extremes; and 16-bit arithmetic computing in float32.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;

namespace {

std::uint16_t half_bits(float v) { return half(v).bits; }
std::uint16_t bf16_bits(float v) { return bfloat16(v).bits; }
float from_float_bits(std::uint32_t b) { return std::bit_cast<float>(b); }

}  // namespace

TEST_CASE("float16: exact values and extremes") {
  CHECK(half_bits(0.0f) == 0x0000);
  CHECK(half_bits(-0.0f) == 0x8000);
  CHECK(half_bits(1.0f) == 0x3C00);
  CHECK(half_bits(-2.0f) == 0xC000);
  CHECK(half_bits(0.5f) == 0x3800);
  CHECK(half_bits(65504.0f) == 0x7BFF);                 // the largest finite half
  CHECK(half_bits(std::ldexp(1.0f, -14)) == 0x0400);    // the smallest normal
  CHECK(half_bits(std::ldexp(1.0f, -24)) == 0x0001);    // the smallest subnormal
  CHECK(half_bits(1023 * std::ldexp(1.0f, -24)) == 0x03FF);  // the largest subnormal
  CHECK(half_bits(1.0f / 3.0f) == 0x3555);
}

TEST_CASE("float16: round to nearest, ties to even") {
  // Halfway between 1 and the next half (1 + 2^-10) rounds to the even mantissa, 1.
  CHECK(half_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);
  // Halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even) rounds up.
  CHECK(half_bits(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);
  // Just above and below a tie round to the nearer neighbour.
  CHECK(half_bits(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3C01);
  CHECK(half_bits(1.0f + 3 * std::ldexp(1.0f, -11) - std::ldexp(1.0f, -20)) == 0x3C01);
  // A tie just under 2 rounds up into the next binade (the carry reaches the exponent).
  CHECK(half_bits(2.0f - std::ldexp(1.0f, -11)) == 0x4000);
  CHECK(half_bits(-(1.0f + 3 * std::ldexp(1.0f, -11))) == 0xBC02);
}

TEST_CASE("float16: subnormal rounding") {
  const float tiny = std::ldexp(1.0f, -24);                    // one subnormal step
  CHECK(half_bits(tiny / 2) == 0x0000);                        // tie with 0: even is 0
  CHECK(half_bits(-tiny / 2) == 0x8000);
  CHECK(half_bits(std::nextafter(tiny / 2, 1.0f)) == 0x0001);  // just above the tie
  CHECK(half_bits(1.5f * tiny) == 0x0002);                     // tie between 1 and 2: even is 2
  CHECK(half_bits(2.5f * tiny) == 0x0002);                     // tie between 2 and 3: even is 2
  CHECK(half_bits(tiny / 4) == 0x0000);
  // The largest subnormal plus half a step rounds to the smallest normal.
  CHECK(half_bits(1023.5f * tiny) == 0x0400);
  CHECK(half_bits(from_float_bits(0x00000001)) == 0x0000);     // a float32 subnormal
}

TEST_CASE("float16: overflow, infinities and NaN") {
  // 65520 is halfway between 65504 (odd mantissa) and 65536 (not representable): it overflows.
  CHECK(half_bits(65519.0f) == 0x7BFF);
  CHECK(half_bits(65520.0f) == 0x7C00);
  CHECK(half_bits(1e6f) == 0x7C00);
  CHECK(half_bits(-1e6f) == 0xFC00);
  CHECK(half_bits(std::numeric_limits<float>::max()) == 0x7C00);
  CHECK(half_bits(std::numeric_limits<float>::infinity()) == 0x7C00);
  CHECK(half_bits(-std::numeric_limits<float>::infinity()) == 0xFC00);
  const std::uint16_t nan = half_bits(std::numeric_limits<float>::quiet_NaN());
  CHECK((nan & 0x7C00) == 0x7C00);
  CHECK((nan & 0x03FF) != 0);
  // A NaN whose payload sits only in the low bits must not become infinity.
  const std::uint16_t low_payload = half_bits(from_float_bits(0x7F800001));
  CHECK((low_payload & 0x7C00) == 0x7C00);
  CHECK((low_payload & 0x03FF) != 0);
}

TEST_CASE("float16 to float32 is exact") {
  CHECK(float(half::from_bits(0x0001)) == std::ldexp(1.0f, -24));
  CHECK(float(half::from_bits(0x03FF)) == 1023 * std::ldexp(1.0f, -24));
  CHECK(float(half::from_bits(0x0400)) == std::ldexp(1.0f, -14));
  CHECK(float(half::from_bits(0x7BFF)) == 65504.0f);
  CHECK(float(half::from_bits(0x3555)) == 0.333251953125f);
  CHECK(float(half::from_bits(0x7C00)) == std::numeric_limits<float>::infinity());
  CHECK(float(half::from_bits(0xFC00)) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(float(half::from_bits(0x7E00))));
  CHECK(std::isnan(float(half::from_bits(0x7C01))));
  const float negative_zero = half::from_bits(0x8000);
  CHECK(negative_zero == 0.0f);
  CHECK(std::signbit(negative_zero));
  // Every finite half survives a round trip through float32.
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    if ((bits & 0x7C00) == 0x7C00 && (bits & 0x03FF) != 0) continue;  // NaN
    if (half_bits(half::from_bits(bits)) != bits) FAIL("round trip changed 0x" << std::hex << b);
  }
}

TEST_CASE("bfloat16: rounding, subnormals, overflow and NaN") {
  CHECK(bf16_bits(1.0f) == 0x3F80);
  CHECK(bf16_bits(-2.0f) == 0xC000);
  CHECK(bf16_bits(from_float_bits(0x3F808000)) == 0x3F80);  // 1 + 2^-8: tie, even is 1
  CHECK(bf16_bits(from_float_bits(0x3F818000)) == 0x3F82);  // tie between 0x3F81 (odd) and 0x3F82
  CHECK(bf16_bits(from_float_bits(0x3F808001)) == 0x3F81);  // just above the tie
  CHECK(bf16_bits(from_float_bits(0x3F80FFFF)) == 0x3F81);
  CHECK(bf16_bits(from_float_bits(0x00200000)) == 0x0020);  // a subnormal, exact
  CHECK(bf16_bits(from_float_bits(0x00008000)) == 0x0000);  // subnormal tie with 0
  CHECK(bf16_bits(from_float_bits(0x00018000)) == 0x0002);  // subnormal tie, even is 2
  // The largest bfloat16 is exact; float32's max rounds past it to infinity.
  CHECK(bf16_bits(from_float_bits(0x7F7F0000)) == 0x7F7F);
  CHECK(bf16_bits(from_float_bits(0x7F7F7FFF)) == 0x7F7F);
  CHECK(bf16_bits(std::numeric_limits<float>::max()) == 0x7F80);
  CHECK(bf16_bits(std::numeric_limits<float>::infinity()) == 0x7F80);
  CHECK(bf16_bits(-std::numeric_limits<float>::infinity()) == 0xFF80);
  CHECK(bf16_bits(std::numeric_limits<float>::quiet_NaN()) == 0x7FC0);
  CHECK(bf16_bits(from_float_bits(0x7F800001)) == 0x7FC0);  // a signalling NaN stays NaN (quieted)
  CHECK(bf16_bits(from_float_bits(0xFF800001)) == 0xFFC0);
  CHECK(float(bfloat16::from_bits(0x7F7F)) == from_float_bits(0x7F7F0000));
  CHECK(float(bfloat16::from_bits(0x0001)) == std::ldexp(1.0f, -133));
  CHECK(std::signbit(float(bfloat16::from_bits(0x8000))));
}

TEST_CASE("16-bit tensors compute in float32 and round once on store") {
  // 1 + 2^-11 is exact in float32 and a tie in float16: the sum rounds to even (1).
  const Tensor one = ones({1}, DType::Float16);
  const Tensor step = full({1}, std::ldexp(1.0, -11), DType::Float16);
  CHECK((one + step).data<half>()[0].bits == 0x3C00);
  CHECK((one + step * 3.0).data<half>()[0].bits == 0x3C02);
  // 65504 + 16 overflows to infinity on store.
  CHECK((full({1}, 65504, DType::Float16) + 16.0).data<half>()[0].bits == 0x7C00);
  // bfloat16: 1 + 2^-8 is a tie that rounds to 1; 1 + 3 * 2^-8 rounds to 1 + 2^-6.
  const Tensor b = ones({1}, DType::BFloat16);
  CHECK((b + std::ldexp(1.0, -8)).data<bfloat16>()[0].bits == 0x3F80);
  CHECK((b + 3 * std::ldexp(1.0, -8)).data<bfloat16>()[0].bits == 0x3F82);
  // exp in float16: e rounds to 2.71875 (0x4170).
  CHECK(exp(ones({1}, DType::Float16)).data<half>()[0].bits == 0x4170);
  // Casting float32 -> float16 rounds to nearest even; float16 -> float32 is exact.
  const Tensor f = from_vector({65519.0, 65520.0, 1.0 + std::ldexp(1.0, -11)}, {3}, DType::Float32);
  const Tensor h = cast(f, DType::Float16);
  CHECK(h.data<half>()[0].bits == 0x7BFF);
  CHECK(h.data<half>()[1].bits == 0x7C00);
  CHECK(h.data<half>()[2].bits == 0x3C00);
  CHECK(cast(h, DType::Float32).to_vector() == std::vector<double>{65504.0, INFINITY, 1.0});
}

TEST_CASE("float64 to float16 / bfloat16 rounds once, not through float32") {
  // 1 + 2^-11 + 2^-40 is just above a float16 tie; via float32 it would become the tie and round down.
  CHECK(half(1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40)).bits == 0x3C01);
  CHECK(half(1.0 + std::ldexp(1.0, -11)).bits == 0x3C00);
  CHECK(half(1.0 + std::ldexp(1.0, -11) - std::ldexp(1.0, -40)).bits == 0x3C00);
  CHECK(half(std::ldexp(1.0, -25) + std::ldexp(1.0, -60)).bits == 0x0001);
  // Just below 65520 stays finite, although float32 would round it up to 65520.
  CHECK(half(65519.999999).bits == 0x7BFF);
  CHECK(half(1e300).bits == 0x7C00);
  CHECK(half(-1e300).bits == 0xFC00);
  CHECK(half(1e-300).bits == 0x0000);
  CHECK(half(-1e-300).bits == 0x8000);
  CHECK(bfloat16(1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40)).bits == 0x3F81);
  CHECK(bfloat16(1.0 + std::ldexp(1.0, -8)).bits == 0x3F80);
  CHECK(bfloat16(1e300).bits == 0x7F80);
  // The same through tensors: creation from doubles and casts from float64.
  const double above_tie = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
  CHECK(from_vector({above_tie}, {1}, DType::Float16).data<half>()[0].bits == 0x3C01);
  CHECK(cast(from_vector({above_tie}, {1}, DType::Float64), DType::Float16).data<half>()[0].bits == 0x3C01);
  CHECK(full({1}, 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40), DType::BFloat16).data<bfloat16>()[0].bits ==
        0x3F81);
  // int32 2^24 + 2^16 + 1 is just above a bfloat16 tie, and a float32 tie itself.
  const Tensor i = from_vector({16842753}, {1}, DType::Int32);
  CHECK(cast(i, DType::BFloat16).data<bfloat16>()[0].bits == 0x4B81);
}
