// NaN, Inf and out-of-range values: what xgrad does with them (IEEE 754 for floats,
// XLA's rules where C++ leaves a conversion undefined), and where it refuses them.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

template <class T>
std::vector<T> values_of(const Tensor& t) {
  return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
}

}  // namespace

TEST_CASE("float-to-integer conversion maps NaN to 0 and saturates, as XLA does") {
  // C++ leaves these casts undefined (UBSan: float-cast-overflow); JAX gives exactly this.
  const std::vector<double> v = {kNaN, kInf, -kInf, 3e9, -3e9, 1e300, 2.9, -2.9, -0.5};
  constexpr auto i32_max = std::numeric_limits<std::int32_t>::max();
  constexpr auto i32_min = std::numeric_limits<std::int32_t>::min();
  CHECK(values_of<std::int32_t>(from_vector(v, {9}, DType::Int32)) ==
        std::vector<std::int32_t>{0, i32_max, i32_min, i32_max, i32_min, i32_max, 2, -2, 0});
  constexpr auto i64_max = std::numeric_limits<std::int64_t>::max();
  constexpr auto i64_min = std::numeric_limits<std::int64_t>::min();
  CHECK(values_of<std::int64_t>(from_vector(v, {9}, DType::Int64)) ==
        std::vector<std::int64_t>{0, i64_max, i64_min, 3000000000, -3000000000, i64_max, 2, -2, 0});
  // The edges: 2^31 - 1 and -2^31 are exact, one past them saturates.
  CHECK(values_of<std::int32_t>(from_vector({2147483647.0, 2147483648.0, -2147483648.0, -2147483649.0}, {4},
                                            DType::Int32)) ==
        std::vector<std::int32_t>{i32_max, i32_max, i32_min, i32_min});
  // The same rules from every floating storage type, through cast, copy_ and fill_.
  for (DType from : {DType::Float16, DType::BFloat16, DType::Float32, DType::Float64}) {
    CAPTURE(from);
    const Tensor x = from_vector({kNaN, kInf, -kInf, 7.0}, {4}, from);
    CHECK(values_of<std::int32_t>(x.astype(DType::Int32)) == std::vector<std::int32_t>{0, i32_max, i32_min, 7});
    CHECK(values_of<std::int64_t>(zeros({4}, DType::Int64).copy_(x)) ==
          std::vector<std::int64_t>{0, i64_max, i64_min, 7});
  }
  CHECK(values_of<std::int32_t>(zeros({2}, DType::Int32).fill_(kNaN)) == std::vector<std::int32_t>{0, 0});
  // NaN is truthy, as in NumPy and JAX.
  CHECK(values_of<bool>(from_vector({kNaN, 0.0, -0.0}, {3}, DType::Bool)) == std::vector<bool>{true, false, false});
}

TEST_CASE("16-bit floats overflow to Inf and keep NaN") {
  const Tensor h = from_vector({70000.0, -70000.0, 65504.0, kNaN}, {4}, DType::Float16);
  CHECK(h.at({0}) == kInf);
  CHECK(h.at({1}) == -kInf);
  CHECK(h.at({2}) == 65504.0);
  CHECK(std::isnan(h.at({3})));
  const Tensor b = from_vector({1e39, kNaN}, {2}, DType::BFloat16);
  CHECK(b.at({0}) == kInf);
  CHECK(std::isnan(b.at({1})));
}

TEST_CASE("NaN and Inf propagate through arithmetic and reductions unchecked") {
  // No op inspects its values (that would cost a pass over every tensor); IEEE 754 decides.
  const Tensor x = from_vector({kNaN, kInf, -kInf, 2.0}, {4}, DType::Float32);
  const std::vector<double> plus_one = (x + 1.0).to_vector();
  CHECK(std::isnan(plus_one[0]));
  CHECK(plus_one[1] == kInf);
  CHECK(plus_one[2] == -kInf);
  CHECK(plus_one[3] == 3.0);
  const std::vector<double> times_zero = (x * 0.0).to_vector();
  CHECK(std::isnan(times_zero[0]));
  CHECK(std::isnan(times_zero[1]));  // Inf * 0
  CHECK(std::isnan(times_zero[2]));
  CHECK(times_zero[3] == 0.0);
  const std::vector<double> reciprocal = (1.0 / from_vector({0.0, -0.0, kInf}, {3})).to_vector();
  CHECK(reciprocal == std::vector<double>{kInf, -kInf, 0.0});
  CHECK(std::isnan(x.sum().item()));
  CHECK(std::isnan(from_vector({kInf, -kInf}, {2}).sum().item()));
  CHECK(from_vector({kInf, 1.0}, {2}).mean().item() == kInf);
  // Float32 sums overflow to Inf like any float32 arithmetic.
  CHECK(full({4}, 3e38, DType::Float32).sum().item() == kInf);
}

