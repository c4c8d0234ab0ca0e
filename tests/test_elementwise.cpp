// Forward values of the elementwise ops against hand-computed values: broadcasting,
// scalars, 0-d and empty tensors, special values, and the error messages.
#include <cmath>
#include <limits>

#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;

namespace {

using Values = std::vector<double>;

Tensor vec(const Values& v, DType dtype = DType::Float64) {
  return from_vector(v, {static_cast<std::int64_t>(v.size())}, dtype);
}

void check_close(const Tensor& t, const Values& expected, double tolerance = 1e-12) {
  const Values got = t.to_vector();
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    if (std::isnan(expected[i])) CHECK(std::isnan(got[i]));
    else if (std::isinf(expected[i])) CHECK(got[i] == expected[i]);
    else CHECK(got[i] == doctest::Approx(expected[i]).epsilon(tolerance).scale(1.0));
  }
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

}  // namespace

TEST_CASE("binary ops broadcast [2,1,3] with [4,1] into [2,4,3]") {
  const Tensor a = arange(0.0, 6.0, 1.0, DType::Float64).reshape({2, 1, 3});  // a[i,0,k] = 3i + k
  const Tensor b = arange(1.0, 5.0, 1.0, DType::Float64).reshape({4, 1});     // b[j,0] = j + 1
  const Tensor s = add(a, b), p = mul(a, b), d = sub(b, a), q = div(a, b);
  CHECK(s.shape() == Shape{2, 4, 3});
  CHECK(d.shape() == Shape{2, 4, 3});
  for (std::int64_t i = 0; i < 2; ++i)
    for (std::int64_t j = 0; j < 4; ++j)
      for (std::int64_t k = 0; k < 3; ++k) {
        const double x = 3.0 * i + k, y = j + 1.0;
        CHECK(s.at({i, j, k}) == x + y);
        CHECK(p.at({i, j, k}) == x * y);
        CHECK(d.at({i, j, k}) == y - x);
        CHECK(q.at({i, j, k}) == x / y);
      }
  // Broadcasting on both sides of an inner axis, and a row against a column.
  check_close(add(vec({1, 2, 3}).reshape({1, 3}), vec({10, 20}).reshape({2, 1})), {11, 12, 13, 21, 22, 23});
  check_close(maximum(vec({0, 5}).reshape({2, 1}), vec({1, 2, 6})), {1, 2, 6, 5, 5, 6});
}

TEST_CASE("broadcast iteration agrees with index arithmetic for many shape pairs") {
  // Covers merged axes, size-1 axes in every position, and runs along broadcast axes.
  const std::vector<std::pair<Shape, Shape>> pairs = {
      {{2, 3, 4}, {3, 1}},    {{2, 3, 4}, {2, 1, 4}}, {{2, 3, 4}, {1, 3, 4}}, {{5, 1}, {1}},
      {{1, 5}, {4, 1}},       {{2, 1, 3, 1}, {4, 1, 5}}, {{3, 4}, {3, 4}},     {{6, 1, 1}, {6, 1, 1}},
      {{1, 1, 7}, {2, 1, 1}}, {{2, 2, 2, 2}, {2, 1, 2, 1}}};
  for (const auto& [sa, sb] : pairs) {
    CAPTURE(shape_str(sa));
    CAPTURE(shape_str(sb));
    const Tensor a = arange(0.0, static_cast<double>(numel(sa)), 1.0, DType::Float64).reshape(sa);
    const Tensor b = arange(0.0, static_cast<double>(numel(sb)), 1.0, DType::Float64).reshape(sb) * 1000.0;
    const Tensor out = add(a, b);
    const Shape shape = out.shape();
    CHECK(shape == broadcast_shapes(sa, sb, "test"));
    const std::vector<double> got = out.to_vector();
    const std::vector<double> av = a.to_vector(), bv = b.to_vector();
    // Row-major index of the broadcast element of an operand of shape `s` for output index `idx`.
    auto source = [&](const Shape& s, const Shape& idx) {
      std::int64_t flat = 0;
      const std::size_t lead = shape.size() - s.size();
      for (std::size_t i = 0; i < s.size(); ++i) flat = flat * s[i] + (s[i] == 1 ? 0 : idx[lead + i]);
      return static_cast<std::size_t>(flat);
    };
    Shape idx(shape.size(), 0);
    for (std::size_t flat = 0; flat < got.size(); ++flat) {
      if (got[flat] != av[source(sa, idx)] + bv[source(sb, idx)]) FAIL("mismatch at flat index " << flat);
      for (std::size_t ax = shape.size(); ax-- > 0;) {
        if (++idx[ax] < shape[ax]) break;
        idx[ax] = 0;
      }
    }
  }
}

