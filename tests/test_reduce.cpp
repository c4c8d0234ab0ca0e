// Reductions and softmax: values (hand-computed), dtypes, edge cases, errors.
// Gradients: tests/test_reduce_grad.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "xgrad.hpp"

using namespace xgrad;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Element-wise comparison; NaN matches NaN and infinities must be exact.
void check_values(const Tensor& t, const Shape& shape, const std::vector<double>& expected, double rel = 1e-6) {
  REQUIRE(t.shape() == shape);
  const auto got = t.to_vector();
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", expected " << expected[i]);
    if (std::isnan(expected[i])) CHECK(std::isnan(got[i]));
    else if (std::isinf(expected[i])) CHECK(got[i] == expected[i]);
    else CHECK(got[i] == doctest::Approx(expected[i]).epsilon(rel));
  }
}

// x[i, j, k] = 12 i + 4 j + k, shape [2, 3, 4].
Tensor cube(DType dtype = DType::Float32) { return arange(0, 24, 1, dtype).reshape({2, 3, 4}); }

}  // namespace

TEST_CASE("sum over every axis pattern: all, leading, trailing, middle, non-adjacent, keepdims") {
  const Tensor x = cube();
  check_values(sum(x), {}, {276});
  check_values(sum(x, {0}), {3, 4}, {12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34});
  check_values(sum(x, {-1}, true), {2, 3, 1}, {6, 22, 38, 54, 70, 86});
  check_values(sum(x, {1}), {2, 4}, {12, 15, 18, 21, 48, 51, 54, 57});  // 36 i + 12 + 3 k
  check_values(sum(x, {0, 2}), {3}, {60, 92, 124});                      // 32 j + 60 (transposed path)
  check_values(sum(x, {2, 0}, true), {1, 3, 1}, {60, 92, 124});
  check_values(sum(x, {0, 1}), {4}, {60, 66, 72, 78});                   // 6 k + 60
  // Size-1 axes between reduced ones do not break adjacency.
  check_values(sum(arange(0, 6, 1).reshape({2, 1, 3}), {0, 2}), {1}, {15});
  check_values(sum(arange(0, 15, 1).reshape({5, 3}), {0}), {3}, {30, 35, 40});
  CHECK(sum(x).dtype() == DType::Float32);
}

TEST_CASE("sum: long runs are exact, dtypes, 0-d and empty tensors") {
  check_values(sum(ones({1000})), {}, {1000});
  check_values(sum(arange(0, 1000, 1)), {}, {499500});  // pairwise blocks and tails
  check_values(sum(arange(0, 1000, 1).reshape({2, 500}), {1}), {2}, {124750, 374750});
  Tensor flags = from_vector({1, 0, 1, 1}, {4}, DType::Bool);
  CHECK(sum(flags).dtype() == DType::Int64);
  CHECK(sum(flags).item() == 3);
  Tensor ints = from_vector({1, 2, 3}, {3}, DType::Int32);
  CHECK(sum(ints).dtype() == DType::Int32);
  CHECK(sum(ints).item() == 6);
  CHECK(sum(from_vector({2147483647, 1}, {2}, DType::Int32)).item() == -2147483648.0);  // wraps, as in JAX
  Tensor halves = from_vector({0.5, 1.5, 2.0}, {3}, DType::Float16);
  CHECK(sum(halves).dtype() == DType::Float16);
  CHECK(sum(halves).item() == 4.0);
  check_values(sum(scalar(5.0)), {}, {5});
  check_values(sum(zeros({0, 3}), {0}), {3}, {0, 0, 0});
  check_values(sum(zeros({0, 3})), {}, {0});
  check_values(sum(zeros({3, 0}), {1}), {3}, {0, 0, 0});
}

