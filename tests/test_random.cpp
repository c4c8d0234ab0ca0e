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