TEST_CASE("scalar, 0-d and empty operands") {
  const Tensor x = vec({1, -2, 4});
  check_close(x + 1.5, {2.5, -0.5, 5.5});
  check_close(1.5 - x, {0.5, 3.5, -2.5});
  check_close(x * 2, {2, -4, 8});
  check_close(2.0 / x, {2, -1, 0.5});
  check_close(-x, {-1, 2, -4});
  // 0-d with 0-d stays 0-d; 0-d with [3] broadcasts.
  const Tensor zero_d = add(scalar(2.0, DType::Float64), scalar(3.0, DType::Float64));
  CHECK(zero_d.shape() == Shape{});
  CHECK(zero_d.item() == 5.0);
  check_close(mul(scalar(3.0, DType::Float64), x), {3, -6, 12});
  check_close(pow(scalar(2.0, DType::Float64), vec({0, 1, 3})), {1, 2, 8});
  // Empty tensors broadcast to empty results.
  const Tensor e = zeros({0, 3}, DType::Float64);
  CHECK(add(e, vec({1, 2, 3})).shape() == Shape{0, 3});
  CHECK((e * 2.0).shape() == Shape{0, 3});
  CHECK(exp(e).shape() == Shape{0, 3});
  CHECK(where(less(e, 1.0 * e), e, 0.0 * e).shape() == Shape{0, 3});
  CHECK(add(zeros({2, 0}), zeros({1, 1})).shape() == Shape{2, 0});
  CHECK(equal(zeros({0}), zeros({0})).numel() == 0);
}

TEST_CASE("pow: tensor and scalar exponents, integers by squaring") {
  check_close(pow(vec({4, 9, 2}), vec({0.5, 0.5, -1})), {2, 3, 0.5});
  check_close(pow(vec({2, 3}).reshape({2, 1}), vec({1, 2, 3})), {2, 4, 8, 3, 9, 27});
  check_close(pow(vec({-3, 0.5, 0}), 2.0), {9, 0.25, 0});
  check_close(pow(vec({8, 0.25}), 1.0 / 3.0), {2, std::cbrt(0.25)});
  check_close(pow(vec({0, 2}), 0.0), {1, 1});
  const Tensor ints = pow(vec({2, 3, -2, 7}, DType::Int32), vec({10, 3, 3, 0}, DType::Int32));
  CHECK(ints.dtype() == DType::Int32);
  CHECK(ints.to_vector() == Values{1024, 27, -8, 1});
  // int64 exactness beyond float64's 53 bits.
  CHECK(pow(vec({3}, DType::Int64), vec({39}, DType::Int64)).data<std::int64_t>()[0] == 4052555153018976267LL);
  CHECK_THROWS_WITH_AS(pow(vec({2}, DType::Int32), vec({-1}, DType::Int32)),
                       "pow: integers cannot be raised to negative integer powers (got exponent -1); cast the base "
                       "to a floating dtype first",
                       ValueError);
}

