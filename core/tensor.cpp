// Tensor handle methods that need no autograd: storage, element access, creation.
#include "core/tensor.hpp"

#include <cmath>

#include <fmt/format.h>

#include "core/tensor_impl.hpp"

namespace xgrad {

namespace {

const TensorImpl& checked(const Tensor& t, const char* what) {
  if (!t.defined()) throw ValueError(fmt::format("{}: the tensor is undefined", what));
  return *t.impl();
}

}  // namespace

std::shared_ptr<TensorImpl> make_impl(const Shape& shape, DType dtype) {
  checked_numel(shape, itemsize(dtype), "tensor");
  auto impl = std::make_shared<TensorImpl>();
  impl->dtype = dtype;
  impl->shape = shape;
  impl->storage = std::make_shared<Storage>();
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    typename StorageArray<T>::shape_type xshape(shape.begin(), shape.end());
    impl->storage->array = StorageArray<T>::from_shape(xshape);
  });
  return impl;
}

DType Tensor::dtype() const { return checked(*this, "dtype").dtype; }
const Shape& Tensor::shape() const { return checked(*this, "shape").shape; }
std::int64_t Tensor::numel() const { return xgrad::numel(shape()); }
std::int64_t Tensor::size(std::int64_t axis) const {
  return shape()[static_cast<std::size_t>(normalize_axis(axis, dim(), "size"))];
}

template <class T>
T* Tensor::data() {
  const auto& impl = checked(*this, "data");
  if (impl.dtype != dtype_v<T>)
    throw DTypeError(fmt::format("data<{}>: the tensor's dtype is {}", dtype_name(dtype_v<T>),
                                 dtype_name(impl.dtype)));
  return storage_array<T>(impl).data();
}
template <class T>
const T* Tensor::data() const {
  return const_cast<Tensor*>(this)->data<T>();
}

#define XGRAD_INSTANTIATE_DATA(T) \
  template T* Tensor::data<T>();  \
  template const T* Tensor::data<T>() const;
XGRAD_INSTANTIATE_DATA(bool)
XGRAD_INSTANTIATE_DATA(std::int32_t)
XGRAD_INSTANTIATE_DATA(std::int64_t)
XGRAD_INSTANTIATE_DATA(half)
XGRAD_INSTANTIATE_DATA(bfloat16)
XGRAD_INSTANTIATE_DATA(float)
XGRAD_INSTANTIATE_DATA(double)
#undef XGRAD_INSTANTIATE_DATA

namespace {

double element_as_double(const TensorImpl& impl, std::int64_t flat) {
  return visit_dtype(impl.dtype, [&](auto tag) {
    using T = decltype(tag);
    return convert_element<double>(storage_array<T>(impl).data()[flat]);
  });
}

}  // namespace

double Tensor::item() const {
  const auto& impl = checked(*this, "item");
  if (numel() != 1)
    throw ShapeError(fmt::format("item: the tensor has shape {} ({} elements); item() needs exactly one",
                                 shape_str(impl.shape), numel()));
  return element_as_double(impl, 0);
}

IndexRef Tensor::at(const Shape& index) const {
  // Checked here, so that a bad index fails where it is written (a shorter index is
  // a sub-array, for get/set/add; reading a number needs a full one).
  const auto& impl = checked(*this, "at");
  if (index.size() > impl.shape.size())
    throw ShapeError(fmt::format("at: index {} has {} entries but the tensor has shape {}", shape_str(index),
                                 index.size(), shape_str(impl.shape)));
  for (std::size_t i = 0; i < index.size(); ++i)
    if (index[i] < -impl.shape[i] || index[i] >= impl.shape[i])
      throw ShapeError(fmt::format("at: index {} is out of bounds for shape {}", shape_str(index),
                                   shape_str(impl.shape)));
  return IndexRef(*this, index);
}

IndexRef::operator double() const {
  const Shape& index = index_;
  const auto& impl = checked(x_, "at");
  if (index.size() != impl.shape.size())
    throw ShapeError(fmt::format("at: index {} has {} entries but the tensor has shape {}", shape_str(index),
                                 index.size(), shape_str(impl.shape)));
  std::int64_t flat = 0;
  for (std::size_t i = 0; i < index.size(); ++i) {
    std::int64_t k = index[i] < 0 ? index[i] + impl.shape[i] : index[i];
    if (k < 0 || k >= impl.shape[i])
      throw ShapeError(fmt::format("at: index {} is out of bounds for shape {}", shape_str(index),
                                   shape_str(impl.shape)));
    flat = flat * impl.shape[i] + k;
  }
  return element_as_double(impl, flat);
}

std::vector<double> Tensor::to_vector() const {
  const auto& impl = checked(*this, "to_vector");
  std::vector<double> out(static_cast<std::size_t>(numel()));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = element_as_double(impl, static_cast<std::int64_t>(i));
  return out;
}

