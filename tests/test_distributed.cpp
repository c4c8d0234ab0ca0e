// distributed/: the bucket planner and packing (single process), and the errors of
// the MPI entry points used without a Session. Training across ranks is checked by
// tests/mpi/distributed_equivalence.cpp under mpirun.
#include <doctest/doctest.h>

#include "distributed/buckets.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using namespace xgrad::distributed;

namespace {

using Segments = std::vector<BucketSegment>;

}  // namespace

TEST_CASE("wire_dtype: float64 stays, other floats travel as float32, integers are refused") {
  CHECK(wire_dtype(DType::Float64) == DType::Float64);
  CHECK(wire_dtype(DType::Float32) == DType::Float32);
  CHECK(wire_dtype(DType::Float16) == DType::Float32);
  CHECK(wire_dtype(DType::BFloat16) == DType::Float32);
  CHECK_THROWS_WITH_AS(wire_dtype(DType::Int32), "distributed: gradients must be floating, got int32", DTypeError);
}

TEST_CASE("plan_buckets: fills buckets in order, float32 wire first, splitting tensors that overflow") {
  // 16-byte buckets: 4 float32 or 2 float64 elements each.
  const std::vector<TensorExtent> tensors = {
      {DType::Float32, 3},   // 0
      {DType::Float64, 3},   // 1
      {DType::Float16, 6},   // 2
      {DType::Float32, 0},   // 3: no gradient anywhere
      {DType::BFloat16, 1},  // 4
  };
  const std::vector<Bucket> buckets = plan_buckets(tensors, 16);
  REQUIRE(buckets.size() == 5);
  CHECK(buckets[0].wire_dtype == DType::Float32);
  CHECK(buckets[0].numel == 4);
  CHECK(buckets[0].segments == Segments{{0, 0, 3, 0}, {2, 0, 1, 3}});
  CHECK(buckets[1].numel == 4);
  CHECK(buckets[1].segments == Segments{{2, 1, 4, 0}});
  CHECK(buckets[2].numel == 2);  // the last float32 bucket is partial
  CHECK(buckets[2].segments == Segments{{2, 5, 1, 0}, {4, 0, 1, 1}});
  CHECK(buckets[3].wire_dtype == DType::Float64);
  CHECK(buckets[3].segments == Segments{{1, 0, 2, 0}});
  CHECK(buckets[4].wire_dtype == DType::Float64);
  CHECK(buckets[4].segments == Segments{{1, 2, 1, 0}});
}

TEST_CASE("plan_buckets: a large bucket holds everything of one wire dtype; a tiny one holds one element") {
  const std::vector<TensorExtent> tensors = {{DType::Float32, 1000}, {DType::Float32, 24}, {DType::Float64, 5}};
  const std::vector<Bucket> big = plan_buckets(tensors, kDefaultBucketBytes);
  REQUIRE(big.size() == 2);
  CHECK(big[0].numel == 1024);
  CHECK(big[0].segments == Segments{{0, 0, 1000, 0}, {1, 0, 24, 1000}});
  CHECK(big[1].numel == 5);

  const std::vector<Bucket> tiny = plan_buckets({{DType::Float32, 3}}, 2);  // smaller than an element
  REQUIRE(tiny.size() == 3);
  for (std::int64_t k = 0; k < 3; ++k) CHECK(tiny[std::size_t(k)].segments == Segments{{0, k, 1, 0}});

  CHECK(plan_buckets({}, 16).empty());
  CHECK(plan_buckets({{DType::Int64, 0}}, 16).empty());  // no gradient: its dtype does not matter
}

TEST_CASE("pack_bucket / unpack_bucket: undefined gradients pack as zeros, 16-bit floats round on store") {
  const std::vector<Tensor> grads = {
      from_vector({1.0, 2.0, 3.0}, {3}, DType::Float32),
      Tensor(),  // missing on this rank
      from_vector({0.5, 2049.0}, {2}, DType::Float16),  // 2049 is not a float16: stored as 2048
  };
  const std::vector<Bucket> plan =
      plan_buckets({{DType::Float32, 3}, {DType::Float32, 2}, {DType::Float16, 2}}, kDefaultBucketBytes);
  REQUIRE(plan.size() == 1);
  std::vector<float> wire(7, -1.0f);
  pack_bucket(plan[0], grads, wire.data());
  CHECK(wire == std::vector<float>{1, 2, 3, 0, 0, 0.5f, 2048});

  wire = {2, 4, 6, 8, 10, 3, 4097};  // as if summed over ranks
  std::vector<Tensor> out = {zeros({3}), zeros({2}), zeros({2}, DType::Float16)};
  unpack_bucket(plan[0], wire.data(), 0.5, out);
  CHECK(out[0].to_vector() == std::vector<double>{1, 2, 3});
  CHECK(out[1].to_vector() == std::vector<double>{4, 5});
  CHECK(out[2].dtype() == DType::Float16);
  CHECK(out[2].to_vector() == std::vector<double>{1.5, 2048});  // 2048.5 rounds to float16 2048
}

TEST_CASE("pack_bucket / unpack_bucket: a split tensor travels through several float64 buckets") {
  const Tensor g = from_vector({1, 2, 3, 4, 5}, {5}, DType::Float64);
  const std::vector<Bucket> plan = plan_buckets({{DType::Float64, 5}}, 16);  // 2 doubles per bucket
  REQUIRE(plan.size() == 3);
  std::vector<Tensor> out = {zeros({5}, DType::Float64)};
  for (const Bucket& bucket : plan) {
    std::vector<double> wire(std::size_t(bucket.numel));
    pack_bucket(bucket, {g}, wire.data());
    unpack_bucket(bucket, wire.data(), 2.0, out);
  }
  CHECK(out[0].to_vector() == std::vector<double>{2, 4, 6, 8, 10});
}

#ifdef XGRAD_HAVE_MPI
TEST_CASE("distributed: built with MPI; collectives need a Session first") {
  CHECK(is_available());
  CHECK_FALSE(is_initialized());
  CHECK_THROWS_WITH_AS(rank(),
                       "distributed::rank: MPI is not initialized; create a distributed::Session (or call "
                       "distributed::init) first",
                       Error);
  NamedTensors params = {{"w", zeros({2})}};
  CHECK_THROWS_WITH_AS(all_reduce_gradients(params, 4),
                       "distributed::all_reduce_gradients: bucket_bytes must be between 8 and 2^30, got 4",
                       ValueError);
}
#else
TEST_CASE("distributed: built without MPI, every call says so") {
  CHECK_FALSE(is_available());
  CHECK_FALSE(is_initialized());
  CHECK_THROWS_WITH_AS(rank(),
                       "distributed::rank: xgrad was built without MPI (install an MPI, e.g. Debian's "
                       "libopenmpi-dev and openmpi-bin, then reconfigure with meson setup --reconfigure "
                       "-Dmpi=enabled)",
                       Error);
  CHECK_THROWS_AS(distributed::Session(), Error);
}
#endif
