// float16 and bfloat16 conversions, bit for bit: round to nearest even, subnormals,
// overflow, NaN, extremes; and 16-bit arithmetic computing in float32.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "core/kernels/convert16.hpp"
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
    if (half_bits(half::from_bits(bits)) != bits) FAIL(fmt::format("round trip changed {:#x}", b));
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

TEST_CASE("block conversions (vectorised) agree bit for bit with the scalar ones") {
  // Every 16-bit pattern widens exactly; an odd length exercises the vector tails.
  std::vector<half> halves(0x10001);
  std::vector<bfloat16> bfloats(0x10001);
  for (std::uint32_t b = 0; b < halves.size(); ++b) {
    halves[b] = half::from_bits(static_cast<std::uint16_t>(b));
    bfloats[b] = bfloat16::from_bits(static_cast<std::uint16_t>(b));
  }
  std::vector<float> wide(halves.size());
  kernels::widen(halves.data(), wide.data(), static_cast<std::int64_t>(halves.size()));
  for (std::size_t i = 0; i < halves.size(); ++i)
    if (std::bit_cast<std::uint32_t>(wide[i]) != std::bit_cast<std::uint32_t>(float(halves[i])) &&
        !(std::isnan(wide[i]) && std::isnan(float(halves[i]))))
      FAIL(fmt::format("widen(half) differs at {:#x}", i));
  kernels::widen(bfloats.data(), wide.data(), static_cast<std::int64_t>(bfloats.size()));
  for (std::size_t i = 0; i < bfloats.size(); ++i)
    if (std::bit_cast<std::uint32_t>(wide[i]) != std::bit_cast<std::uint32_t>(float(bfloats[i])))
      FAIL(fmt::format("widen(bfloat16) differs at {:#x}", i));
  // Narrowing: float32 patterns spread over the whole range, plus every tie and its neighbours
  // near 1 and in the float16 subnormal range.
  std::vector<float> floats;
  for (std::uint64_t b = 0; b < (1ull << 32); b += 4099)
    floats.push_back(from_float_bits(static_cast<std::uint32_t>(b)));
  for (std::uint32_t base : {0x3F800000u, 0x33800000u, 0x477FE000u, 0x00010000u})
    for (std::uint32_t k = 0; k < 4096; ++k)
      for (std::uint32_t delta : {0x0FFFu, 0x1000u, 0x1001u, 0x7FFFu, 0x8000u, 0x8001u})
        floats.push_back(from_float_bits((base + (k << 13) + delta) | (k & 1u) << 31));
  const auto n = static_cast<std::int64_t>(floats.size()) - 3;  // not a multiple of 8 or 16
  std::vector<half> h(floats.size());
  std::vector<bfloat16> bf(floats.size());
  kernels::narrow(floats.data(), h.data(), n);
  kernels::narrow(floats.data(), bf.data(), n);
  for (std::int64_t i = 0; i < n; ++i) {
    const float f = floats[static_cast<std::size_t>(i)];
    if (std::isnan(f)) {
      if (!std::isnan(float(h[static_cast<std::size_t>(i)])) || !std::isnan(float(bf[static_cast<std::size_t>(i)])))
        FAIL("narrow lost a NaN at " << i);
      continue;
    }
    if (h[static_cast<std::size_t>(i)].bits != half(f).bits)
      FAIL(fmt::format("narrow(half) differs for float bits {:#x}", std::bit_cast<std::uint32_t>(f)));
    if (bf[static_cast<std::size_t>(i)].bits != bfloat16(f).bits)
      FAIL(fmt::format("narrow(bfloat16) differs for float bits {:#x}", std::bit_cast<std::uint32_t>(f)));
  }
  CHECK(n > 1000000);
}

TEST_CASE("16-bit kernels equal float32 kernels rounded once, across stage boundaries and broadcasts") {
  // Operands long enough to span several staging buffers, broadcast both ways.
  const Tensor a32 = cast(arange(-3.0, 3.0, 6.0 / 1000.0, DType::Float32).reshape({2, 500}), DType::Float32);
  const Tensor b32 = arange(0.5, 2.0, 1.5 / 500.0, DType::Float32);
  const Tensor c32 = from_vector({0.75, -1.25}, {2, 1}, DType::Float32);
  for (DType d : {DType::Float16, DType::BFloat16}) {
    CAPTURE(dtype_name(d));
    // The 16-bit inputs, and the same values in float32.
    const Tensor a = cast(a32, d), b = cast(b32, d), c = cast(c32, d);
    const Tensor af = cast(a, DType::Float32), bf = cast(b, DType::Float32), cf = cast(c, DType::Float32);
    auto same = [&](const Tensor& low, const Tensor& reference) {
      const Tensor expected = cast(reference, low.dtype());
      CHECK(low.shape() == expected.shape());
      CHECK(low.to_vector() == expected.to_vector());
    };
    same(add(a, b), add(af, bf));
    same(mul(c, a), mul(cf, af));
    same(div(b, a), div(bf, af));
    same(sub(c, b), sub(cf, bf));
    same(maximum(a, c), maximum(af, cf));
    same(pow(b, c), pow(bf, cf));
    same(a * 0.1, af * static_cast<double>(float(cast(scalar(0.1), d).item())));
    same(exp(a), exp(af));
    same(gelu(a), gelu(af));
    same(relu(a), relu(af));
    CHECK(less(a, c).to_vector() == less(af, cf).to_vector());
    CHECK(logical_not(a).to_vector() == logical_not(af).to_vector());
  }
}

TEST_CASE("relu's gradient on 16-bit floats reads the sign from the bits: zeros, subnormals, infinities, NaN") {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> values{1.5, -2, 0, -0.0, inf, -inf, nan, 1e-7, -1e-7, 65504, 3e38};
  for (DType dtype : {DType::Float16, DType::BFloat16}) {
    CAPTURE(dtype_name(dtype));
    Tensor x = from_vector(values, {static_cast<std::int64_t>(values.size())}, dtype).requires_grad_();
    Tensor g = from_vector(std::vector<double>(values.size(), 3.0), {static_cast<std::int64_t>(values.size())}, dtype);
    relu(x).backward(g);
    // The reference: the float32 rule (out > 0) on the same stored values.
    const std::vector<double> stored = x.detach().to_vector(), grads = x.grad().to_vector();
    for (std::size_t i = 0; i < values.size(); ++i) {
      CAPTURE(stored[i]);
      CHECK(grads[i] == (stored[i] > 0 ? 3.0 : 0.0));
    }
  }
}
