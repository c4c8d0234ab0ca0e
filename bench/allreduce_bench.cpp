// Gradient averaging cost per step: mpirun -np 2 build/bench/allreduce_bench
// Gradients of a 784-512-512-10 MLP (669,706 float32 parameters, 2.68 MB), averaged
// with all_reduce_gradients at several bucket sizes, next to the local pack/unpack
// alone and the latency of one scalar all-reduce.
#include <cstdio>
#include <vector>

#include "bench/timing.hpp"
#include "distributed/buckets.hpp"
#include "xgrad.hpp"

using namespace xgrad;
namespace dist = xgrad::distributed;

int main(int argc, char** argv) {
  dist::Session session(&argc, &argv);
  const bool leader = dist::rank() == 0;

  const std::vector<std::pair<const char*, Shape>> layers = {{"fc1.kernel", {784, 512}}, {"fc1.bias", {512}},
                                                             {"fc2.kernel", {512, 512}}, {"fc2.bias", {512}},
                                                             {"fc3.kernel", {512, 10}},  {"fc3.bias", {10}}};
  dist::NamedTensors params;
  std::vector<Tensor> grads;
  std::vector<dist::TensorExtent> extents;
  std::int64_t total = 0;
  for (const auto& [name, shape] : layers) {
    Tensor p = zeros(shape);
    p.set_grad(random_normal(fold_in(make_key(0), name), shape));
    params.push_back({name, p});
    grads.push_back(p.grad());
    extents.push_back({DType::Float32, p.numel()});
    total += p.numel();
  }
  if (leader)
    std::printf("averaging %lld float32 gradients (%.2f MB) over %d ranks\n", static_cast<long long>(total),
                4e-6 * double(total), dist::world_size());

  for (const std::size_t bucket_bytes : {std::size_t{64} << 10, std::size_t{1} << 20, dist::kDefaultBucketBytes,
                                         std::size_t{16} << 20}) {
    const bench::Stats s = bench::time_ms([&] { dist::all_reduce_gradients(params, bucket_bytes); }, 40, 5);
    char label[64];
    std::snprintf(label, sizeof label, "all_reduce_gradients, %zu KiB buckets", bucket_bytes >> 10);
    if (leader) bench::print_row(label, 1, s);
  }

  const auto plan = dist::plan_buckets(extents, dist::kDefaultBucketBytes);
  std::vector<float> wire(dist::kDefaultBucketBytes / sizeof(float));
  const bench::Stats pack = bench::time_ms([&] {
    for (const auto& bucket : plan) {
      dist::pack_bucket(bucket, grads, wire.data());
      dist::unpack_bucket(bucket, wire.data(), 1.0, grads);
    }
  });
  if (leader) bench::print_row("pack + unpack alone (no communication)", 1, pack);

  const bench::Stats scalar = bench::time_ms([&] { dist::all_reduce_mean(1.0); }, 200, 20);
  if (leader) bench::print_row("all_reduce_mean of one double (latency)", 1, scalar, 1e3, "us");
}
