// The general local-conv path (fast kernels off: every configuration) runs one
// pass over the output positions split across threads, and a backward without
// create_graph takes its fused route (dx and dkernel from one pass). Checked: a
// hand-computed case on two threads, thread-count independence (1, 2, 3) on awkward
// geometries (padding, strides, both dilations, feature groups, float64), the
// fused route against the differentiable VJPs of create_graph, float16, and the
// blocked (SSE) patch-row copy and its adjoint against the patch formula.
#include <algorithm>
#include <cmath>

#include <doctest/doctest.h>

#include "core/kernels/conv/conv_local_fast.hpp"
#include "core/threading.hpp"
#include "xgrad.hpp"
#include "test_support.hpp"

using namespace xgrad;

namespace {

using test_support::max_abs_diff;

// The general path at `threads` threads for the scope.
struct GeneralPathThreads {
  const test_support::ThreadCountGuard thread_count;
  explicit GeneralPathThreads(int threads) : thread_count(threads) { kernels::set_conv_local_fast_enabled(false); }
  ~GeneralPathThreads() { kernels::set_conv_local_fast_enabled(true); }
};

struct Geometry {
  Shape x_shape;
  std::vector<std::int64_t> window, strides;
  Padding padding;
  std::vector<std::int64_t> lhs_dilation, rhs_dilation;
  std::int64_t features, groups;
};

// Standard normal values drawn in float32 and cast, so every dtype sees the same ones.
Tensor normal(std::uint64_t seed, const Shape& shape, DType dtype) {
  return random_normal(make_key(seed), shape).astype(dtype);
}

struct LocalGrads {
  Tensor y, dx, dk, db;
};

// y = biased local conv and the gradients of <y, g> for x, kernel and bias, on the
// general path at `threads` threads; create_graph keeps the differentiable VJP ops
// instead of the fused route.
LocalGrads run(const Geometry& s, DType dtype, int threads, bool create_graph) {
  const GeneralPathThreads path(threads);
  Tensor x = normal(1, s.x_shape, dtype).requires_grad_();
  // patches (N, O..., C*S) give the kernel shape (O..., C*S/G, F).
  const Shape patches =
      conv_general_dilated_patches(x.detach(), s.window, s.strides, s.padding, s.lhs_dilation, s.rhs_dilation)
          .shape();
  Shape k_shape(patches.begin() + 1, patches.end());
  k_shape.back() /= s.groups;
  k_shape.push_back(s.features);
  Shape out_shape(patches.begin(), patches.end() - 1), b_shape(patches.begin() + 1, patches.end() - 1);
  out_shape.push_back(s.features);
  b_shape.push_back(s.features);
  Tensor k = normal(2, k_shape, dtype).requires_grad_();
  Tensor b = normal(3, b_shape, dtype).requires_grad_();
  const Tensor g = normal(4, out_shape, dtype);
  const Tensor y = conv_general_dilated_local_bias(x, k, b, s.strides, s.padding, s.window, s.lhs_dilation,
                                                   s.rhs_dilation, s.groups, Precision::Default);
  const auto grads = grad({y}, {x, k, b}, {g}, {.create_graph = create_graph});
  return {y.detach(), grads[0].detach(), grads[1].detach(), grads[2].detach()};
}

void check_close(const LocalGrads& a, const LocalGrads& b, double tolerance) {
  CHECK(max_abs_diff(a.y, b.y) <= tolerance);
  CHECK(max_abs_diff(a.dx, b.dx) <= tolerance);
  CHECK(max_abs_diff(a.dk, b.dk) <= tolerance);
  CHECK(max_abs_diff(a.db, b.db) <= tolerance);
}

}  // namespace

TEST_CASE("General ConvLocal path on two threads: hand-computed 1-d case") {
  // x = [1, 2, 3], window 2, F = 1, two positions (one per thread):
  //   y0 = 10·1 + 20·2 = 50, y1 = 30·2 + 40·3 = 180; with g = [1, 2]:
  //   dx = [10·1, 20·1 + 30·2, 40·2] = [10, 80, 80] (x1 gets a share from each
  //   thread), dk0 = 1·[1, 2], dk1 = 2·[2, 3].
  const GeneralPathThreads path(2);
  const float xv[] = {1, 2, 3}, kv[] = {10, 20, 30, 40}, gv[] = {1, 2};
  Tensor x = from_data(xv, {1, 3, 1}).requires_grad_();
  Tensor k = from_data(kv, {2, 2, 1}).requires_grad_();
  const Tensor y = conv_general_dilated_local(x, k, {1}, "VALID", {2});
  CHECK(y.to_vector() == std::vector<double>{50, 180});
  y.backward(from_data(gv, {1, 2, 1}));
  CHECK(x.grad().to_vector() == std::vector<double>{10, 80, 80});
  CHECK(k.grad().to_vector() == std::vector<double>{1, 2, 4, 6});
}

