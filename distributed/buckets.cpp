#include "distributed/buckets.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "core/tensor_impl.hpp"

namespace xgrad::distributed {

DType wire_dtype(DType dtype) {
  if (!is_floating(dtype))
    throw DTypeError(fmt::format("distributed: gradients must be floating, got {}", dtype_name(dtype)));
  return dtype == DType::Float64 ? DType::Float64 : DType::Float32;
}

std::vector<Bucket> plan_buckets(const std::vector<TensorExtent>& tensors, std::size_t bucket_bytes) {
  std::vector<Bucket> buckets;
  for (DType wire : {DType::Float32, DType::Float64}) {
    const auto capacity = std::max<std::int64_t>(1, static_cast<std::int64_t>(bucket_bytes / itemsize(wire)));
    const std::size_t first_of_wire = buckets.size();
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const TensorExtent& t = tensors[i];
      if (t.numel == 0 || wire_dtype(t.dtype) != wire) continue;
      for (std::int64_t offset = 0; offset < t.numel;) {
        if (buckets.size() == first_of_wire || buckets.back().numel == capacity) buckets.push_back({wire, 0, {}});
        Bucket& bucket = buckets.back();
        const std::int64_t count = std::min(t.numel - offset, capacity - bucket.numel);
        bucket.segments.push_back({i, offset, count, bucket.numel});
        bucket.numel += count;
        offset += count;
      }
    }
  }
  return buckets;
}

template <class W>
void pack_bucket(const Bucket& bucket, const std::vector<Tensor>& tensors, W* wire) {
  for (const BucketSegment& s : bucket.segments) {
    W* out = wire + s.position;
    const Tensor& t = tensors[s.tensor];
    if (!t.defined()) {
      std::fill_n(out, s.count, W(0));
      continue;
    }
    visit_dtype(t.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* in = t.data<T>() + s.offset;
      for (std::int64_t k = 0; k < s.count; ++k) out[k] = convert_element<W>(in[k]);
    });
  }
}

template <class W>
void unpack_bucket(const Bucket& bucket, const W* wire, double scale, std::vector<Tensor>& tensors) {
  const W factor = static_cast<W>(scale);
  for (const BucketSegment& s : bucket.segments) {
    const W* in = wire + s.position;
    Tensor& t = tensors[s.tensor];
    visit_dtype(t.dtype(), [&](auto tag) {
      using T = decltype(tag);
      T* out = t.data<T>() + s.offset;
      for (std::int64_t k = 0; k < s.count; ++k) out[k] = convert_element<T>(in[k] * factor);
    });
  }
}

template void pack_bucket<float>(const Bucket&, const std::vector<Tensor>&, float*);
template void pack_bucket<double>(const Bucket&, const std::vector<Tensor>&, double*);
template void unpack_bucket<float>(const Bucket&, const float*, double, std::vector<Tensor>&);
template void unpack_bucket<double>(const Bucket&, const double*, double, std::vector<Tensor>&);

}  // namespace xgrad::distributed
