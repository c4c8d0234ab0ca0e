// Initializers: fans, shapes, dtypes, and sample moments against the formulas.
#include <cmath>

#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;
namespace init = xgrad::nn::initializers;

namespace {

struct Moments {
  double mean = 0, variance = 0, max_abs = 0, min = INFINITY, max = -INFINITY;
};

Moments moments(const Tensor& t) {
  const auto v = t.to_vector();
  Moments m;
  for (double x : v) {
    m.mean += x;
    m.max_abs = std::max(m.max_abs, std::abs(x));
    m.min = std::min(m.min, x);
    m.max = std::max(m.max, x);
  }
  m.mean /= static_cast<double>(v.size());
  for (double x : v) m.variance += (x - m.mean) * (x - m.mean);
  m.variance /= static_cast<double>(v.size());
  return m;
}

const Key kKey = make_key(3);

// Column c of a row-major [rows, cols] tensor dotted with column d.
double column_dot(const std::vector<double>& q, std::int64_t rows, std::int64_t cols, std::int64_t c, std::int64_t d) {
  double s = 0;
  for (std::int64_t r = 0; r < rows; ++r) s += q[static_cast<std::size_t>(r * cols + c)] * q[static_cast<std::size_t>(r * cols + d)];
  return s;
}

}  // namespace

TEST_CASE("compute_fans follows JAX: the receptive field is every other axis") {
  CHECK(init::compute_fans({3, 4}) == std::pair<double, double>{3, 4});
  CHECK(init::compute_fans({5, 5, 3, 8}) == std::pair<double, double>{75, 200});  // HWIO conv kernel
  CHECK(init::compute_fans({6, 9, 4}) == std::pair<double, double>{54, 24});      // ConvLocal (O, S*C, F)
  CHECK(init::compute_fans({10, 4}, -1, 0) == std::pair<double, double>{4, 10});   // Embed: out_axis=0
  CHECK(init::compute_fans({2, 3, 4}, -2, -1, {0}) == std::pair<double, double>{3, 4});
  CHECK_THROWS_WITH_AS(init::lecun_normal()(kKey, {5}, DType::Float32),
                       "variance_scaling: in_axis -2 is out of range for shape [5] (rank 1)", ShapeError);
}

TEST_CASE("variance_scaling samples have the formula's variance for every mode and distribution") {
  const Shape shape{400, 500};  // fan_in 400, fan_out 500, fan_avg 450
  struct Case {
    nn::Initializer f;
    double variance;
    double bound;  // largest |x| the distribution allows (0: unbounded)
  };
  const double tn = 0.87962566103423978;
  const std::vector<Case> cases{
      {init::lecun_normal(), 1.0 / 400, 2 * std::sqrt(1.0 / 400) / tn},
      {init::lecun_uniform(), 1.0 / 400, std::sqrt(3.0 / 400)},
      {init::glorot_normal(), 1.0 / 450, 2 * std::sqrt(1.0 / 450) / tn},
      {init::xavier_uniform(), 1.0 / 450, std::sqrt(3.0 / 450)},
      {init::he_normal(), 2.0 / 400, 2 * std::sqrt(2.0 / 400) / tn},
      {init::kaiming_uniform(), 2.0 / 400, std::sqrt(6.0 / 400)},
      {init::variance_scaling(3.0, init::FanMode::FanOut, init::Distribution::Normal), 3.0 / 500, 0},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    CAPTURE(i);
    Tensor t = cases[i].f(kKey, shape, DType::Float32);
    CHECK(t.shape() == shape);
    CHECK(t.dtype() == DType::Float32);
    const Moments m = moments(t);
    CHECK(std::abs(m.mean) < 0.01 * std::sqrt(cases[i].variance));
    CHECK(m.variance == doctest::Approx(cases[i].variance).epsilon(0.02).scale(0));
    if (cases[i].bound > 0) CHECK(m.max_abs <= cases[i].bound * (1 + 1e-6));
  }
}

