// Helpers shared by the test files.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "xgrad.hpp"

namespace test_support {

// n deterministic, well-spread values in [lo, hi): a golden-ratio sequence (another
// `offset`, another sequence), so tests need no random state.
inline std::vector<double> golden_spread(std::int64_t n, double offset, double lo, double hi) {
  std::vector<double> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double phase = static_cast<double>(i + 1) * 0.6180339887498949 + offset;
    v[i] = lo + (hi - lo) * (phase - std::floor(phase));
  }
  return v;
}

// The largest |a - b| over all elements (as doubles); a and b must be defined and
// have one shape.
inline double max_abs_diff(const xgrad::Tensor& a, const xgrad::Tensor& b) {
  REQUIRE(a.defined());
  REQUIRE(b.defined());
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> va = a.to_vector(), vb = b.to_vector();
  double m = 0;
  for (std::size_t i = 0; i < va.size(); ++i) m = std::max(m, std::abs(va[i] - vb[i]));
  return m;
}

// How many elements of two same-shaped tensors differ in their bits, and by how much
// at most (float32 values widen to double exactly, so comparing the doubles' bytes
// compares the bits, signed zeros included).
struct BitDifference {
  std::size_t count = 0;
  double largest = 0;
};
inline BitDifference bit_difference(const xgrad::Tensor& a, const xgrad::Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> va = a.to_vector(), vb = b.to_vector();
  BitDifference d;
  for (std::size_t i = 0; i < va.size(); ++i)
    if (std::memcmp(&va[i], &vb[i], sizeof(double)) != 0) {
      ++d.count;
      d.largest = std::max(d.largest, std::abs(va[i] - vb[i]));
    }
  return d;
}

// The per-op checks run everything gradcheck has: the VJP, the JVP (forward mode,
// against finite differences and against the VJP) and the batched-cotangent check;
// through gradgradcheck the JVP check also covers forward-over-reverse.
inline const xgrad::GradcheckOptions every_check{.check_forward_ad = true, .check_batched_grad = true};

// gradcheck and gradgradcheck of f at `inputs` (with every_check), failing with the reports' text.
inline void check_first_and_second_order(const char* what, const xgrad::GradcheckFunction& f,
                                         const std::vector<xgrad::Tensor>& inputs) {
  INFO(what);
  const xgrad::GradcheckReport first = xgrad::gradcheck(f, inputs, every_check);
  CHECK_MESSAGE(first.ok, first.to_string());
  const xgrad::GradcheckReport second = xgrad::gradgradcheck(f, inputs, every_check);
  CHECK_MESSAGE(second.ok, second.to_string());
}

// gradcheck of a module with respect to its input and the named parameters
// (substituted through functional_call, so gradients flow into gradcheck's copies).
inline void check_module_gradients(xgrad::nn::Module& model, const xgrad::Tensor& input,
                                   const std::vector<std::string>& param_names) {
  std::vector<xgrad::Tensor> inputs{input};
  const xgrad::nn::StateDict state = model.state_dict();
  for (const auto& n : param_names) inputs.push_back(state.at(n));
  auto f = [&](const std::vector<xgrad::Tensor>& in) {
    xgrad::nn::StateDict substitutes;
    for (std::size_t i = 0; i < param_names.size(); ++i) substitutes[param_names[i]] = in[i + 1];
    return model.functional_call(substitutes, in[0]);
  };
  const xgrad::GradcheckReport r = xgrad::gradcheck(f, inputs, every_check);
  CHECK_MESSAGE(r.ok, r.to_string());
}

// Runs the scope at `threads` xgrad threads and restores the previous count
// however the scope ends (a failed REQUIRE throws). set_num_threads is
// process-wide: tests/main.cpp fails the run if a test case leaves it changed.
class ThreadCountGuard {
 public:
  explicit ThreadCountGuard(int threads) : previous_(xgrad::num_threads()) {
    xgrad::set_num_threads(threads);
    REQUIRE(xgrad::num_threads() == std::max(threads, 1));
  }
  ~ThreadCountGuard() { xgrad::set_num_threads(previous_); }
  ThreadCountGuard(const ThreadCountGuard&) = delete;
  ThreadCountGuard& operator=(const ThreadCountGuard&) = delete;

 private:
  const int previous_;
};

// The message of the E that f throws, or a marker when it throws nothing of that type.
template <class E>
std::string error_of(auto&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "(no error of the expected type)";
}

}  // namespace test_support