TEST_CASE("reductions reject bad axes") {
  const Tensor x = cube();
  CHECK_THROWS_WITH_AS(sum(x, {0, 0}), "sum: repeated axis in [0, 0]", ShapeError);
  CHECK_THROWS_WITH_AS(sum(x, {3}), "sum: axis 3 is out of range for a tensor of rank 3", ShapeError);
  CHECK_THROWS_WITH_AS(max(x, {-4}), "max: axis -4 is out of range for a tensor of rank 3", ShapeError);
  CHECK_THROWS_WITH_AS(sum(scalar(1.0), {0}), "sum: axis 0 is out of range for a tensor of rank 0", ShapeError);
}

TEST_CASE("mean: axes, keepdims, integer input promotes, empty gives NaN") {
  const Tensor x = cube();
  check_values(mean(x), {}, {11.5});
  check_values(mean(x, {1}), {2, 4}, {4, 5, 6, 7, 16, 17, 18, 19});  // 12 i + 4 + k
  check_values(mean(x, {0, 2}, true), {1, 3, 1}, {7.5, 11.5, 15.5});
  Tensor ints = from_vector({1, 2}, {2}, DType::Int32);
  CHECK(mean(ints).dtype() == DType::Float32);
  CHECK(mean(ints).item() == 1.5);
  check_values(mean(zeros({0, 2}), {0}), {2}, {kNaN, kNaN});
  CHECK(x.mean().item() == 11.5);
}

TEST_CASE("max and min: axes, ties, keepdims, integers and bool") {
  const Tensor x = from_vector({1, 5, 5, 7, -2, 7}, {2, 3});
  check_values(max(x), {}, {7});
  check_values(max(x, {1}), {2}, {5, 7});
  check_values(max(x, {0}), {3}, {7, 5, 7});
  check_values(min(x, {-1}), {2}, {1, -2});
  check_values(min(x, {0}, true), {1, 3}, {1, -2, 5});
  check_values(max(cube(), {0, 2}), {3}, {15, 19, 23});
  check_values(min(cube(), {1, 2}), {2}, {0, 12});
  Tensor ints = from_vector({3, -8, 4}, {3}, DType::Int64);
  CHECK(max(ints).dtype() == DType::Int64);
  CHECK(min(ints).item() == -8);
  CHECK(max(from_vector({0, 1, 0}, {3}, DType::Bool)).item() == 1);
  check_values(max(scalar(2.5)), {}, {2.5});
  check_values(max(zeros({2, 0}), {0}), {0}, {});
}

TEST_CASE("max and min: long runs and columns, NaN propagates, infinities") {
  // 300 distinct values (i * 37 mod 300): the run is read in blocks of 64 plus a tail.
  std::vector<double> v(300);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i * 37 % 300);
  const Tensor run = from_vector(v, {300});
  check_values(max(run), {}, {299});
  check_values(min(run), {}, {0});
  // Column j of the [30, 10] view holds 7 j mod 10 + every multiple of 10 (70 r mod 300 runs over them).
  check_values(max(run.reshape({30, 10}), {0}), {10}, {290, 297, 294, 291, 298, 295, 292, 299, 296, 293});
  check_values(min(run.reshape({30, 10}), {0}), {10}, {0, 7, 4, 1, 8, 5, 2, 9, 6, 3});
  v[150] = kNaN;
  check_values(max(from_vector(v, {300})), {}, {kNaN});
  check_values(min(from_vector(v, {300})), {}, {kNaN});
  // NaN in a column: inside a block of four rows, in a tail row, in the first row.
  std::vector<double> c(10 * 3, 1.0);
  c[5 * 3 + 1] = kNaN;
  c[9 * 3 + 2] = kNaN;
  check_values(max(from_vector(c, {10, 3}), {0}), {3}, {1, kNaN, kNaN});
  check_values(min(from_vector(c, {10, 3}, DType::Float64), {0}), {3}, {1, kNaN, kNaN});
  check_values(max(from_vector({kNaN, 1, 2, 3, 4, 5, 6, 7}, {4, 2}), {0}), {2}, {kNaN, 7});
  check_values(max(from_vector({-kInf, -kInf, 2, kInf}, {2, 2}), {1}), {2}, {-kInf, kInf});
}

