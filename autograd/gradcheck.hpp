// Numerical gradient checking, a public API (as torch.autograd.gradcheck).
//
// gradcheck compares the Jacobian that backward computes with central differences
// (f(x + eps) - f(x - eps)) / 2eps, evaluated in float64 whatever the inputs'
// dtypes: floating inputs are converted to float64 before f sees them. An element
// passes when |analytic - numeric| <= atol + rtol * |numeric|.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad {

// Designated initializers name the fields in this order: eps, atol, rtol, fast_mode, projections, seed.
struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  // Fast mode checks random projections v^T J u (one backward and two forward
  // evaluations per projection) instead of the whole Jacobian.
  bool fast_mode = false;
  int projections = 3;
  std::uint64_t seed = 0;
};

struct GradcheckReport {
  std::string check = "gradcheck";    // or "gradgradcheck": names the check in to_string()
  bool ok = true;
  std::size_t checked = 0;            // Jacobian entries (or projections) compared
  // The worst entry (largest error relative to its tolerance):
  std::size_t input = 0;              // which input
  std::int64_t input_element = -1;    // flat index into that input (-1 in fast mode)
  std::int64_t output_element = -1;   // flat index into the output (-1 in fast mode)
  double analytic = 0, numeric = 0;
  double error_ratio = 0;             // |analytic - numeric| / tolerance there (> 1 fails)
  std::string failure;                // set when f or backward threw
  std::string to_string() const;      // a readable verdict naming the worst entry
};

using GradcheckFunction = std::function<Tensor(const std::vector<Tensor>&)>;

// Checks d f / d inputs for every floating input (others are passed through unchanged).
GradcheckReport gradcheck(const GradcheckFunction& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

// Second order: gradchecks (inputs, v) -> vjp_i = grad(f(inputs), inputs_i, v) for
// each input i, with a random cotangent v, through create_graph.
GradcheckReport gradgradcheck(const GradcheckFunction& f, const std::vector<Tensor>& inputs,
                              const GradcheckOptions& options = {});

}  // namespace xgrad