TEST_CASE("initializers honour the dtype and are deterministic in the key") {
  Tensor a = init::lecun_normal()(kKey, {8, 16}, DType::Float64);
  Tensor b = init::lecun_normal()(kKey, {8, 16}, DType::BFloat16);
  CHECK(b.dtype() == DType::BFloat16);
  CHECK(a.to_vector() == init::lecun_normal()(kKey, {8, 16}, DType::Float64).to_vector());
  // The same underlying samples, rounded once to bfloat16.
  const auto va = a.to_vector(), vb = b.to_vector();
  for (std::size_t i = 0; i < va.size(); ++i) CHECK(vb[i] == doctest::Approx(va[i]).epsilon(1.0 / 128).scale(0));
  CHECK_THROWS_WITH_AS(init::he_uniform()(kKey, {2, 2}, DType::Int32),
                       "variance_scaling: initializer needs a floating dtype, got int32", DTypeError);
  CHECK(init::zeros()(kKey, {2, 3}, DType::Int64).to_vector() == std::vector<double>(6, 0.0));
  CHECK(init::ones()(kKey, {2}, DType::Float16).to_vector() == std::vector<double>{1, 1});
  CHECK(init::constant(0.25)(kKey, {3}, DType::Float32).to_vector() == std::vector<double>{0.25, 0.25, 0.25});
}

TEST_CASE("normal, uniform and truncated_normal match their parameters") {
  const Moments n = moments(init::normal(0.5)(kKey, {200000}, DType::Float64));
  CHECK(n.variance == doctest::Approx(0.25).epsilon(0.02).scale(0));
  const Moments u = moments(init::uniform(2.0)(kKey, {200000}, DType::Float64));
  CHECK(u.min >= 0.0);
  CHECK(u.max < 2.0);
  CHECK(u.mean == doctest::Approx(1.0).epsilon(0.01));
  CHECK(u.variance == doctest::Approx(4.0 / 12).epsilon(0.02).scale(0));
  const Moments t = moments(init::truncated_normal(3.0, -1.0, 1.0)(kKey, {200000}, DType::Float64));
  CHECK(t.max_abs <= 3.0);
  // Variance of N(0,1) truncated to [-1, 1] is 1 - 2 phi(1) / (2 Phi(1) - 1) = 0.29112509..., times 9.
  CHECK(t.variance == doctest::Approx(9 * 0.2911250999).epsilon(0.02).scale(0));
}

TEST_CASE("orthogonal gives orthonormal columns (or rows when wide), scaled") {
  SUBCASE("tall") {
    const auto q = init::orthogonal()(kKey, {5, 3}, DType::Float64).to_vector();
    for (int c = 0; c < 3; ++c)
      for (int d = 0; d < 3; ++d) CHECK(column_dot(q, 5, 3, c, d) == doctest::Approx(c == d ? 1.0 : 0.0));
  }
  SUBCASE("wide, scaled") {
    const auto q = init::orthogonal(2.0)(kKey, {3, 5}, DType::Float64).to_vector();
    for (int r = 0; r < 3; ++r)
      for (int s = 0; s < 3; ++s) {
        double dot = 0;
        for (int c = 0; c < 5; ++c) dot += q[static_cast<std::size_t>(r * 5 + c)] * q[static_cast<std::size_t>(s * 5 + c)];
        CHECK(dot == doctest::Approx(r == s ? 4.0 : 0.0));
      }
  }
  SUBCASE("rank 3, column axis first") {
    // Shape [4, 2, 3] with column_axis 0: the matrix is [6, 4] with columns along axis 0.
    const auto q = init::orthogonal(1.0, 0)(kKey, {4, 2, 3}, DType::Float64).to_vector();
    std::vector<double> m(24);
    for (int c = 0; c < 4; ++c)
      for (int r = 0; r < 6; ++r) m[static_cast<std::size_t>(r * 4 + c)] = q[static_cast<std::size_t>(c * 6 + r)];
    for (int c = 0; c < 4; ++c)
      for (int d = 0; d < 4; ++d) CHECK(column_dot(m, 6, 4, c, d) == doctest::Approx(c == d ? 1.0 : 0.0));
  }
  SUBCASE("sign correction makes Q the QR factor with a positive diagonal of R") {
    // For a square Q with diag(R) > 0, R = Q^T A has a positive diagonal, where A is the
    // normal matrix the initializer drew from the same key.
    const auto q = init::orthogonal()(kKey, {4, 4}, DType::Float64).to_vector();
    const auto a = random_normal(kKey, {4, 4}, DType::Float64).to_vector();
    for (int j = 0; j < 4; ++j) {
      double rjj = 0;
      for (int i = 0; i < 4; ++i) rjj += q[static_cast<std::size_t>(i * 4 + j)] * a[static_cast<std::size_t>(i * 4 + j)];
      CHECK(rjj > 0);
    }
  }
  CHECK_THROWS_WITH_AS(init::orthogonal()(kKey, {4}, DType::Float32),
                       "orthogonal: initializer needs at least a 2-D shape, got [4]", ShapeError);
}