TEST_CASE("maximum and minimum propagate NaN; where selects with broadcasting") {
  check_close(maximum(vec({1, 5, kNaN, 2}), vec({3, 4, 1, kNaN})), {3, 5, kNaN, kNaN});
  check_close(minimum(vec({1, 5, kNaN, 2}), vec({3, 4, 1, kNaN})), {1, 4, kNaN, kNaN});
  check_close(maximum(vec({-1, 2}, DType::Int64), vec({0}, DType::Int64)), {0, 2});
  // condition [2,1], x [3], y 0-d
  const Tensor c = from_vector({1, 0}, {2, 1}, DType::Bool);
  const Tensor w = where(c, vec({1, 2, 3}), scalar(-1.0, DType::Float64));
  CHECK(w.shape() == Shape{2, 3});
  check_close(w, {1, 2, 3, -1, -1, -1});
  check_close(where(from_vector({1, 0, 1}, {3}, DType::Bool), vec({1, 2, 3}), vec({7, 8, 9})), {1, 8, 3});
}

TEST_CASE("comparisons give Bool, in the promoted dtype; logical_not is x == 0") {
  const Tensor a = vec({1, 2, 3, kNaN});
  const Tensor b = vec({2, 2, 2, kNaN});
  CHECK(equal(a, b).dtype() == DType::Bool);
  CHECK(equal(a, b).to_vector() == Values{0, 1, 0, 0});
  CHECK(not_equal(a, b).to_vector() == Values{1, 0, 1, 1});
  CHECK(less(a, b).to_vector() == Values{1, 0, 0, 0});
  CHECK(less_equal(a, b).to_vector() == Values{1, 1, 0, 0});
  CHECK(greater(a, b).to_vector() == Values{0, 0, 1, 0});
  CHECK(greater_equal(a, b).to_vector() == Values{0, 1, 1, 0});
  // int32 against float16: compared as float16 values.
  CHECK(less(vec({1, 2}, DType::Int32), vec({1.5}, DType::Float16)).to_vector() == Values{1, 0});
  // broadcasting
  CHECK(greater(vec({1, 2, 3}).reshape({3, 1}), vec({2})).to_vector() == Values{0, 0, 1});
  CHECK(logical_not(from_vector({1, 0}, {2}, DType::Bool)).to_vector() == Values{0, 1});
  CHECK(logical_not(vec({0, 2.5, -1})).to_vector() == Values{1, 0, 0});
}

TEST_CASE("unary ops: values, special values and stability") {
  check_close(neg(vec({1, -0.5})), {-1, 0.5});
  check_close(exp(vec({0, 1, -kInf})), {1, std::exp(1.0), 0});
  check_close(sin(vec({0, 0.5, -2})), {0, std::sin(0.5), std::sin(-2.0)});
  check_close(cos(vec({0, 0.5, -2})), {1, std::cos(0.5), std::cos(-2.0)});
  check_close(log(vec({1, std::exp(2.0), 0})), {0, 2, -kInf});
  check_close(sqrt(vec({4, 2.25, 0})), {2, 1.5, 0});
  check_close(rsqrt(vec({4, 0.25})), {0.5, 2});
  check_close(abs(vec({-3, 0, 2.5})), {3, 0, 2.5});
  check_close(square(vec({-3, 0.5})), {9, 0.25});
  check_close(sign(vec({-3, 0, 2.5, kNaN})), {-1, 0, 1, kNaN});
  CHECK(std::signbit(sign(vec({-0.0})).item()));
  check_close(tanh(vec({0, 0.5, -0.5, 50})), {0, 0.46211715726000974, -0.46211715726000974, 1});
  check_close(sigmoid(vec({0, 0.5, 1000, -1000})), {0.5, 0.6224593312018546, 1, 0});
  check_close(relu(vec({-2, 0, 3, kNaN})), {0, 0, 3, kNaN});
  // softplus(x) = log(1 + e^x): no overflow for large x, no loss for very negative x.
  check_close(softplus(vec({0, 1.5, -2, 1000, -1000})),
              {std::log(2.0), 1.7014132779827524, 0.1269280110429725, 1000, 0});
  CHECK(softplus(vec({-50})).item() == doctest::Approx(std::exp(-50.0)).epsilon(1e-12));
  CHECK(sigmoid(vec({-50})).item() == doctest::Approx(std::exp(-50.0) / (1 + std::exp(-50.0))).epsilon(1e-12));
  // gelu, tanh form and exact form (values from the formulas in float64)
  check_close(gelu(vec({1, -0.5, 0})), {0.8411919906082768, -0.15428599017485606, 0});
  check_close(gelu(vec({1, -0.5, 0}), false), {0.8413447460685429, -0.15426876936299344, 0});
  check_close(gelu(vec({-30, 30})), {0, 30});
  // float32 results agree with the float64 formulas to float precision
  check_close(sigmoid(vec({0.5}, DType::Float32)), {0.6224593312018546}, 1e-6);
  check_close(gelu(vec({1}, DType::Float32)), {0.8411919906082768}, 1e-6);
}

