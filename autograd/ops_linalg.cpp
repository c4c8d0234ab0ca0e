// Matrix product and its VJP.
#include <fmt/format.h>

#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "autograd/tangents.hpp"
#include "core/kernels/matmul.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad {

namespace {

// C = op(A) . op(B) on operands of rank >= 2, op(M) = M or M^T (last two axes)
// as flagged: transposes are read by BLAS, never materialised. With G = dC:
//   dA = G . op(B)^T   (A^T when A was transposed: dA = op(B) . G^T)
//   dB = op(A)^T . G   (B^T when B was transposed: dB = G^T . op(A))
// each summed over the batch dims its operand was broadcast along.
Tensor matmul_flagged(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  Tensor out = kernels::matmul(a, b, transpose_a, transpose_b);
  return record("matmul", out, {a, b}, [a, b, transpose_a, transpose_b](const Tensor& g, const Tensor&) -> Grads {
    Tensor ga, gb;
    if (a.requires_grad())
      ga = sum_to(transpose_a ? matmul_flagged(b, g, transpose_b, true) : matmul_flagged(g, b, false, !transpose_b),
                  a.shape());
    if (b.requires_grad())
      gb = sum_to(transpose_b ? matmul_flagged(g, a, true, transpose_a) : matmul_flagged(a, g, !transpose_a, false),
                  b.shape());
    return {ga, gb};
  }, Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {  // product rule: dA.B + A.dB
    return tangents::plus(t[0].defined() ? matmul_flagged(t[0], b, transpose_a, transpose_b) : Tensor(),
                          t[1].defined() ? matmul_flagged(a, t[1], transpose_a, transpose_b) : Tensor());
  });
}

}  // namespace

// NumPy rules: a 1-D left operand is a row [1, k], a 1-D right operand a column
// [k, 1], and the added axis is removed from the result.
Tensor matmul(const Tensor& a, const Tensor& b) {
  if (a.dim() == 0 || b.dim() == 0)
    throw ShapeError(fmt::format("matmul: shapes {} and {}: operands must have at least one dimension",
                                 shape_str(a.shape()), shape_str(b.shape())));
  const bool a_vector = a.dim() == 1, b_vector = b.dim() == 1;
  const std::int64_t ka = a.size(-1), kb = b_vector ? b.size(0) : b.size(-2);
  if (ka != kb)
    throw ShapeError(fmt::format("matmul: shapes {} and {} cannot be multiplied ({} != {})", shape_str(a.shape()),
                                 shape_str(b.shape()), ka, kb));
  Tensor out = matmul_flagged(a_vector ? reshape(a, {1, ka}) : a, b_vector ? reshape(b, {kb, 1}) : b, false, false);
  if (!a_vector && !b_vector) return out;
  Shape shape = out.shape();
  if (b_vector) shape.erase(shape.end() - 1);
  if (a_vector) shape.erase(shape.end() - 1 - (b_vector ? 0 : 1));
  return reshape(out, shape);
}

}  // namespace xgrad
