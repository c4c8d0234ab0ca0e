// Pooling: values with and without padding, count_include_pad, batch dims,
// gradient routing, and gradchecks of every reduction.
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>

#include "xgrad.hpp"
#include "test_support.hpp"

using namespace xgrad;

namespace {

// 1 x 4 x 4 x 1 image holding 0..15 row-major.
Tensor image4() { return arange(0.0, 16.0, 1.0, DType::Float32).reshape({1, 4, 4, 1}); }

std::vector<double> v(const Tensor& t) { return t.to_vector(); }

void check_grad(const std::function<Tensor(const Tensor&)>& f, const Tensor& x) {
  auto g = [&](const std::vector<Tensor>& in) { return f(in[0]); };
  GradcheckReport r = gradcheck(g, {x}, test_support::every_check);
  CHECK_MESSAGE(r.ok, r.to_string());
  GradcheckReport r2 = gradgradcheck(g, {x}, test_support::every_check);
  CHECK_MESSAGE(r2.ok, r2.to_string());
}

}  // namespace

TEST_CASE("max_pool and min_pool, VALID, 2x2 stride 2") {
  Tensor y = nn::max_pool(image4(), {2, 2}, {2, 2});
  CHECK(y.shape() == Shape{1, 2, 2, 1});
  CHECK(v(y) == std::vector<double>{5, 7, 13, 15});
  CHECK(v(nn::min_pool(image4(), {2, 2}, {2, 2})) == std::vector<double>{0, 2, 8, 10});
  // Default strides are 1.
  CHECK(v(nn::max_pool(image4(), {3, 3})) == std::vector<double>{10, 11, 14, 15});
}

TEST_CASE("SAME padding: padded positions never win a max, and avg_pool counts them or not") {
  // -(x + 1): every value is negative, so a zero from padding would win a max.
  Tensor negative = -(image4() + 1.0);
  Tensor m = nn::max_pool(negative, {3, 3}, {1, 1}, "SAME");
  CHECK(m.shape() == Shape{1, 4, 4, 1});
  CHECK(m.at({0, 0, 0, 0}) == -1);
  CHECK(m.at({0, 3, 3, 0}) == -11);
  // Corner window: 0 + 1 + 4 + 5 = 10; top edge (0, 1): 0 + 1 + 2 + 4 + 5 + 6 = 18; centre (1, 1): 45.
  Tensor with_pad = nn::avg_pool(image4(), {3, 3}, {1, 1}, "SAME");
  CHECK(with_pad.at({0, 0, 0, 0}) == doctest::Approx(10.0 / 9));
  CHECK(with_pad.at({0, 0, 1, 0}) == doctest::Approx(2.0));
  CHECK(with_pad.at({0, 1, 1, 0}) == doctest::Approx(5.0));
  Tensor without_pad = nn::avg_pool(image4(), {3, 3}, {1, 1}, "same", /*count_include_pad=*/false);
  CHECK(without_pad.at({0, 0, 0, 0}) == doctest::Approx(2.5));
  CHECK(without_pad.at({0, 0, 1, 0}) == doctest::Approx(3.0));
  CHECK(without_pad.at({0, 1, 1, 0}) == doctest::Approx(5.0));
}

TEST_CASE("explicit (lo, hi) padding pairs") {
  // Rows padded (1, 0), columns (0, 1): windows 2x2 at stride 2 over a 5 x 5 padded grid.
  Tensor a = nn::avg_pool(image4(), {2, 2}, {2, 2}, {{1, 0}, {0, 1}});
  CHECK(v(a) == std::vector<double>{0.25, 1.25, 6.5, 8.5});
  Tensor b = nn::avg_pool(image4(), {2, 2}, {2, 2}, {{1, 0}, {0, 1}}, false);
  CHECK(v(b) == std::vector<double>{0.5, 2.5, 6.5, 8.5});
  // One int pads every dim on both sides; SAME_LOWER puts the odd unit first.
  CHECK(v(nn::max_pool(image4(), {2, 2}, {2, 2}, 1)) == std::vector<double>{0, 2, 3, 8, 10, 11, 12, 14, 15});
  CHECK(nn::min_pool(image4(), {2, 2}, {1, 1}, "same_lower").at({0, 0, 0, 0}) == 0);
  CHECK(nn::min_pool(image4(), {2, 2}, {1, 1}, "SAME").at({0, 0, 0, 0}) == 0);
  CHECK(nn::max_pool(image4(), {2, 2}, {1, 1}, "SAME_LOWER").at({0, 3, 3, 0}) == 15);
  CHECK(nn::max_pool(image4(), {2, 2}, {1, 1}, "SAME").at({0, 3, 3, 0}) == 15);
  CHECK(nn::max_pool(image4(), {2, 2}, {1, 1}, "SAME_LOWER").at({0, 0, 0, 0}) == 0);
  CHECK(nn::max_pool(image4(), {2, 2}, {1, 1}, "SAME").at({0, 0, 0, 0}) == 5);
  // A window made only of padding: max gives -inf (reduce_window's init) and no gradient.
  Tensor x = ones({1, 2, 1});
  x.requires_grad_();
  Tensor y = nn::max_pool(x, {1}, {1}, {{2, 0}});
  CHECK(y.shape() == Shape{1, 4, 1});
  CHECK(y.at({0, 0, 0}) == -INFINITY);
  y.sum().backward();
  CHECK(v(x.grad()) == std::vector<double>{1, 1});
}