TEST_CASE("selections propagate NaN as JAX does: relu, maximum, clip, max, argmax, softmax, pooling") {
  const Tensor x = from_vector({1.0, kNaN, 3.0, -1.0}, {4});
  const auto nan_at = [](const Tensor& t) {
    std::vector<bool> out;
    for (double v : t.to_vector()) out.push_back(std::isnan(v));
    return out;
  };
  CHECK(nan_at(relu(x)) == std::vector<bool>{false, true, false, false});
  CHECK(nan_at(maximum(x, zeros({4}))) == std::vector<bool>{false, true, false, false});
  CHECK(nan_at(minimum(x, zeros({4}))) == std::vector<bool>{false, true, false, false});
  CHECK(nan_at(clip(x, 0.0, 2.0)) == std::vector<bool>{false, true, false, false});
  CHECK(std::isnan(max(x).item()));
  CHECK(std::isnan(min(x).item()));
  CHECK(argmax(x, 0).item() == 1);  // NaN is the maximum, as in NumPy and JAX
  CHECK(nan_at(softmax(x)) == std::vector<bool>{true, true, true, true});
  // Pooling: a window holding a NaN yields NaN wherever the NaN sits in it, and its
  // gradient goes to the (first) NaN.
  for (const std::vector<double>& v : {std::vector<double>{1, kNaN, 3, 2}, std::vector<double>{kNaN, 1, 2, 3}}) {
    Tensor p = from_vector(v, {1, 4, 1}).requires_grad_();
    const Tensor pooled = nn::max_pool(p, {2}, {2});
    CHECK(nan_at(pooled) == std::vector<bool>{true, false});
    CHECK(nan_at(nn::min_pool(p, {2}, {2})) == std::vector<bool>{true, false});
    pooled.sum().backward();
    const std::vector<double> g = p.grad().to_vector();
    CHECK(g[0] + g[1] == 1.0);
    CHECK((std::isnan(v[0]) ? g[0] : g[1]) == 1.0);
  }
}

TEST_CASE("detect_anomaly also stops at an infinite gradient; without it Inf flows on") {
  Tensor x = from_vector({0.0, 2.0}, {2}, DType::Float64).requires_grad_();
  Tensor y = div(ones({2}, DType::Float64), x);  // forward Inf at x = 0 is fine; its gradient -1/x^2 is -Inf
  {
    DetectAnomalyGuard anomaly;
    try {
      y.sum().backward({}, /*retain_graph=*/true);
      FAIL("expected an AutogradError");
    } catch (const AutogradError& e) {
      CHECK(std::string(e.what()) ==
            "detect_anomaly: the backward of 'div' produced a non-finite gradient for its input 1 (shape [2]), "
            "which is a leaf");
    }
  }
  y.sum().backward();
  CHECK(x.grad().to_vector() == std::vector<double>{-kInf, -0.25});
}

TEST_CASE("arange refuses element counts that no tensor can hold") {
  CHECK_THROWS_WITH_AS(arange(0.0, kInf), "arange: [0, inf) with step 1 has inf elements, too many", ValueError);
  CHECK_THROWS_WITH_AS(arange(0.0, kNaN), "arange: [0, nan) with step 1 has nan elements, too many", ValueError);
  CHECK_THROWS_WITH_AS(arange(0.0, 1e300, 1e200), "arange: [0, 1e+300) with step 1e+200 has 1e+100 elements, too many",
                       ValueError);
  CHECK(arange(0.0, -kInf).numel() == 0);
  CHECK(arange(5.0, 0.0).numel() == 0);
}