TEST_CASE("integer unary ops keep the dtype and wrap like two's complement") {
  CHECK(neg(vec({3, -4}, DType::Int32)).to_vector() == Values{-3, 4});
  CHECK(abs(vec({-7, 0, 7}, DType::Int64)).to_vector() == Values{7, 0, 7});
  CHECK(square(vec({-7}, DType::Int32)).to_vector() == Values{49});
  CHECK(sign(vec({-7, 0, 9}, DType::Int64)).to_vector() == Values{-1, 0, 1});
  CHECK(relu(vec({-7, 0, 9}, DType::Int32)).to_vector() == Values{0, 0, 9});
  const double int32_max = std::numeric_limits<std::int32_t>::max();
  const double int32_min = std::numeric_limits<std::int32_t>::min();
  CHECK((vec({int32_max}, DType::Int32) + 1).item() == int32_min);
  CHECK(neg(vec({int32_min}, DType::Int32)).item() == int32_min);
  CHECK(square(vec({65536}, DType::Int32)).item() == 0);
}

TEST_CASE("clip: bounds included, NaN passes, integer bounds round inward") {
  check_close(clip(vec({-2, -1, 0.5, 1, 3, kNaN}), -1, 1), {-1, -1, 0.5, 1, 1, kNaN});
  // jnp.clip's order: min(max(x, lo), hi), so lo > hi gives hi everywhere.
  check_close(clip(vec({-5, 0, 5}), 2, 1), {1, 1, 1});
  CHECK(clip(vec({-3, 0, 1, 2, 3}, DType::Int32), 0.5, 2.5).to_vector() == Values{1, 1, 1, 2, 2});
  CHECK(clip(vec({-3, 3}, DType::Int64), -1e300, 1e300).to_vector() == Values{-3, 3});
  CHECK(clip(from_vector({1, 0}, {2}, DType::Bool), 0.5, 3).to_vector() == Values{1, 1});
  // float16 bounds materialise in float16: clip to 0.1 gives half(0.1) exactly.
  const Tensor h = clip(vec({0.0}, DType::Float16), 0.1, 1);
  CHECK(h.data<half>()[0].bits == half(0.1f).bits);
}

TEST_CASE("errors name the op and both shapes") {
  const Tensor a = zeros({2, 3}), b = zeros({4});
  CHECK_THROWS_WITH_AS(add(a, b), "add: shapes [2, 3] and [4] cannot be broadcast together (axis 1: 3 vs 4)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(mul(a, zeros({3, 3})),
                       "mul: shapes [2, 3] and [3, 3] cannot be broadcast together (axis 0: 2 vs 3)", ShapeError);
  CHECK_THROWS_WITH_AS(maximum(b, a), "maximum: shapes [4] and [2, 3] cannot be broadcast together (axis 1: 4 vs 3)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(less_equal(a, b),
                       "less_equal: shapes [2, 3] and [4] cannot be broadcast together (axis 1: 3 vs 4)", ShapeError);
  CHECK_THROWS_WITH_AS(pow(a, b), "pow: shapes [2, 3] and [4] cannot be broadcast together (axis 1: 3 vs 4)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(where(zeros({2, 3}, DType::Bool), a, b),
                       "where: condition, x and y shapes [2, 3], [2, 3] and [4] cannot be broadcast together",
                       ShapeError);
  CHECK_THROWS_WITH_AS(where(zeros({2, 3}), a, a),
                       "where: the condition must be a bool tensor, got float32 [2, 3] (compare it first, e.g. "
                       "not_equal(c, 0))",
                       DTypeError);
}
