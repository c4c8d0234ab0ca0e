// Internal to optim/: Adam's per-element arithmetic, shared by scale_by_adam and
// the fused Adam step (optim/fused_adam.cpp) so that both give bitwise the same
// results. The bias corrections 1/(1 − b1ᵗ), 1/(1 − b2ᵗ) are multipliers (one
// rounding away from optax's divisions): the loop then has one division and one
// square root per element, not three divisions.
#pragma once

#include <cmath>
#include <cstdint>

namespace xgrad::optim::detail {

// optax's bias_correction divisor 1 − decayᵗ.
inline double bias_correction(double decay, std::int64_t count) {
  return 1.0 - std::pow(decay, static_cast<double>(count));
}

template <class T>
struct AdamCoefficients {
  T b1, b2, one_minus_b1, one_minus_b2;
  T inv_bc1, inv_bc2;  // 1/(1 − b1ᵗ), 1/(1 − b2ᵗ)
  T inv_bc1_next;      // 1/(1 − b1ᵗ⁺¹), for Nesterov
  T eps, eps_root;

  // For update t (1-based).
  static AdamCoefficients at(double b1, double b2, double eps, double eps_root, std::int64_t t) {
    return {T(b1),
            T(b2),
            T(1 - b1),
            T(1 - b2),
            T(1 / bias_correction(b1, t)),
            T(1 / bias_correction(b2, t)),
            T(1 / bias_correction(b1, t + 1)),
            T(eps),
            T(eps_root)};
  }
};

// Advances the moments m, v with gradient g and returns Adam's direction
// m̂/(√(v̂ + eps_root) + eps) (Nesterov: m̂ = b1·m/(1 − b1ᵗ⁺¹) + (1 − b1)g/(1 − b1ᵗ)).
template <bool kNesterov, class T>
[[gnu::always_inline]] inline T adam_direction(const AdamCoefficients<T>& c, T g, T& m, T& v) {
  const T mi = c.one_minus_b1 * g + c.b1 * m;
  const T vi = c.one_minus_b2 * (g * g) + c.b2 * v;
  m = mi;
  v = vi;
  const T m_hat = kNesterov ? c.b1 * (mi * c.inv_bc1_next) + c.one_minus_b1 * (g * c.inv_bc1) : mi * c.inv_bc1;
  return m_hat / (std::sqrt(vi * c.inv_bc2 + c.eps_root) + c.eps);
}

}  // namespace xgrad::optim::detail
