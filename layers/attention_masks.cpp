#include "layers/attention_masks.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "core/error.hpp"

namespace xgrad::nn {

namespace {

bool batch_dims_broadcast(const Shape& a, const Shape& b) {
  // Everything but the last axis (the lengths) must broadcast.
  for (std::size_t i = 1; i < std::min(a.size(), b.size()); ++i) {
    const std::int64_t x = a[a.size() - 1 - i], y = b[b.size() - 1 - i];
    if (x != y && x != 1 && y != 1) return false;
  }
  return true;
}

Tensor is_true(const Tensor& m) { return m.dtype() == DType::Bool ? m : not_equal(m, zeros({}, m.dtype())); }

}  // namespace

Tensor make_attention_mask(const Tensor& query_input, const Tensor& key_input, const PairwiseFn& pairwise_fn,
                           std::int64_t extra_batch_dims, DType dtype) {
  if (query_input.dim() < 1 || key_input.dim() < 1 || !batch_dims_broadcast(query_input.shape(), key_input.shape()))
    throw ShapeError(fmt::format("make_attention_mask: query_input {} and key_input {} must be [batch..., length] "
                                 "with batch dims that broadcast",
                                 shape_str(query_input.shape()), shape_str(key_input.shape())));
  if (extra_batch_dims < 0)
    throw ValueError(fmt::format("make_attention_mask: extra_batch_dims must be >= 0, got {}", extra_batch_dims));
  const Tensor q = unsqueeze(query_input, -1), k = unsqueeze(key_input, -2);
  Tensor mask = pairwise_fn ? pairwise_fn(q, k) : mul(q, k);
  mask = unsqueeze(mask, -3);
  for (std::int64_t i = 0; i < extra_batch_dims; ++i) mask = unsqueeze(mask, 0);
  return cast(mask, dtype);
}

Tensor make_causal_mask(const Tensor& x, std::int64_t extra_batch_dims, DType dtype) {
  if (x.dim() < 1) throw ShapeError("make_causal_mask: x is a scalar; it must be [batch..., length]");
  const Tensor idxs = broadcast_to(arange(x.size(-1), DType::Int32), x.shape());
  return make_attention_mask(idxs, idxs, greater_equal, extra_batch_dims, dtype);
}

Tensor combine_masks(const std::vector<Tensor>& masks, DType dtype) {
  std::vector<Tensor> defined;
  for (const auto& m : masks)
    if (m.defined()) defined.push_back(m);
  if (defined.empty()) return Tensor();
  for (const auto& m : defined)
    if (m.dim() != defined[0].dim()) {
      std::vector<std::string> shapes;
      for (const auto& d : defined) shapes.push_back(shape_str(d.shape()));
      throw ValueError(fmt::format("combine_masks: masks must have the same rank, got {}", fmt::join(shapes, ", ")));
    }
  Tensor mask = is_true(defined[0]);
  for (std::size_t i = 1; i < defined.size(); ++i) mask = mul(mask, is_true(defined[i]));  // and, on bools
  return cast(mask, dtype);
}

}  // namespace xgrad::nn
