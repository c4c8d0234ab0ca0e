// matmul: NumPy rules (1-D promotion, batch broadcasting), every dtype path, errors, gradients.
#include <doctest/doctest.h>

#include <cmath>

#include "core/kernels/matmul.hpp"
#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

void check_values(const Tensor& t, const Shape& shape, const std::vector<double>& expected) {
  CHECK(t.shape() == shape);
  CHECK(t.to_vector() == expected);
}

// Distinct, non-integer values so that a wrong index shows.
Tensor filled(const Shape& shape, double seed, DType dtype = DType::Float64) {
  std::vector<double> v(static_cast<std::size_t>(numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::round(8 * std::sin(seed + 0.9 * static_cast<double>(i)));
  return from_vector(v, shape, dtype);
}

// The definition, out[..., i, j] = sum_p a[..., i, p] b[..., p, j], with batch
// broadcasting, for operands of rank >= 2.
std::vector<double> reference_matmul(const Tensor& a, const Tensor& b, const Shape& out_shape) {
  const std::size_t rank = out_shape.size();
  const std::int64_t k = a.shape().back();
  // The element of operand shape s at the output's batch index and (row, col).
  auto operand_index = [&](const Shape& s, const Shape& out_index, std::int64_t row, std::int64_t col) {
    Shape at(s.size());
    for (std::size_t d = 0; d + 2 < s.size(); ++d) at[d] = s[d] == 1 ? 0 : out_index[d + rank - s.size()];
    at[s.size() - 2] = row;
    at[s.size() - 1] = col;
    return at;
  };
  std::vector<double> out;
  Shape index(rank, 0);
  for (std::int64_t flat = 0; flat < numel(out_shape); ++flat) {
    std::int64_t rest = flat;
    for (std::size_t d = rank; d-- > 0;) index[d] = rest % out_shape[d], rest /= out_shape[d];
    double total = 0;
    for (std::int64_t p = 0; p < k; ++p)
      total += a.at(operand_index(a.shape(), index, index[rank - 2], p)) *
               b.at(operand_index(b.shape(), index, p, index[rank - 1]));
    out.push_back(total);
  }
  return out;
}

Tensor mm(const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }

}  // namespace

TEST_CASE("matmul of 2x2 matrices in every dtype") {
  for (DType dtype : {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int32, DType::Int64}) {
    INFO(dtype_name(dtype));
    Tensor c = matmul(from_vector({1, 2, 3, 4}, {2, 2}, dtype), from_vector({5, 6, 7, 8}, {2, 2}, dtype));
    CHECK(c.dtype() == dtype);
    check_values(c, {2, 2}, {19, 22, 43, 50});
  }
  // bool: OR of ANDs
  Tensor b = matmul(from_vector({1, 0, 0, 0}, {2, 2}, DType::Bool), from_vector({0, 1, 1, 0}, {2, 2}, DType::Bool));
  CHECK(b.dtype() == DType::Bool);
  check_values(b, {2, 2}, {0, 1, 0, 0});
}

TEST_CASE("matmul promotes mixed dtypes and rounds 16-bit results once") {
  Tensor c = matmul(from_vector({1, 2}, {1, 2}, DType::Int32), from_vector({0.5, 0.25}, {2, 1}, DType::Float32));
  CHECK(c.dtype() == DType::Float32);
  CHECK(c.item() == 1.0);
  CHECK(matmul(ones({1, 1}, DType::Float16), ones({1, 1}, DType::BFloat16)).dtype() == DType::Float32);
  // 1 + 2^-11 + 2^-11 is exact in float32 and rounds to 1 + 2^-10 in float16;
  // float16 accumulation would round each partial sum back to 1.
  const double tiny = std::ldexp(1.0, -11);
  Tensor h = matmul(from_vector({1, 1, 1}, {1, 3}, DType::Float16), from_vector({1, tiny, tiny}, {3, 1}, DType::Float16));
  CHECK(h.item() == 1 + 2 * tiny);
}

TEST_CASE("matmul against the definition: odd sizes, batches, broadcasting") {
  struct Case {
    Shape a, b, out;
  };
  const Case cases[] = {
      {{5, 7}, {7, 3}, {5, 3}},
      {{2, 3, 4}, {4, 5}, {2, 3, 5}},        // shared right operand: one folded gemm
      {{2, 3, 4}, {1, 4, 5}, {2, 3, 5}},
      {{2, 1, 2, 3}, {3, 3, 2}, {2, 3, 2, 2}},  // both operands broadcast
      {{3, 4}, {2, 4, 2}, {2, 3, 2}},
      {{1, 2, 3}, {2, 3, 1}, {2, 2, 1}},
  };
  for (const Case& c : cases) {
    for (DType dtype : {DType::Float32, DType::Float64, DType::Int32}) {
      INFO(shape_str(c.a) << " @ " << shape_str(c.b) << " in " << dtype_name(dtype));
      const Tensor a = filled(c.a, 0.3, dtype), b = filled(c.b, 1.1, dtype);
      check_values(matmul(a, b), c.out, reference_matmul(a, b, c.out));
    }
  }
}

TEST_CASE("matmul of a long contraction (cut along k) and its gradients against the definition") {
  // C is 32 x 48 with k = 2048: too narrow to cut by rows or columns, so the GEMM is
  // cut along k and the pieces summed (core/kernels/gemm.cpp). Small integers keep
  // every sum exact, so the comparison is exact.
  for (DType dtype : {DType::Float32, DType::Float64}) {
    INFO(dtype_name(dtype));
    Tensor a = filled({32, 2048}, 0.3, dtype), b = filled({2048, 48}, 1.1, dtype);
    a.requires_grad_(), b.requires_grad_();
    const Tensor g = filled({32, 48}, 2.3, dtype);
    const Tensor c = matmul(a, b);
    check_values(c, {32, 48}, reference_matmul(a.detach(), b.detach(), {32, 48}));
    c.backward(g);
    const Tensor at = transpose(a.detach()), bt = transpose(b.detach());
    check_values(b.grad(), {2048, 48}, reference_matmul(at, g, {2048, 48}));
    check_values(a.grad(), {32, 2048}, reference_matmul(g, bt, {32, 2048}));
  }
}

TEST_CASE("matmul promotes 1-D operands as NumPy does") {
  const Tensor v = from_vector({1, 2, 3}, {3});
  check_values(matmul(v, from_vector({4, 5, 6}, {3})), {}, {32});
  check_values(matmul(from_vector({1, 2}, {2}), arange(1, 7, 1).reshape({2, 3})), {3}, {9, 12, 15});
  check_values(matmul(arange(1, 7, 1).reshape({2, 3}), from_vector({1, 0, -1}, {3})), {2}, {-2, -2});
  check_values(matmul(arange(0, 12, 1).reshape({2, 2, 3}), v), {2, 2}, {8, 26, 44, 62});
  check_values(matmul(from_vector({1, -1}, {2}), arange(0, 12, 1).reshape({2, 2, 3})), {2, 3}, {-3, -3, -3, -3, -3, -3});
}

TEST_CASE("matmul with empty dimensions") {
  check_values(matmul(ones({2, 0}), ones({0, 3})), {2, 3}, {0, 0, 0, 0, 0, 0});
  check_values(matmul(ones({0, 3}), ones({3, 2})), {0, 2}, {});
  check_values(matmul(ones({0, 2, 3}), ones({3, 2})), {0, 2, 2}, {});
  check_values(matmul(ones({2, 0}, DType::Int64), ones({0, 1}, DType::Int64)), {2, 1}, {0, 0});
}

TEST_CASE("matmul errors name both shapes") {
  CHECK_THROWS_WITH_AS(matmul(ones({32, 64}), ones({128, 10})),
                       "matmul: shapes [32, 64] and [128, 10] cannot be multiplied (64 != 128)", ShapeError);
  CHECK_THROWS_WITH_AS(matmul(ones({3}), ones({4})), "matmul: shapes [3] and [4] cannot be multiplied (3 != 4)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(matmul(ones({2, 3}), ones({2})), "matmul: shapes [2, 3] and [2] cannot be multiplied (3 != 2)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(matmul(ones({2, 3, 4}), ones({5, 4, 6})),
                       "matmul: batch dimensions of shapes [2, 3, 4] and [5, 4, 6] cannot be broadcast together ([2] "
                       "vs [5])",
                       ShapeError);
  CHECK_THROWS_WITH_AS(matmul(scalar(1.0), ones({2})),
                       "matmul: shapes [] and [2]: operands must have at least one dimension", ShapeError);
}

TEST_CASE("the kernel's transpose flags read operands transposed, on BLAS and on the integer loop") {
  for (DType dtype : {DType::Float32, DType::Float64, DType::Int64}) {
    INFO(dtype_name(dtype));
    const Tensor a = filled({2, 4, 3}, 0.7, dtype), b = filled({5, 4}, 2.0, dtype);  // a^T: [2, 3, 4], b^T: [4, 5]
    const Tensor at = transpose(a, {0, 2, 1}), bt = transpose(b);
    CHECK(kernels::matmul(a, b, true, true).to_vector() == matmul(at, bt).to_vector());
    CHECK(kernels::matmul(a, bt, true, false).to_vector() == matmul(at, bt).to_vector());
    CHECK(kernels::matmul(at, b, false, true).to_vector() == matmul(at, bt).to_vector());
  }
  CHECK(kernels::matmul(ones({2, 3}), ones({2, 3}), false, true).shape() == Shape{2, 2});
  CHECK_THROWS_WITH_AS(kernels::matmul(ones({2, 3}), ones({2, 3}), true, true),
                       "matmul: shapes [2, 3] (transposed) and [2, 3] (transposed) cannot be multiplied (2 != 3)",
                       ShapeError);
}

TEST_CASE("matmul gradients: hand values, dG . B^T and A^T . dG") {
  Tensor a = from_vector({1, 2, 3, 4}, {2, 2}).requires_grad_();
  Tensor b = from_vector({5, 6, 7, 8}, {2, 2}).requires_grad_();
  matmul(a, b).sum().backward();
  CHECK(a.grad().to_vector() == std::vector<double>{11, 15, 11, 15});
  CHECK(b.grad().to_vector() == std::vector<double>{4, 4, 6, 6});
  // A shared matrix gets the gradient summed over the batch.
  Tensor w = from_vector({1, -1}, {2, 1}).requires_grad_();
  matmul(ones({3, 4, 2}), w).sum().backward();
  CHECK(w.grad().to_vector() == std::vector<double>{12, 12});
}

TEST_CASE("gradcheck and gradgradcheck: matmul in every shape pattern") {
  test_support::check_first_and_second_order("2-D", mm, {filled({2, 3}, 0.1), filled({3, 4}, 0.2)});
  test_support::check_first_and_second_order("batched, both broadcast", mm, {filled({2, 1, 2, 3}, 0.3), filled({3, 3, 2}, 0.4)});
  test_support::check_first_and_second_order("shared right operand", mm, {filled({2, 2, 3}, 0.5), filled({3, 2}, 0.6)});
  test_support::check_first_and_second_order("vector @ matrix", mm, {filled({3}, 0.7), filled({3, 2}, 0.8)});
  test_support::check_first_and_second_order("matrix @ vector", mm, {filled({2, 3}, 0.9), filled({3}, 1.0)});
  test_support::check_first_and_second_order("vector @ vector", mm, {filled({3}, 1.1), filled({3}, 1.2)});
  test_support::check_first_and_second_order("vector @ batch", mm, {filled({2}, 1.3), filled({2, 2, 3}, 1.4)});
  test_support::check_first_and_second_order("chained", [](const std::vector<Tensor>& in) {
    return matmul(matmul(in[0], in[1]), transpose(in[0]));
  }, {filled({2, 3}, 1.5), filled({3, 3}, 1.6)});
}

TEST_CASE("matmul: large float products have the same bits at every thread count, and are right") {
  const int saved = num_threads();
  // Shapes that are cut into pieces along rows, along columns, transposed operands;
  // the last two cut with a transposed B small enough to be transposed first (the
  // attention block's input gradient, 1024 x 64 x 64, and both operands transposed).
  struct Case {
    std::int64_t m, n, k;
    bool ta, tb;
  };
  for (const Case c : {Case{300, 70, 500, false, false}, Case{64, 784, 256, false, true},
                       Case{784, 256, 64, true, false}, Case{200, 333, 300, true, true},
                       Case{1024, 64, 64, false, true}, Case{200, 48, 300, true, true}}) {
    CAPTURE(c.m);
    CAPTURE(c.n);
    const Shape as = c.ta ? Shape{c.k, c.m} : Shape{c.m, c.k}, bs = c.tb ? Shape{c.n, c.k} : Shape{c.k, c.n};
    const Tensor a = random_normal(make_key(1), as), b = random_normal(make_key(2), bs);
    const Tensor exact = kernels::matmul(cast(a, DType::Float64), cast(b, DType::Float64), c.ta, c.tb);
    std::vector<std::vector<double>> results;
    for (int threads : {1, 2, 3}) {
      set_num_threads(threads);
      results.push_back(kernels::matmul(a, b, c.ta, c.tb).to_vector());
    }
    set_num_threads(saved);
    CHECK(results[1] == results[0]);
    CHECK(results[2] == results[0]);
    const std::vector<double> want = exact.to_vector();
    double worst = 0;
    for (std::size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(results[0][i] - want[i]));
    CHECK(worst < 1e-3);  // float32 sums of <= 500 products of N(0, 1) values
  }
}