TEST_CASE("batch dims: none, one or several, as in Flax") {
  Tensor batched = random_normal(make_key(1), {2, 3, 4, 4, 5});
  Tensor y = nn::max_pool(batched, {2, 2}, {2, 2});
  CHECK(y.shape() == Shape{2, 3, 2, 2, 5});
  Tensor single = random_normal(make_key(2), {4, 4, 5});
  Tensor z = nn::avg_pool(single, {2, 2}, {2, 2});
  CHECK(z.shape() == Shape{2, 2, 5});
  CHECK(v(z) == v(nn::avg_pool(single.reshape({1, 4, 4, 5}), {2, 2}, {2, 2})));
  // 1-D and 3-D windows.
  CHECK(nn::max_pool(ones({1, 5, 2}), {2}).shape() == Shape{1, 4, 2});
  Tensor cube = arange(0.0, 64.0, 1.0).reshape({1, 4, 4, 4, 1});
  Tensor c = nn::max_pool(cube, {2, 2, 2}, {2, 2, 2});
  CHECK(c.shape() == Shape{1, 2, 2, 2, 1});
  CHECK(c.at({0, 0, 0, 0, 0}) == 21);  // element (1, 1, 1) = 16 + 4 + 1
}

TEST_CASE("max_pool sends the gradient to the first maximum of a window") {
  Tensor x = ones({1, 2, 2, 1});
  x.requires_grad_();
  nn::max_pool(x, {2, 2}).sum().backward();
  CHECK(v(x.grad()) == std::vector<double>{1, 0, 0, 0});
  // Overlapping windows add their gradients.
  Tensor w = from_vector({0, 3, 1, 2}, {1, 4, 1});
  w.requires_grad_();
  nn::max_pool(w, {2}).sum().backward();  // maxima 3, 3, 2
  CHECK(v(w.grad()) == std::vector<double>{0, 2, 0, 1});
}

TEST_CASE("pooling gradients match finite differences, first and second order") {
  const Tensor x = random_normal(make_key(5), {1, 4, 5, 2}, DType::Float64);
  check_grad([](const Tensor& t) { return nn::max_pool(t, {3, 3}, {2, 2}, "SAME"); }, x);
  check_grad([](const Tensor& t) { return nn::min_pool(t, {2, 3}, {1, 2}, {{1, 1}, {0, 2}}); }, x);
  // Disjoint windows, some elements in none.
  check_grad([](const Tensor& t) { return nn::max_pool(t, {2, 2}, {2, 3}); }, x);
  check_grad([](const Tensor& t) { return nn::avg_pool(t, {3, 3}, {1, 2}, "SAME"); }, x);
  check_grad([](const Tensor& t) { return nn::avg_pool(t, {3, 2}, {2, 1}, "SAME", false); }, x);
}

TEST_CASE("pooling errors name the function and the shapes") {
  CHECK_THROWS_WITH_AS(nn::max_pool(ones({4, 4}), {2, 2}),
                       "max_pool: input [4, 4] has too few dims for a 2-D window [2, 2] (expected [batch..., 2 "
                       "spatial dims, channels])",
                       ShapeError);
  CHECK_THROWS_WITH_AS(nn::avg_pool(image4(), {2, 2}, {1, 1}, "FULL"),
                       "avg_pool: padding 'FULL' is not supported (expected 'SAME', 'SAME_LOWER', 'VALID' or (lo, hi) "
                       "pairs)",
                       ValueError);
  CHECK_THROWS_WITH_AS(nn::min_pool(image4(), {2, 2}, {1, 1}, {{1, 1}}),
                       "min_pool: padding [(1, 1)] has 1 entries but the window [2, 2] has 2 dims", ShapeError);
  CHECK_THROWS_WITH_AS(nn::max_pool(image4(), {2, 2}, {1}),
                       "max_pool: strides [1] and window [2, 2] have different lengths", ShapeError);
}

