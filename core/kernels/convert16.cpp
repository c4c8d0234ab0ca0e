#include "core/kernels/convert16.hpp"

#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define XGRAD_HAVE_F16C_PATH 1
#endif

namespace xgrad::kernels {

namespace {

#ifdef XGRAD_HAVE_F16C_PATH
// The build targets baseline x86-64, so the F16C paths are compiled for that
// extension alone and chosen at run time.
bool cpu_has_f16c() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  }();
  return has;
}

__attribute__((target("avx,f16c"))) std::int64_t widen_f16c(const half* in, float* out, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
  return i;
}

__attribute__((target("avx,f16c"))) std::int64_t narrow_f16c(const float* in, half* out, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  return i;
}
#endif

}  // namespace

void widen(const half* in, float* out, std::int64_t n) {
  std::int64_t i = 0;
#ifdef XGRAD_HAVE_F16C_PATH
  if (cpu_has_f16c()) i = widen_f16c(in, out, n);
#endif
  for (; i < n; ++i) out[i] = static_cast<float>(in[i]);
}

void narrow(const float* in, half* out, std::int64_t n) {
  std::int64_t i = 0;
#ifdef XGRAD_HAVE_F16C_PATH
  if (cpu_has_f16c()) i = narrow_f16c(in, out, n);
#endif
  for (; i < n; ++i) out[i] = half(in[i]);
}

// bfloat16 is the top half of a float32: plain integer loops the compiler vectorises.
void widen(const bfloat16* in, float* out, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint32_t bits = static_cast<std::uint32_t>(in[i].bits) << 16;
    std::memcpy(out + i, &bits, sizeof bits);
  }
}

namespace {

void narrow_bfloat16(const float* in, bfloat16* out, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    std::uint32_t f;
    std::memcpy(&f, in + i, sizeof f);
    const bool nan = (f & 0x7FFFFFFFu) > 0x7F800000u;
    const std::uint32_t rounded = (f + 0x7FFFu + ((f >> 16) & 1u)) >> 16;
    out[i].bits = static_cast<std::uint16_t>(nan ? (f >> 16) | 0x40u : rounded);
  }
}

#ifdef XGRAD_HAVE_F16C_PATH
bool cpu_has_avx2() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
  }();
  return has;
}

// Eight floats to bfloat16 bits in 32-bit lanes, as narrow_bfloat16 does one.
[[gnu::always_inline]] inline __attribute__((target("avx2"))) __m256i bfloat16_lanes(__m256i f) {
  const __m256i high = _mm256_srli_epi32(f, 16);
  const __m256i lsb = _mm256_and_si256(high, _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(f, _mm256_set1_epi32(0x7FFF)), lsb), 16);
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(f, _mm256_set1_epi32(0x7FFFFFFF)),
                                         _mm256_set1_epi32(0x7F800000));
  return _mm256_blendv_epi8(rounded, _mm256_or_si256(high, _mm256_set1_epi32(0x40)), nan);
}

// narrow_bfloat16, 16 lanes at a time (baseline SSE2 has no unsigned 32 -> 16-bit pack,
// so the compiler's own vectorisation of the loop above is slow).
__attribute__((target("avx2"))) void narrow_bfloat16_avx2(const float* in, bfloat16* out, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i lo = bfloat16_lanes(_mm256_castps_si256(_mm256_loadu_ps(in + i)));
    const __m256i hi = bfloat16_lanes(_mm256_castps_si256(_mm256_loadu_ps(in + i + 8)));
    // packus interleaves 128-bit lanes (lo0 hi0 lo1 hi1); the permute restores lo, hi order.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), packed);
  }
  narrow_bfloat16(in + i, out + i, n - i);
}
#endif

}  // namespace

void narrow(const float* in, bfloat16* out, std::int64_t n) {
#ifdef XGRAD_HAVE_F16C_PATH
  if (cpu_has_avx2()) return narrow_bfloat16_avx2(in, out, n);
#endif
  narrow_bfloat16(in, out, n);
}

}  // namespace xgrad::kernels
