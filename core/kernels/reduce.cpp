#include "core/kernels/reduce.hpp"

#include <algorithm>

#include "core/kernels/broadcast.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad::kernels {

Shape reduced_shape(const Shape& shape, const std::vector<std::int64_t>& axes, bool keepdims) {
  Shape out;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const bool reduced = std::find(axes.begin(), axes.end(), static_cast<std::int64_t>(i)) != axes.end();
    if (!reduced) out.push_back(shape[i]);
    else if (keepdims) out.push_back(1);
  }
  return out;
}

Tensor sum(const Tensor& x, const std::vector<std::int64_t>& axes, bool keepdims) {
  const Shape kept = reduced_shape(x.shape(), axes, true);
  const DType out_dtype = x.dtype() == DType::Bool ? DType::Int64 : x.dtype();
  Tensor out = zeros(reduced_shape(x.shape(), axes, keepdims), out_dtype);
  // Walk x in row-major order; the output offset advances with stride 0 along
  // reduced axes, so each input element is added into its output slot.
  const Shape out_strides = broadcast_strides(kept, x.shape());
  const Shape in_strides = contiguous_strides(x.shape());
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using O = std::conditional_t<std::is_same_v<T, bool>, std::int64_t, T>;
    using C = std::conditional_t<std::is_same_v<T, bool>, std::int64_t, compute_t<T>>;
    const T* in = x.data<T>();
    const std::int64_t n_out = out.numel();
    std::vector<C> acc(static_cast<std::size_t>(n_out), C(0));
    for_each_broadcast_run(x.shape(), out_strides, in_strides,
                           [&](std::int64_t, std::int64_t o, std::int64_t i, std::int64_t count, std::int64_t so,
                               std::int64_t si) {
                             if (so == 0) {
                               C total = 0;
                               for (std::int64_t k = 0; k < count; ++k) total += static_cast<C>(in[i + k * si]);
                               acc[static_cast<std::size_t>(o)] += total;
                             } else {
                               for (std::int64_t k = 0; k < count; ++k)
                                 acc[static_cast<std::size_t>(o + k * so)] += static_cast<C>(in[i + k * si]);
                             }
                           });
    O* po = out.data<O>();
    for (std::int64_t k = 0; k < n_out; ++k) po[k] = O(acc[static_cast<std::size_t>(k)]);
  });
  return out;
}

}  // namespace xgrad::kernels