TEST_CASE("max and min of an empty reduction throw") {
  CHECK_THROWS_WITH_AS(max(zeros({0, 3}), {0}),
                       "max: the reduction over axes [0] of shape [0, 3] is empty and has no identity", ValueError);
  CHECK_THROWS_WITH_AS(min(zeros({0})), "min: the reduction over axes [0] of shape [0] is empty and has no identity",
                       ValueError);
}

TEST_CASE("argmax: first of ties, NaN wins, Int64, negative axis, 0-d") {
  const Tensor x = from_vector({1, 5, 5, 7, -2, 7}, {2, 3});
  Tensor rows = argmax(x, 1);
  CHECK(rows.dtype() == DType::Int64);
  check_values(rows, {2}, {1, 0});
  check_values(argmax(x, -2), {3}, {1, 0, 1});
  check_values(argmax(from_vector({1, kNaN, 3, kNaN}, {4}), 0), {}, {1});
  check_values(argmax(from_vector({1, 2, kNaN, 3, 4, 5}, {3, 2}), 0), {2}, {1, 2});
  check_values(argmax(cube(), 1), {2, 4}, {2, 2, 2, 2, 2, 2, 2, 2});
  check_values(argmax(scalar(4.0), 0), {}, {0});
  check_values(argmax(scalar(4.0), -1), {}, {0});
  CHECK_THROWS_WITH_AS(argmax(x, 2), "argmax: axis 2 is out of range for a tensor of rank 2", ShapeError);
  CHECK_THROWS_WITH_AS(argmax(zeros({2, 0}), 1), "argmax: axis 1 of shape [2, 0] is empty", ValueError);
}

TEST_CASE("logsumexp is stable and handles -inf") {
  const double ln2 = std::log(2.0);
  check_values(logsumexp(from_vector({0, 0, 1000, 1000}, {2, 2}), {1}), {2}, {ln2, 1000 + ln2});
  check_values(logsumexp(from_vector({-1000, -1000}, {2})), {}, {-1000 + ln2});
  check_values(logsumexp(zeros({2, 3})), {}, {std::log(6.0)});
  check_values(logsumexp(zeros({2, 3, 2}), {0, 2}, true), {1, 3, 1}, {std::log(4.0), std::log(4.0), std::log(4.0)});
  check_values(logsumexp(from_vector({-kInf, -kInf, -kInf, 0}, {2, 2}), {1}), {2}, {-kInf, 0});
  check_values(logsumexp(from_vector({kInf, 1}, {2})), {}, {kInf});
  check_values(logsumexp(zeros({2, 0}), {1}), {2}, {-kInf, -kInf});
  CHECK(logsumexp(from_vector({1, 2}, {2}, DType::Int32)).dtype() == DType::Float32);
}

TEST_CASE("var: ddof, axes, transposed path") {
  const Tensor x = from_vector({1, 2, 3, 4}, {4});
  check_values(var(x), {}, {1.25});
  check_values(var(x, {}, false, 1), {}, {5.0 / 3.0});
  check_values(var(from_vector({1, 2, 3, 5}, {2, 2}), {0}), {2}, {1, 2.25});
  check_values(var(from_vector({1, 2, 3, 5}, {2, 2}), {1}, true), {2, 1}, {0.25, 1});
  // x[i, j, k] = 4 i + 2 j + k; over (i, k) the values are 2 j + {0, 1, 4, 5}.
  check_values(var(arange(0, 8, 1).reshape({2, 2, 2}), {0, 2}), {2}, {4.25, 4.25});
  check_values(var(from_vector({3}, {1}), {}, false, 1), {}, {kNaN});  // 0 / 0, as NumPy
}

