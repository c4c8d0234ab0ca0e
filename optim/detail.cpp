#include "optim/detail.hpp"

#include "core/tensor_impl.hpp"

namespace xgrad::optim::detail {

DType state_dtype(DType param_dtype) {
  return param_dtype == DType::Float64 ? DType::Float64 : DType::Float32;
}

NamedTensors state_buffer(const NamedTensors& params, double value, std::optional<DType> dtype) {
  NamedTensors buffer;
  buffer.reserve(params.size());
  for (const auto& [path, p] : params)
    buffer.emplace_back(path, full(p.shape(), value, dtype.value_or(state_dtype(p.dtype()))));
  return buffer;
}

template <class T>
void load_chunk(const Tensor& t, std::int64_t offset, std::int64_t count, T* out) {
  visit_dtype(t.dtype(), [&](auto tag) {
    using S = decltype(tag);
    const S* in = t.data<S>() + offset;
    for (std::int64_t i = 0; i < count; ++i) out[i] = convert_element<T>(in[i]);
  });
}

template <class T>
void store_chunk(Tensor& t, std::int64_t offset, std::int64_t count, const T* in) {
  visit_dtype(t.dtype(), [&](auto tag) {
    using D = decltype(tag);
    D* out = t.data<D>() + offset;
    for (std::int64_t i = 0; i < count; ++i) out[i] = convert_element<D>(in[i]);
  });
}

template void load_chunk<float>(const Tensor&, std::int64_t, std::int64_t, float*);
template void load_chunk<double>(const Tensor&, std::int64_t, std::int64_t, double*);
template void store_chunk<float>(Tensor&, std::int64_t, std::int64_t, const float*);
template void store_chunk<double>(Tensor&, std::int64_t, std::int64_t, const double*);

double sum_of_squares(const Tensor& t) {
  return visit_dtype(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* x = t.data<T>();
    const std::int64_t n = t.numel();
    // Eight independent partial sums: the loop vectorises without reassociation flags.
    constexpr std::int64_t kLanes = 8;
    double partial[kLanes] = {};
    std::int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (std::int64_t j = 0; j < kLanes; ++j) {
        const double v = convert_element<double>(x[i + j]);
        partial[j] += v * v;
      }
    for (; i < n; ++i) {
      const double v = convert_element<double>(x[i]);
      partial[0] += v * v;
    }
    double total = 0.0;
    for (double p : partial) total += p;
    return total;
  });
}

void check_aligned(const char* op, const NamedTensors& updates, const NamedTensors& other, const char* what) {
  if (other.size() != updates.size())
    throw ValueError(fmt::format("{}: {} updates but {} {}{}", op, updates.size(), other.size(), what,
                                 other.empty() ? " (this transformation needs them)" : ""));
}

GradientTransformation stateless(std::function<void(NamedTensors&, const NamedTensors&)> update) {
  GradientTransformation tx;
  tx.init = [](const NamedTensors&) { return OptState{}; };
  tx.update = [update = std::move(update)](NamedTensors& updates, OptState&, const NamedTensors& params) {
    update(updates, params);
  };
  return tx;
}

}  // namespace xgrad::optim::detail
