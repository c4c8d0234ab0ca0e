// Elementwise math shared by the recurrent kernels (lstm.cpp, gru.cpp); internal.
// Include after `#pragma GCC optimize("no-trapping-math")`, so that the clamps in
// exp_kernel if-convert and the loops calling it vectorise.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/threading.hpp"

namespace xgrad::kernels::recurrent_math {

// float: exp by range reduction and a degree-6 polynomial (Cephes' expf, about 2 ulp),
// written so that the compiler vectorises the loops that call it; glibc's expf and
// tanhf are scalar calls and took over half of an LSTM training step. double keeps
// the library functions (reference precision for the float64 checks).
[[gnu::always_inline]] inline float exp_kernel(float x) {
  x = x > 88.0f ? 88.0f : x;
  x = x < -87.0f ? -87.0f : x;
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;           // x - n ln 2, ln 2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;
  return p * std::bit_cast<float>(bits);
}
inline double exp_kernel(double x) { return std::exp(x); }

template <class T>
[[gnu::always_inline]] inline T sigmoid(T x) {
  return T(1) / (T(1) + exp_kernel(-x));
}

template <class T>
[[gnu::always_inline]] inline T tanh_kernel(T x) {
  if constexpr (std::is_same_v<T, double>) return std::tanh(x);
  else return T(2) / (T(1) + exp_kernel(T(-2) * x)) - T(1);  // absolute error ~1e-7
}

// Row chunks for the elementwise parts: each row is independent, so any split
// gives the same bits; small batches stay on the caller.
template <class F>
void for_rows(std::int64_t rows, std::int64_t hidden, F&& fn) {
  const std::int64_t work = rows * hidden;
  const std::int64_t chunks = work < 2048 ? 1 : num_threads();
  parallel_for_ranges(rows, chunks, fn);
}

}  // namespace xgrad::kernels::recurrent_math