Tensor Tensor::clone() const {
  const auto& impl = checked(*this, "clone");
  auto copy = std::make_shared<TensorImpl>();
  copy->dtype = impl.dtype;
  copy->shape = impl.shape;
  copy->storage = std::make_shared<Storage>();
  copy->storage->array = impl.storage->array;
  return Tensor(copy);
}

Tensor& Tensor::fill_(double value) {
  auto& impl = checked(*this, "fill_");
  visit_dtype(impl.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T v = convert_element<T>(value);
    auto& a = storage_array<T>(impl);
    std::fill(a.data(), a.data() + a.size(), v);
  });
  bump_version();
  return *this;
}

Tensor& Tensor::copy_(const Tensor& source) {
  auto& impl = checked(*this, "copy_");
  const auto& src = checked(source, "copy_");
  if (src.shape != impl.shape)
    throw ShapeError(fmt::format("copy_: source shape {} does not match destination shape {}",
                                 shape_str(src.shape), shape_str(impl.shape)));
  visit_dtype(impl.dtype, [&](auto dst_tag) {
    using D = decltype(dst_tag);
    D* out = storage_array<D>(impl).data();
    visit_dtype(src.dtype, [&](auto src_tag) {
      using S = decltype(src_tag);
      const S* in = storage_array<S>(src).data();
      const std::int64_t n = xgrad::numel(impl.shape);
      for (std::int64_t i = 0; i < n; ++i) out[i] = convert_element<D>(in[i]);
    });
  });
  bump_version();
  return *this;
}

std::uint64_t Tensor::version() const { return checked(*this, "version").storage->version; }
void Tensor::bump_version() { ++checked(*this, "bump_version").storage->version; }

// ---- creation

Tensor empty(const Shape& shape, DType dtype) { return Tensor(make_impl(shape, dtype)); }
Tensor zeros(const Shape& shape, DType dtype) { return full(shape, 0.0, dtype); }
Tensor ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }
Tensor full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill_(value);
  t.impl()->storage->version = 0;
  return t;
}
Tensor scalar(double value, DType dtype) { return full({}, value, dtype); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype()); }

Tensor arange(double start, double stop, double step, DType dtype) {
  if (step == 0.0) throw ValueError("arange: step must not be zero");
  const double count = std::ceil((stop - start) / step);
  // Also refuses NaN and infinite bounds, whose count no integer holds.
  if (!(count <= 9.007199254740992e15))  // 2^53: larger counts cannot even be told apart
    throw ValueError(fmt::format("arange: [{}, {}) with step {} has {} elements, too many", start, stop, step,
                                 count));
  const auto n = static_cast<std::int64_t>(std::max(0.0, count));
  std::vector<double> values(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) values[static_cast<std::size_t>(i)] = start + static_cast<double>(i) * step;
  return from_vector(values, {n}, dtype);
}
Tensor arange(std::int64_t stop, DType dtype) { return arange(0.0, static_cast<double>(stop), 1.0, dtype); }

Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  if (static_cast<std::int64_t>(values.size()) != xgrad::numel(shape))
    throw ShapeError(fmt::format("from_vector: {} values cannot fill shape {} ({} elements)", values.size(),
                                 shape_str(shape), xgrad::numel(shape)));
  Tensor t = empty(shape, dtype);
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* out = t.data<T>();
    for (std::size_t i = 0; i < values.size(); ++i) out[i] = convert_element<T>(values[i]);
  });
  return t;
}

template <class T>
Tensor from_data(const T* values, const Shape& shape) {
  Tensor t = empty(shape, dtype_v<T>);
  std::copy(values, values + xgrad::numel(shape), t.data<T>());
  return t;
}
template Tensor from_data<bool>(const bool*, const Shape&);
template Tensor from_data<std::int32_t>(const std::int32_t*, const Shape&);
template Tensor from_data<std::int64_t>(const std::int64_t*, const Shape&);
template Tensor from_data<half>(const half*, const Shape&);
template Tensor from_data<bfloat16>(const bfloat16*, const Shape&);
template Tensor from_data<float>(const float*, const Shape&);
template Tensor from_data<double>(const double*, const Shape&);

// ---- printing

std::string Tensor::to_string() const {
  if (!defined()) return "Tensor(undefined)";
  const auto& impl = *impl_;
  std::string values;
  const std::int64_t n = numel();
  const std::int64_t shown = std::min<std::int64_t>(n, 8);
  for (std::int64_t i = 0; i < shown; ++i) {
    if (i) values += ", ";
    values += fmt::format("{:.6g}", element_as_double(impl, i));
  }
  if (n > shown) values += ", ...";
  return fmt::format("Tensor(shape={}, dtype={}{}, values=[{}])", shape_str(impl.shape), dtype_name(impl.dtype),
                     impl.requires_grad ? ", requires_grad" : "", values);
}

}  // namespace xgrad
