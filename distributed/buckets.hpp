// Gradient buckets: many gradients packed into a few large contiguous buffers, so
// that averaging them across processes costs a few large messages (bandwidth)
// rather than one small message per tensor (latency). Internal to distributed/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/dtype.hpp"
#include "core/tensor.hpp"

namespace xgrad::distributed {

// The element type a tensor of `dtype` travels and is summed in: float64 stays
// float64; float32, float16 and bfloat16 go through float32 (16-bit floats widen
// exactly, and the average rounds once, when it is stored back). DTypeError otherwise.
DType wire_dtype(DType dtype);

// What the planner needs to know of one tensor. numel 0 gets no segment: callers
// pass 0 for gradients that no rank has.
struct TensorExtent {
  DType dtype;
  std::int64_t numel;
};

// Elements [offset, offset + count) of tensor `tensor` sit at [position, position + count) of the bucket.
struct BucketSegment {
  std::size_t tensor;
  std::int64_t offset;
  std::int64_t count;
  std::int64_t position;
  bool operator==(const BucketSegment&) const = default;
};

struct Bucket {
  DType wire_dtype;
  std::int64_t numel = 0;
  std::vector<BucketSegment> segments;
};

// Fills buckets of at most bucket_bytes (at least one element) with the tensors in
// order, float32-wire tensors first, then float64-wire ones. A tensor larger than
// the space left is split across consecutive buckets, so every bucket but the last
// of each wire dtype is full and the buffer never exceeds bucket_bytes. The plan
// depends only on its arguments: ranks with the same extents get the same plan.
std::vector<Bucket> plan_buckets(const std::vector<TensorExtent>& tensors, std::size_t bucket_bytes);

// Copies the bucket's segments of `tensors` into `wire` (W: float or double, the
// bucket's wire dtype), converting; an undefined tensor packs as zeros.
template <class W>
void pack_bucket(const Bucket& bucket, const std::vector<Tensor>& tensors, W* wire);

// The reverse: tensor element = wire element * scale, converted to the tensor's dtype.
template <class W>
void unpack_bucket(const Bucket& bucket, const W* wire, double scale, std::vector<Tensor>& tensors);

}  // namespace xgrad::distributed