TEST_CASE("float32 max_pool and min_pool over channel vectors route like the scalar path, ties and NaN included") {
  // float32 runs the 8-channel AVX2 loops (select and, with disjoint windows, its
  // transpose) for C = 8 and 16 on AVX2 CPUs, the 4-channel ones for C = 4 and 72;
  // float64 the scalar ones. Values in {0, 1, 2} make many ties (the first extreme
  // wins), and a few NaNs (which win).
  for (std::int64_t channels : {4, 8, 16, 72}) {
    CAPTURE(channels);
    const Shape shape{2, 7, 6, channels};
    std::vector<double> values = random_uniform(make_key(9), shape, DType::Float64, 0.0, 3.0).to_vector();
    for (double& e : values) e = std::floor(e);
    for (std::size_t i : {5u, 100u, 101u, 333u}) values[i] = NAN;
    struct Pool {
      Shape window, strides;
      Padding padding;
    };
    // Disjoint windows (one-pass transpose) with and without uncovered elements or
    // windows of padding only; overlapping ones (scatter-add).
    const Pool pools[] = {{{2, 2}, {2, 2}, "VALID"},        {{2, 2}, {3, 3}, "VALID"},
                          {{2, 2}, {2, 2}, {{1, 2}, {0, 1}}}, {{3, 3}, {1, 2}, "SAME"},
                          {{2, 1}, {1, 1}, {{3, 0}, {0, 0}}}};
    for (bool take_max : {true, false}) {
      for (const Pool& p : pools) {
        std::vector<std::vector<double>> outs, grads;
        for (DType dtype : {DType::Float32, DType::Float64}) {
          Tensor x = from_vector(values, shape, dtype);
          x.requires_grad_();
          Tensor y = take_max ? nn::max_pool(x, p.window, p.strides, p.padding)
                              : nn::min_pool(x, p.window, p.strides, p.padding);
          // Integer cotangents: sums of several are exact in both dtypes.
          std::vector<double> cotangent = random_uniform(make_key(11), y.shape(), DType::Float64, 1.0, 9.0).to_vector();
          for (double& e : cotangent) e = std::floor(e);
          (y * from_vector(cotangent, y.shape(), dtype)).sum().backward();
          outs.push_back(v(y));
          grads.push_back(v(x.grad()));
        }
        CAPTURE(take_max);
        CAPTURE(p.padding.to_string());
        REQUIRE(outs[0].size() == outs[1].size());
        for (std::size_t i = 0; i < outs[0].size(); ++i) {
          CAPTURE(i);
          CHECK((outs[0][i] == outs[1][i] || (std::isnan(outs[0][i]) && std::isnan(outs[1][i]))));
        }
        CHECK(grads[0] == grads[1]);  // the same elements receive the same cotangents
      }
    }
  }
}

TEST_CASE("max_pool over a large float32 input gives the same values and gradients at 1 and 2 threads") {
  const Tensor x0 = random_normal(make_key(12), {8, 64, 64, 8});  // large enough to split over samples
  std::vector<std::vector<double>> outs, grads;
  for (int threads : {1, 2}) {
    const test_support::ThreadCountGuard thread_count(threads);
    Tensor x = x0.detach().requires_grad_();
    Tensor y = nn::max_pool(x, {2, 2}, {2, 2});
    (y * y).sum().backward();
    outs.push_back(v(y));
    grads.push_back(v(x.grad()));
  }
  CHECK(outs[0] == outs[1]);
  CHECK(grads[0] == grads[1]);
}

TEST_CASE("max_pool's gradient of a large float32 input (written with streaming stores) routes like float64") {
  // From 2 MiB of input gradient on, the 8-channel AVX2 transpose writes with
  // streaming stores (core/kernels/pool.cpp); float64 runs the scalar loop. Integer
  // values make ties; 65 columns leave the last one uncovered (zero-filled apart).
  for (std::int64_t channels : {8, 16}) {
    CAPTURE(channels);
    const Shape shape{16 * 8 / channels * 2, 64, 65, channels};  // >= 2 MiB of float32
    std::vector<double> values = random_uniform(make_key(21), shape, DType::Float64, 0.0, 4.0).to_vector();
    for (double& e : values) e = std::floor(e);
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      const test_support::ThreadCountGuard thread_count(threads);
      std::vector<std::vector<double>> grads;
      double cotangent_sum = 0;
      for (DType dtype : {DType::Float32, DType::Float64}) {
        Tensor x = from_vector(values, shape, dtype);
        x.requires_grad_();
        Tensor y = nn::max_pool(x, {2, 2}, {2, 2});
        std::vector<double> cotangent = random_uniform(make_key(22), y.shape(), DType::Float64, 1.0, 9.0).to_vector();
        for (double& e : cotangent) e = std::floor(e);
        cotangent_sum = std::accumulate(cotangent.begin(), cotangent.end(), 0.0);
        (y * from_vector(cotangent, y.shape(), dtype)).sum().backward();
        grads.push_back(v(x.grad()));
      }
      REQUIRE(grads[0].size() == static_cast<std::size_t>(numel(shape)));
      CHECK(grads[0] == grads[1]);
      // Each window's cotangent went to one element (integers: exact sums); the
      // uncovered column got none.
      CHECK(std::accumulate(grads[0].begin(), grads[0].end(), 0.0) == cotangent_sum);
      bool uncovered_zero = true;
      for (std::int64_t row = 0; row < numel(shape) / (65 * channels); ++row)
        for (std::int64_t k = 0; k < channels; ++k)
          uncovered_zero = uncovered_zero && grads[0][static_cast<std::size_t>((row * 65 + 64) * channels + k)] == 0.0;
      CHECK(uncovered_zero);
    }
  }
}
