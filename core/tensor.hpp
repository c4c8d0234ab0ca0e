// xgrad::Tensor: a cheap-to-copy handle to an n-dimensional array with a runtime
// dtype, plus the autograd bookkeeping (requires_grad, grad, the node that made it).
//
// Tensors are always dense and row-major. Copying a Tensor copies the handle, not
// the data (like torch::Tensor); use clone() for a deep copy. The element storage
// is an xt::xarray<T> (see core/xarray.hpp to reach it); this header stays light.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.hpp"
#include "core/shape.hpp"

namespace xgrad {

struct TensorImpl;
struct Node;
class IndexRef;

// An n-dimensional array handle (see the top of this file). Accessors of an undefined tensor throw ValueError.
class Tensor {
 public:
  Tensor() = default;  // an undefined tensor: defined() is false
  // Wraps an implementation object (for kernels and ops; users create tensors with zeros(), from_vector(), ...).
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // False for a default-constructed Tensor.
  bool defined() const { return impl_ != nullptr; }
  DType dtype() const;                         // the element type
  const Shape& shape() const;                  // the extent of each axis
  // The number of axes.
  std::int64_t dim() const { return static_cast<std::int64_t>(shape().size()); }
  std::int64_t numel() const;                  // the number of elements (1 for a 0-d tensor)
  std::int64_t size(std::int64_t axis) const;  // negative axes count from the end

  // Raw row-major element pointer; T must be the tensor's exact element type (DTypeError otherwise).
  template <class T> T* data();
  // Read-only raw row-major element pointer; DTypeError unless T is the tensor's element type.
  template <class T> const T* data() const;

  // Element access converted to double (for tests, printing and small loops).
  double item() const;                         // one-element tensors only
  // JAX's x.at[index] (IndexRef below): reads one element as a double with a full
  // index (double v = x.at({1, 2})), and gives functional updates x.at({1}).set(v).
  IndexRef at(const Shape& index) const;
  std::vector<double> to_vector() const;       // all elements, row-major

  Tensor clone() const;                        // deep copy, not recorded on the tape
  Tensor astype(DType dtype) const;            // differentiable between floating dtypes

  // ---- in-place writes (bump the version counter; no gradient flows through them)
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& source);         // same shape; converts dtype
  // Counts in-place writes to the storage (shared by views such as detach()); the tape checks it.
  std::uint64_t version() const;
  // Marks an in-place write done through data<T>() so saved-for-backward checks see it.
  void bump_version();

  // ---- autograd
  bool requires_grad() const;
  Tensor& requires_grad_(bool enabled = true);  // leaves only; floating dtypes only
  bool is_leaf() const;                          // not produced by a recorded op
  Tensor grad() const;                           // accumulated gradient (undefined if none)
  void set_grad(const Tensor& grad);             // replaces .grad(); ShapeError unless shapes match
  void zero_grad();                              // drops the accumulated gradient
  const std::shared_ptr<Node>& grad_fn() const;  // the recorded op that made it; null for a leaf
  Tensor detach() const;                         // same storage, cut from the graph
  // Reverse-mode sweep from this tensor. Without a cotangent the tensor must have one element.
  void backward(const Tensor& cotangent = Tensor(), bool retain_graph = false,
                bool create_graph = false) const;

  // ---- a few differentiable ops as methods, for chaining (all ops: autograd/ops.hpp).
  // Reductions take axes (empty: every axis; negative count from the end) and keepdims,
  // as the free functions: x.sum({1}, true), x.max({-1}).
  Tensor sum(const std::vector<std::int64_t>& axes = {}, bool keepdims = false) const;
  // The mean over `axes`; xgrad::mean.
  Tensor mean(const std::vector<std::int64_t>& axes = {}, bool keepdims = false) const;
  // The maximum over `axes`; xgrad::max.
  Tensor max(const std::vector<std::int64_t>& axes = {}, bool keepdims = false) const;
  // The minimum over `axes`; xgrad::min.
  Tensor min(const std::vector<std::int64_t>& axes = {}, bool keepdims = false) const;
  // The same elements in a new shape of equal numel; xgrad::reshape (ShapeError if they differ).
  Tensor reshape(const Shape& shape) const;

  std::string to_string() const;  // shape, dtype and (abbreviated) values

  // The implementation object (storage, autograd links), for kernels and ops; null if undefined.
  TensorImpl* impl() const { return impl_.get(); }
  // The shared implementation pointer, for kernels and ops that keep the tensor alive.
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// x.at(index), as JAX's x.at[index]: `index` gives integers for the leading axes
// (negative ones count from the end) and selects x[i0, i1, ...], one element for a
// full index or a sub-array for a shorter one. The updates are functional: they
// return a new tensor of x's shape and dtype (the value is cast to it) and leave x
// unchanged; like JAX's, they are differentiable in x and in the value.
//
//   Tensor y = x.at({0, 2}).set(1.0);     // y[0, 2] = 1, the rest as x
//   Tensor z = x.at({1}).add(row);        // z[1] = x[1] + row (row broadcasts to x[1]'s shape)
//   Tensor r = x.at({1}).get();           // x[1], differentiable
//   double v = x.at({1, 2});              // one element as a double (full index only)
//
// An index out of range throws ShapeError naming the op, the index and the shape.
class IndexRef {
 public:
  // The view of `x` at `index`; made by Tensor::at.
  IndexRef(Tensor x, Shape index) : x_(std::move(x)), index_(std::move(index)) {}
  operator double() const;  // NOLINT(google-explicit-constructor): reading x.at({i, j}) as a number
  Tensor get() const;                     // x[index], differentiable
  Tensor set(const Tensor& value) const;  // x with x[index] = value (value broadcasts to x[index]'s shape)
  Tensor set(double value) const;         // x with x[index] = value
  Tensor add(const Tensor& value) const;  // x with x[index] += value (value broadcasts to x[index]'s shape)
  Tensor add(double value) const;         // x with x[index] += value

 private:
  Tensor x_;
  Shape index_;
};

// (path, tensor) pairs in a stable order: a model's parameters, an optimizer's state.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// ---- creation (not recorded on the tape)
Tensor empty(const Shape& shape, DType dtype = DType::Float32);  // uninitialised
Tensor zeros(const Shape& shape, DType dtype = DType::Float32);               // all 0
Tensor ones(const Shape& shape, DType dtype = DType::Float32);                // all 1
Tensor full(const Shape& shape, double value, DType dtype = DType::Float32);  // all `value`, cast to dtype
Tensor scalar(double value, DType dtype = DType::Float32);        // 0-d tensor
Tensor zeros_like(const Tensor& t);  // zeros of t's shape and dtype
Tensor ones_like(const Tensor& t);   // ones of t's shape and dtype
// [start, stop) with step, like numpy.arange; dtype Float32 unless given; ValueError if step is 0.
Tensor arange(double start, double stop, double step = 1.0, DType dtype = DType::Float32);
// 0, 1, ..., stop − 1, Int64 unless given.
Tensor arange(std::int64_t stop, DType dtype = DType::Int64);
// Copies values (converted to dtype) into a tensor of the given shape.
Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                   DType dtype = DType::Float32);
template <class T>
Tensor from_data(const T* values, const Shape& shape);  // T's own dtype

}  // namespace xgrad
