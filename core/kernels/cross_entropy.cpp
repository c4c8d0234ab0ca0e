#include "core/kernels/cross_entropy.hpp"

#include <cmath>

#include <fmt/format.h>

#include "core/tensor_impl.hpp"

namespace xgrad::kernels {

namespace {

template <class F>
decltype(auto) visit_labels(const Tensor& labels, F&& f) {
  if (labels.dtype() == DType::Int32) return f(labels.data<std::int32_t>());
  if (labels.dtype() == DType::Int64) return f(labels.data<std::int64_t>());
  throw DTypeError(fmt::format("softmax_cross_entropy: labels must be int32 or int64, got {}",
                               dtype_name(labels.dtype())));
}

}  // namespace

std::pair<Tensor, Tensor> softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels) {
  const std::int64_t classes = logits.shape().back();
  const std::int64_t rows = labels.numel();
  Tensor loss = empty(labels.shape(), logits.dtype());
  Tensor lse;
  visit_dtype(logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_floating_point_v<compute_t<T>>) {
      throw DTypeError(fmt::format("softmax_cross_entropy: logits must be floating, got {}", dtype_name(logits.dtype())));
    } else {
      using C = compute_t<T>;
      lse = empty(labels.shape(), dtype_v<C>);
      const T* x = logits.data<T>();
      T* out = loss.data<T>();
      C* pl = lse.data<C>();
      visit_labels(labels, [&](const auto* label) {
        for (std::int64_t r = 0; r < rows; ++r) {
          const auto y = static_cast<std::int64_t>(label[r]);
          if (y < 0 || y >= classes)
            throw ValueError(fmt::format("softmax_cross_entropy: label {} at index {} is out of range for {} classes",
                                         y, r, classes));
          const T* row = x + r * classes;
          C m = -INFINITY;
          for (std::int64_t c = 0; c < classes; ++c) m = std::max(m, static_cast<C>(row[c]));
          C s = 0;
          for (std::int64_t c = 0; c < classes; ++c) s += std::exp(static_cast<C>(row[c]) - m);
          pl[r] = m + std::log(s);
          out[r] = T(pl[r] - static_cast<C>(row[y]));
        }
      });
    }
  });
  return {loss, lse};
}

Tensor softmax_cross_entropy_backward(const Tensor& logits, const Tensor& labels, const Tensor& logsumexp,
                                      const Tensor& grad_loss) {
  const std::int64_t classes = logits.shape().back();
  const std::int64_t rows = labels.numel();
  Tensor grad = empty(logits.shape(), logits.dtype());
  visit_dtype(logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<compute_t<T>>) {
      using C = compute_t<T>;
      const Tensor g = grad_loss.dtype() == dtype_v<T> ? grad_loss : grad_loss.astype(dtype_v<T>);
      const T* x = logits.data<T>();
      const T* pg = g.data<T>();
      const C* pl = logsumexp.data<C>();
      T* out = grad.data<T>();
      visit_labels(labels, [&](const auto* label) {
        for (std::int64_t r = 0; r < rows; ++r) {
          const C scale = static_cast<C>(pg[r]);
          const T* row = x + r * classes;
          T* grow = out + r * classes;
          const auto y = static_cast<std::int64_t>(label[r]);
          for (std::int64_t c = 0; c < classes; ++c) {
            const C p = std::exp(static_cast<C>(row[c]) - pl[r]);
            grow[c] = T(scale * (c == y ? p - C(1) : p));
          }
        }
      });
    }
  });
  return grad;
}

}  // namespace xgrad::kernels
