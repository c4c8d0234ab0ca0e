// Keyed random numbers: determinism, independence of derived keys, distributions.
#include <algorithm>
#include <cmath>
#include <numeric>

#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;

namespace {

std::pair<double, double> mean_and_variance(const Tensor& t) {
  const auto v = t.to_vector();
  double m = 0, s = 0;
  for (double x : v) m += x;
  m /= static_cast<double>(v.size());
  for (double x : v) s += (x - m) * (x - m);
  return {m, s / static_cast<double>(v.size())};
}

}  // namespace

TEST_CASE("the same key gives the same values; derived keys differ") {
  Key k = make_key(42);
  CHECK(random_normal(k, {5}, DType::Float64).to_vector() == random_normal(k, {5}, DType::Float64).to_vector());
  CHECK(fold_in(k, "encoder.conv1") == fold_in(make_key(42), "encoder.conv1"));
  CHECK_FALSE(fold_in(k, "encoder.conv1") == fold_in(k, "encoder.conv2"));
  auto [a, b] = split(k);
  CHECK_FALSE(a == b);
  // A prefix of a larger draw equals the smaller draw: values depend only on (key, index).
  const auto big = random_uniform(k, {100}, DType::Float64).to_vector();
  const auto small = random_uniform(k, {10}, DType::Float64).to_vector();
  CHECK(std::equal(small.begin(), small.end(), big.begin()));
}

TEST_CASE("distributions have the right moments and ranges") {
  const Key k = make_key(7);
  const std::int64_t n = 200000;
  auto [mn, vn] = mean_and_variance(random_normal(k, {n}, DType::Float64, 1.0, 2.0));
  CHECK(mn == doctest::Approx(1.0).epsilon(0.02));
  CHECK(vn == doctest::Approx(4.0).epsilon(0.02));
  auto [mu, vu] = mean_and_variance(random_uniform(k, {n}, DType::Float64, -1.0, 3.0));
  CHECK(mu == doctest::Approx(1.0).epsilon(0.01));
  CHECK(vu == doctest::Approx(16.0 / 12.0).epsilon(0.02));
  // Standard normal truncated to [-2, 2]: variance 0.774597... (1 - 2*2*phi(2)/(Phi(2)-Phi(-2))).
  Tensor t = random_truncated_normal(k, {n}, DType::Float64);
  auto [mt, vt] = mean_and_variance(t);
  CHECK(std::abs(mt) < 0.01);
  CHECK(vt == doctest::Approx(0.7737413).epsilon(0.02));
  const auto values = t.to_vector();
  CHECK(*std::max_element(values.begin(), values.end()) <= 2.0);
  CHECK(*std::min_element(values.begin(), values.end()) >= -2.0);
  auto [mb, vb] = mean_and_variance(cast(random_bernoulli(k, {n}, 0.3), DType::Float64));
  CHECK(mb == doctest::Approx(0.3).epsilon(0.02));
  CHECK(vb == doctest::Approx(0.3 * 0.7).epsilon(0.02));
}

TEST_CASE("random_permutation is a permutation and depends on the key") {
  Tensor p = random_permutation(make_key(1), 1000);
  auto v = p.to_vector();
  std::vector<double> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  std::vector<double> identity(1000);
  std::iota(identity.begin(), identity.end(), 0.0);
  CHECK(sorted == identity);
  CHECK(v != random_permutation(make_key(2), 1000).to_vector());
}

TEST_CASE("random_randint: [low, high), JAX's argument order, dtype, clipping and high <= low") {
  const Tensor r = random_randint(make_key(1), {20000}, -3, 4);
  CHECK(r.dtype() == DType::Int64);
  CHECK(r.shape() == Shape{20000});
  const auto v = r.to_vector();
  std::vector<int> counts(7, 0);
  for (double x : v) {
    REQUIRE(x >= -3);
    REQUIRE(x < 4);
    ++counts[static_cast<std::size_t>(x + 3)];
  }
  for (int c : counts) CHECK(std::abs(c - 20000.0 / 7) < 200);  // every value, about equally often
  CHECK(random_randint(make_key(1), {20000}, -3, 4).to_vector() == v);  // deterministic
  CHECK(random_randint(make_key(2), {20000}, -3, 4).to_vector() != v);
  const Tensor i32 = random_randint(make_key(3), {100}, 0, std::int64_t{1} << 40, DType::Int32);
  CHECK(i32.dtype() == DType::Int32);  // high clipped to int32's max
  for (double x : i32.to_vector()) CHECK((x >= 0 && x < 2147483647.0));
  CHECK(random_randint(make_key(4), {5}, 7, 7).to_vector() == std::vector<double>(5, 7));  // high <= low: low
  CHECK(random_randint(make_key(4), {5}, 7, 2).to_vector() == std::vector<double>(5, 7));
  CHECK_THROWS_AS(random_randint(make_key(4), {5}, 0, 2, DType::Float32), DTypeError);
}

TEST_CASE("random_categorical samples softmax(logits) along an axis (Gumbel-max, JAX's semantics)") {
  const Tensor logits = log(from_vector({0.1, 0.2, 0.7, 0.5, 0.5, 0.0}, {2, 3}));  // the last class impossible in row 1
  const Tensor one = random_categorical(make_key(7), logits);
  CHECK(one.dtype() == DType::Int64);
  CHECK(one.shape() == Shape{2});
  const Tensor many = random_categorical(make_key(7), logits, -1, Shape{30000, 2});
  CHECK(many.shape() == Shape{30000, 2});
  std::vector<std::vector<double>> freq(2, std::vector<double>(3, 0));
  const auto v = many.to_vector();
  for (std::size_t i = 0; i < v.size(); ++i) freq[i % 2][static_cast<std::size_t>(v[i])] += 1.0 / 30000;
  CHECK(freq[0][0] == doctest::Approx(0.1).epsilon(0.06));
  CHECK(freq[0][1] == doctest::Approx(0.2).epsilon(0.04));
  CHECK(freq[0][2] == doctest::Approx(0.7).epsilon(0.02));
  CHECK(freq[1][0] == doctest::Approx(0.5).epsilon(0.03));
  CHECK(freq[1][2] == 0.0);
  // axis 0: one draw per column, among the rows.
  const Tensor columns = random_categorical(make_key(8), transpose(logits), 0);
  CHECK(columns.shape() == Shape{2});
  CHECK(columns.to_vector()[1] != 2.0);
  CHECK_THROWS_AS(random_categorical(make_key(7), logits, -1, Shape{3}), ShapeError);
  CHECK_THROWS_AS(random_categorical(make_key(7), logits, 2), ShapeError);
}