TEST_CASE("softmax and log_softmax: values, stability, axis, -inf") {
  const double ln2 = std::log(2.0), ln5 = std::log(5.0), ln3 = std::log(3.0);
  check_values(softmax(from_vector({0, ln2, ln5}, {3})), {3}, {1.0 / 8, 2.0 / 8, 5.0 / 8});
  check_values(softmax(from_vector({1000, 1000 + ln3}, {2}, DType::Float64)), {2}, {0.25, 0.75});
  check_values(softmax(from_vector({0, 0, ln3, ln3}, {2, 2}), 0), {2, 2}, {0.25, 0.25, 0.75, 0.75});
  check_values(softmax(from_vector({-kInf, 0}, {2})), {2}, {0, 1});
  check_values(softmax(scalar(3.0)), {}, {1});
  check_values(log_softmax(from_vector({0, ln3}, {2})), {2}, {std::log(0.25), std::log(0.75)});
  check_values(log_softmax(from_vector({-1000, -1000 + ln3}, {1, 2}, DType::Float64), -1), {1, 2}, {std::log(0.25), std::log(0.75)});
  check_values(log_softmax(from_vector({-kInf, 0}, {2})), {2}, {-kInf, 0});
  check_values(log_softmax(from_vector({0, 0, ln3, ln3}, {2, 2}), 0), {2, 2},
               {std::log(0.25), std::log(0.25), std::log(0.75), std::log(0.75)});
  // 16-bit floats compute in float32 and round once.
  Tensor h = softmax(from_vector({0, ln3}, {2}, DType::BFloat16));
  CHECK(h.dtype() == DType::BFloat16);
  check_values(h, {2}, {0.25, 0.75}, 1e-2);
  check_values(softmax(from_vector({0, ln3, 0, ln3}, {2, 2}, DType::Float16), 1), {2, 2}, {0.25, 0.75, 0.25, 0.75},
               1e-3);
  CHECK_THROWS_WITH_AS(softmax(zeros({2, 2}), 2), "softmax: axis 2 is out of range for a tensor of rank 2",
                       ShapeError);
  CHECK_THROWS_WITH_AS(softmax(scalar(1.0), 1), "softmax: axis 1 is out of range for a tensor of rank 0", ShapeError);
}

TEST_CASE("sum_to inverts broadcasting") {
  const Tensor x = arange(0, 6, 1).reshape({2, 3});
  check_values(sum_to(x, {1, 3}), {1, 3}, {3, 5, 7});
  check_values(sum_to(x, {3}), {3}, {3, 5, 7});
  check_values(sum_to(x, {2, 1}), {2, 1}, {3, 12});
  check_values(sum_to(x, {}), {}, {15});
  CHECK_THROWS_WITH_AS(sum_to(x, {2, 2}), "sum_to: shape [2, 3] is not a broadcast of [2, 2]", ShapeError);
}

TEST_CASE("Tensor::sum/mean/max/min methods take axes and keepdims like the free functions") {
  const Tensor x = from_vector({1, 5, 3, 4, 2, 6}, {2, 3});
  CHECK(x.sum().item() == 21);
  CHECK(x.sum({1}).to_vector() == std::vector<double>{9, 12});
  CHECK(x.sum({0}, true).shape() == Shape{1, 3});
  CHECK(x.mean({-1}).to_vector() == std::vector<double>{3, 4});
  CHECK(x.max({1}).to_vector() == std::vector<double>{5, 6});
  CHECK(x.min({0}, true).to_vector() == std::vector<double>{1, 2, 3});
  CHECK(x.min({0}, true).shape() == Shape{1, 3});
  CHECK(x.max().item() == 6);
  Tensor w = x.astype(DType::Float64).detach().requires_grad_();
  w.max({1}).sum().backward();
  CHECK(w.grad().to_vector() == std::vector<double>{0, 1, 0, 0, 0, 1});
}
