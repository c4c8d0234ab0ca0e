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

// Designated initializers name the fields in this order: eps, atol, rtol, fast_mode, projections, seed,
// check_forward_ad, check_batched_grad.
struct GradcheckOptions {
  double eps = 1e-6;  // step of the central differences
  double atol = 1e-5;  // absolute tolerance
  double rtol = 1e-3;  // tolerance relative to |numeric|
  // Fast mode checks random projections v^T J u (one backward and two forward
  // evaluations per projection) instead of the whole Jacobian.
  bool fast_mode = false;
  int projections = 3;  // random projections in fast mode and in check_forward_ad
  std::uint64_t seed = 0;  // seed of the random projections
  // gradcheck (and gradgradcheck, on its VJP function: forward-over-reverse) also
  // runs check_forward_ad and check_batched_grad. Off by default, as in PyTorch:
  // an op recorded without a JVP rule fails check_forward_ad.
  bool check_forward_ad = false;
  bool check_batched_grad = false;  // also run check_batched_grad (below)
};

// The verdict of a check: whether every compared entry passed and, if not, the
// worst one. ok is false when an entry fails or f / backward throws (`failure`).
struct GradcheckReport {
  std::string check = "gradcheck";    // or "gradgradcheck": names the check in to_string()
  bool ok = true;  // every compared entry within tolerance and nothing threw
  std::size_t checked = 0;            // Jacobian entries (or projections) compared
  // The worst entry (largest error relative to its tolerance):
  std::size_t input = 0;              // which input
  std::int64_t input_element = -1;    // flat index into that input (-1 in fast mode)
  std::int64_t output_element = -1;   // flat index into the output (-1 in fast mode)
  // @{
  // The worst entry's analytic (backward) and numeric (central difference) values.
  double analytic = 0, numeric = 0;
  // @}
  double error_ratio = 0;             // |analytic - numeric| / tolerance there (> 1 fails)
  std::string failure;                // set when f or backward threw
  std::string to_string() const;      // a readable verdict naming the worst entry
};

// The function checked: inputs (floating ones in float64) -> one output tensor.
using GradcheckFunction = std::function<Tensor(const std::vector<Tensor>&)>;

// Checks d f / d inputs for every floating input (others are passed through unchanged).
GradcheckReport gradcheck(const GradcheckFunction& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

// Forward mode: the JVP of f (xgrad::jvp) against central differences, column by
// column (fast_mode: along `projections` random directions), and against the
// reverse mode through <J v, u> = <v, J^T u> for `projections` random (v, u).
GradcheckReport check_forward_ad(const GradcheckFunction& f, const std::vector<Tensor>& inputs,
                                 const GradcheckOptions& options = {});

// What pushing a batch of cotangents through one backward relies on (xgrad has no
// vmap): for `projections` random cotangents v_b and weights c_b, the gradient for
// sum_b c_b v_b equals sum_b c_b grad(v_b), so every VJP is linear in its cotangent,
// and backward over a retained graph repeats itself exactly.
GradcheckReport check_batched_grad(const GradcheckFunction& f, const std::vector<Tensor>& inputs,
                                   const GradcheckOptions& options = {});

// Second order: gradchecks (inputs, v) -> vjp_i = grad(f(inputs), inputs_i, v) for
// each input i, with a random cotangent v, through create_graph.
GradcheckReport gradgradcheck(const GradcheckFunction& f, const std::vector<Tensor>& inputs,
                              const GradcheckOptions& options = {});

}  // namespace xgrad
