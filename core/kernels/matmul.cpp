#include "core/kernels/matmul.hpp"

#include <algorithm>
#include <climits>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "core/kernels/broadcast.hpp"
#include "core/kernels/gemm.hpp"
#include "core/kernels/elementwise.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad::kernels {

namespace {

// One matrix product C[m, n] = op(A) . op(B) on contiguous row-major matrices,
// op(A) = A[m, k] or, transposed, A stored as [k, m] (likewise B: [k, n] or [n, k]).
struct Gemm {
  bool transpose_a = false, transpose_b = false;
  std::int64_t m = 0, n = 0, k = 0;

  std::int64_t a_size() const { return m * k; }
  std::int64_t b_size() const { return k * n; }

  std::int64_t lda() const { return std::max<std::int64_t>(transpose_a ? m : k, 1); }
  std::int64_t ldb() const { return std::max<std::int64_t>(transpose_b ? k : n, 1); }

  // float and double: cblas, split over xgrad's threads (gemm.hpp).
  template <class T>
    requires std::is_floating_point_v<T>
  void operator()(const T* a, const T* b, T* c, std::int64_t rows) const {
    gemm<T>(transpose_a, transpose_b, rows, n, k, a, lda(), b, ldb(), c, std::max<std::int64_t>(n, 1));
  }
  // Integers and bool: row i of C accumulates a[i, p] * b[p, :] over p, a contiguous
  // (vectorisable) inner loop; bool sums through int64, so the result is OR of ANDs.
  template <class T>
    requires(!std::is_floating_point_v<T>)
  void operator()(const T* a, const T* b, T* c, std::int64_t rows) const {
    std::vector<std::int64_t> row(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < rows; ++i) {
      std::fill(row.begin(), row.end(), 0);
      for (std::int64_t p = 0; p < k; ++p) {
        const auto av = static_cast<std::int64_t>(transpose_a ? a[p * m + i] : a[i * k + p]);
        if (transpose_b)
          for (std::int64_t j = 0; j < n; ++j) row[static_cast<std::size_t>(j)] += av * static_cast<std::int64_t>(b[j * k + p]);
        else
          for (std::int64_t j = 0; j < n; ++j) row[static_cast<std::size_t>(j)] += av * static_cast<std::int64_t>(b[p * n + j]);
      }
      for (std::int64_t j = 0; j < n; ++j) c[i * n + j] = convert_element<T>(row[static_cast<std::size_t>(j)]);
    }
  }
};

std::string operand_str(const Shape& shape, bool transposed) {
  return transposed ? shape_str(shape) + " (transposed)" : shape_str(shape);
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  const Shape &as = a.shape(), &bs = b.shape();
  if (as.size() < 2 || bs.size() < 2)
    throw ShapeError(fmt::format("matmul: the kernel needs operands of rank >= 2, got {} and {}", shape_str(as),
                                 shape_str(bs)));
  const std::size_t ar = as.size(), br = bs.size();
  Gemm product{transpose_a, transpose_b, transpose_a ? as[ar - 1] : as[ar - 2], transpose_b ? bs[br - 2] : bs[br - 1],
            transpose_a ? as[ar - 2] : as[ar - 1]};
  const std::int64_t kb = transpose_b ? bs[br - 1] : bs[br - 2];
  if (product.k != kb)
    throw ShapeError(fmt::format("matmul: shapes {} and {} cannot be multiplied ({} != {})",
                                 operand_str(as, transpose_a), operand_str(bs, transpose_b), product.k, kb));
  for (std::int64_t d : {product.m, product.n, product.k})
    if (d > INT_MAX) throw ShapeError(fmt::format("matmul: dimension {} exceeds the BLAS index range", d));
  const Shape a_batch(as.begin(), as.end() - 2), b_batch(bs.begin(), bs.end() - 2);
  Shape batch;
  try {
    batch = broadcast_shapes(a_batch, b_batch, "matmul");
  } catch (const ShapeError&) {
    throw ShapeError(fmt::format("matmul: batch dimensions of shapes {} and {} cannot be broadcast together ({} vs {})",
                                 shape_str(as), shape_str(bs), shape_str(a_batch), shape_str(b_batch)));
  }
  const DType dtype = promote_types(a.dtype(), b.dtype());
  Shape out_shape = batch;
  out_shape.push_back(product.m);
  out_shape.push_back(product.n);
  if (dtype == DType::Float16 || dtype == DType::BFloat16)
    return cast(matmul(cast(a, DType::Float32), cast(b, DType::Float32), transpose_a, transpose_b), dtype);

  if (product.k == 0) return zeros(out_shape, dtype);  // sums of nothing
  Tensor out = empty(out_shape, dtype);  // beta = 0: the products overwrite every element
  if (out.numel() == 0) return out;
  const Tensor ca = cast(a, dtype), cb = cast(b, dtype);
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, half> && !std::is_same_v<T, bfloat16>) {
      const T* pa = ca.data<T>();
      const T* pb = cb.data<T>();
      T* pc = out.data<T>();
      const std::int64_t c_size = product.m * product.n;
      // A shared right operand and a full, untransposed left one: the batch folds
      // into the rows of a single product [batch * m, k] . [k, n].
      if (!transpose_a && numel(b_batch) == 1 && numel(a_batch) == numel(batch)) {
        product(pa, pb, pc, numel(batch) * product.m);
        return;
      }
      for_each_broadcast_run(batch, broadcast_strides(a_batch, batch), broadcast_strides(b_batch, batch),
                             [&](std::int64_t o, std::int64_t ia, std::int64_t ib, std::int64_t count, std::int64_t sa,
                                 std::int64_t sb) {
                               for (std::int64_t j = 0; j < count; ++j)
                                 product(pa + (ia + j * sa) * product.a_size(), pb + (ib + j * sb) * product.b_size(),
                                      pc + (o + j) * c_size, product.m);
                             });
    }
  });
  return out;
}

}  // namespace xgrad::kernels