TEST_CASE("General ConvLocal path: 1, 2 or 3 threads, fused backward or create_graph VJPs, give the same values") {
  const Geometry cases[] = {
      // 2-d, SAME padding, stride 2, two feature groups: out 4×3, kernel (4, 3, 12, 6).
      {{3, 7, 6, 4}, {3, 2}, {2, 2}, "SAME", {}, {}, 6, 2},
      // 1-d, lhs and rhs dilation 2, explicit uneven padding: out 16 positions.
      {{5, 9, 3}, {3}, {1}, Padding({{1, 2}}), {2}, {2}, 8, 1},
      // More threads' worth of positions than rows: 2-d, rhs dilation, SAME.
      {{2, 9, 9, 2}, {3, 3}, {1, 1}, "SAME", {}, {2, 1}, 5, 1},
  };
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    CAPTURE(dtype_name(dtype));
    const double tolerance = dtype == DType::Float64 ? 1e-12 : 1e-4;
    for (std::size_t i = 0; i < std::size(cases); ++i) {
      CAPTURE(i);
      const LocalGrads fused1 = run(cases[i], dtype, 1, false), fused2 = run(cases[i], dtype, 2, false);
      const LocalGrads separate1 = run(cases[i], dtype, 1, true), separate2 = run(cases[i], dtype, 2, true);
      // y and dk are per position: the same bits whatever the thread count.
      CHECK(max_abs_diff(fused1.y, fused2.y) == 0);
      CHECK(max_abs_diff(fused1.dk, fused2.dk) == 0);
      check_close(fused1, fused2, tolerance);
      check_close(fused1, separate1, tolerance);
      check_close(fused2, separate2, tolerance);
      // Three slots on two cores: a thread may run two slots, each still with its own dx copy.
      const LocalGrads fused3 = run(cases[i], dtype, 3, false);
      CHECK(max_abs_diff(fused1.y, fused3.y) == 0);
      CHECK(max_abs_diff(fused1.dk, fused3.dk) == 0);
      check_close(fused1, fused3, tolerance);
    }
  }
}

TEST_CASE("General ConvLocal fused backward in float16 rounds the float32 result") {
  const Geometry s{{4, 6, 5, 3}, {2, 2}, {1, 1}, "VALID", {}, {}, 4, 1};
  for (const int threads : {1, 2}) {
    CAPTURE(threads);
    const LocalGrads half = run(s, DType::Float16, threads, false), single = run(s, DType::Float32, threads, false);
    CHECK(half.dx.dtype() == DType::Float16);
    CHECK(half.dk.dtype() == DType::Float16);
    // The same inputs (rounded to float16): the gradients agree to float16's precision.
    for (const auto& [h, f] : {std::pair{half.dx, single.dx}, std::pair{half.dk, single.dk},
                               std::pair{half.db, single.db}}) {
      const auto vh = h.to_vector(), vf = f.to_vector();
      double worst = 0;
      for (std::size_t i = 0; i < vh.size(); ++i) worst = std::max(worst, std::abs(vh[i] - vf[i]) / (1 + std::abs(vf[i])));
      CHECK(worst < 2e-2);
    }
  }
}

TEST_CASE("Patch rows copied four offsets x four channels at a time, and scatter-added back: formula values") {
  // C = 6 (a 4-channel block and 2 left over), 3×3 window (two 4-offset blocks and
  // one left over), SAME padding (blocks that read padding), float32 (the SSE copy):
  // patches[b, oy, ox, c*9 + ky*3 + kx] = x[b, oy + ky - 1, ox + kx - 1, c], 0 outside.
  const Tensor x = arange(1.0, 1.0 + 2 * 5 * 4 * 6, 1.0).reshape({2, 5, 4, 6});
  const Tensor patches = conv_general_dilated_patches(x, {3, 3}, {1, 1}, "SAME");
  REQUIRE(patches.shape() == Shape{2, 5, 4, 54});
  int mismatches = 0;
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t oy = 0; oy < 5; ++oy)
      for (std::int64_t ox = 0; ox < 4; ++ox)
        for (std::int64_t c = 0; c < 6; ++c)
          for (std::int64_t ky = 0; ky < 3; ++ky)
            for (std::int64_t kx = 0; kx < 3; ++kx) {
              const std::int64_t iy = oy + ky - 1, ix = ox + kx - 1;
              const bool inside = iy >= 0 && iy < 5 && ix >= 0 && ix < 4;
              const double expected = inside ? static_cast<double>(1 + ((b * 5 + iy) * 4 + ix) * 6 + c) : 0.0;
              if (patches.at({b, oy, ox, c * 9 + ky * 3 + kx}) != expected) ++mismatches;
            }
  CHECK(mismatches == 0);

  // The adjoint (col2im, the same blocked copy backwards): for L = <patches(x), w>,
  // dx[b, iy, ix, c] = sum of w[b, oy, ox, c*9 + ky*3 + kx] over the windows reading it.
  const Tensor xg = x.detach().requires_grad_();
  const Tensor w = arange(0.0, 2.0 * 5 * 4 * 54, 1.0).reshape({2, 5, 4, 54});
  (conv_general_dilated_patches(xg, {3, 3}, {1, 1}, "SAME") * w).sum().backward();
  int grad_mismatches = 0;
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t iy = 0; iy < 5; ++iy)
      for (std::int64_t ix = 0; ix < 4; ++ix)
        for (std::int64_t c = 0; c < 6; ++c) {
          double expected = 0;
          for (std::int64_t ky = 0; ky < 3; ++ky)
            for (std::int64_t kx = 0; kx < 3; ++kx) {
              const std::int64_t oy = iy - ky + 1, ox = ix - kx + 1;
              if (oy >= 0 && oy < 5 && ox >= 0 && ox < 4) expected += w.at({b, oy, ox, c * 9 + ky * 3 + kx});
            }
          if (xg.grad().at({b, iy, ix, c}) != expected) ++grad_mismatches;
        }
  CHECK(grad_mismatches == 0);
}
