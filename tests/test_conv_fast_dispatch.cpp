// The AVX2 fast path behind conv_general_dilated_local agrees with the general
// path: float32 through the dispatch versus float64 (always the general path).
#include <cmath>

#include <doctest/doctest.h>

#include "conv_fast_2d.hpp"

#include "core/kernels/conv/conv_local_fast.hpp"
#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

using test_support::max_abs_diff;

struct Run {
  Tensor y, dx, dk;
};

Run run_local(DType dtype, const Tensor& x0, const Tensor& k0, const Tensor& g0, std::vector<std::int64_t> rhs_dil) {
  Tensor x = cast(x0, dtype).detach().requires_grad_();
  Tensor k = cast(k0, dtype).detach().requires_grad_();
  Tensor y = conv_general_dilated_local(x, k, {1, 1}, "VALID", {3, 3}, {}, rhs_dil);
  (y * cast(g0, dtype)).sum().backward();
  return {y, x.grad(), k.grad()};
}

}  // namespace

TEST_CASE("ConvLocal float32 fast path matches the float64 general path") {
  const bool fast = test_support::conv_local2d_fast_supported({.batch = 2, .in_height = 9, .in_width = 8,
                                                          .in_features = 3, .kernel_height = 3, .kernel_width = 3,
                                                          .features = 16});
  if (!fast) MESSAGE("this CPU has no AVX2/FMA: the dispatch falls back to the general path (still checked)");
  for (std::int64_t dil : {1, 2}) {
    const std::int64_t n = 5, h = 9, w = 8, c = 3, f = 16;
    const std::int64_t oh = h - 2 * dil, ow = w - 2 * dil;
    const Tensor x = random_normal(make_key(1), {n, h, w, c}, DType::Float64);
    const Tensor k = random_normal(make_key(2), {oh, ow, 9 * c, f}, DType::Float64);
    const Tensor g = random_normal(make_key(3), {n, oh, ow, f}, DType::Float64);
    const Run r32 = run_local(DType::Float32, x, k, g, {dil, dil});
    const Run r64 = run_local(DType::Float64, x, k, g, {dil, dil});
    CAPTURE(dil);
    CHECK(r32.y.dtype() == DType::Float32);
    CHECK(max_abs_diff(r32.y, r64.y) < 1e-4);
    CHECK(max_abs_diff(r32.dx, r64.dx) < 1e-4);
    CHECK(max_abs_diff(r32.dk, r64.dk) < 1e-4);
  }
}
