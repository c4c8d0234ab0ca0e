#include "data/dataset.hpp"

#include <cstring>

#include <fmt/format.h>

#include "core/tensor_impl.hpp"

namespace xgrad {
namespace {

const char* raw_bytes(const Tensor& t) {
  return visit_dtype(t.dtype(), [&](auto tag) { return reinterpret_cast<const char*>(t.data<decltype(tag)>()); });
}
char* raw_bytes(Tensor& t) {
  return visit_dtype(t.dtype(), [&](auto tag) { return reinterpret_cast<char*>(t.data<decltype(tag)>()); });
}

// Copies rows `indices` of `source` (row = slice along axis 0) into a new tensor.
Tensor gather_rows(const Tensor& source, const std::vector<std::size_t>& indices) {
  Shape shape = source.shape();
  const std::size_t row_bytes =
      static_cast<std::size_t>(numel(Shape(shape.begin() + 1, shape.end()))) * itemsize(source.dtype());
  shape[0] = static_cast<std::int64_t>(indices.size());
  Tensor out = empty(shape, source.dtype());
  const char* in = raw_bytes(source);
  char* dst = raw_bytes(out);
  for (std::size_t i = 0; i < indices.size(); ++i)
    std::memcpy(dst + i * row_bytes, in + indices[i] * row_bytes, row_bytes);
  return out;
}

}  // namespace

TensorDataset::TensorDataset(Tensor inputs, Tensor targets) : inputs_(std::move(inputs)), targets_(std::move(targets)) {
  if (!inputs_.defined() || !targets_.defined())
    throw ShapeError("TensorDataset: inputs and targets must be defined tensors");
  if (inputs_.dim() == 0 || targets_.dim() == 0 || inputs_.size(0) != targets_.size(0))
    throw ShapeError(fmt::format(
        "TensorDataset: inputs {} and targets {} must have rank >= 1 and the same first dimension",
        shape_str(inputs_.shape()), shape_str(targets_.shape())));
}

std::size_t TensorDataset::size() const { return static_cast<std::size_t>(inputs_.size(0)); }

Batch TensorDataset::get_batch(const std::vector<std::size_t>& indices) const {
  for (const std::size_t i : indices)
    if (i >= size())
      throw ValueError(fmt::format("TensorDataset::get_batch: index {} out of range for {} examples", i, size()));
  return {gather_rows(inputs_, indices), gather_rows(targets_, indices)};
}

}  // namespace xgrad
