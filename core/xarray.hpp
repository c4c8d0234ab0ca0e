// Direct access to a tensor's xtensor container, for users who want xtensor's
// expressions on xgrad data. The reference stays valid while the tensor lives.
#pragma once

#include "core/tensor_impl.hpp"

namespace xgrad {

// Throws DTypeError unless T is the tensor's element type. The container is an
// xt::xarray over xgrad's caching allocator (StorageArray<T>, core/tensor_impl.hpp).
template <class T>
StorageArray<T>& as_xarray(const Tensor& t) {
  if (!t.defined() || t.dtype() != dtype_v<T>)
    throw DTypeError("as_xarray: tensor is not of the requested element type");
  return storage_array<T>(*t.impl());
}

// Copies an xtensor expression into a new tensor of its element type.
template <class E>
Tensor from_xarray(const xt::xexpression<E>& e) {
  using T = typename E::value_type;
  xt::xarray<T> a = e.derived_cast();
  Shape shape(a.shape().begin(), a.shape().end());
  return from_data<T>(a.data(), shape);
}

}  // namespace xgrad
