// Run as `mpirun -np 2 distributed_equivalence`: data-parallel training on 2 ranks
// with batch B per rank must take the same steps as one process with batch 2B.
// The reference single-process run happens inside this program, on rank 0.
// Also checks the gradient averaging edge cases (missing gradients, dtypes,
// aliased gradients, tiny buckets), the metric reductions, and that ranks passing
// mismatched parameters all get an error instead of hanging.
#include <cmath>
#include <cstdio>
#include <string>

#include "xgrad.hpp"

using namespace xgrad;
namespace dist = xgrad::distributed;

namespace {

int g_failures = 0;

void expect(bool ok, const std::string& what) {
  if (ok) return;
  ++g_failures;
  std::fprintf(stderr, "rank %d: FAILED: %s\n", dist::rank(), what.c_str());
}

template <class E, class F>
void expect_throw(F&& f, const std::string& message, const std::string& what) {
  try {
    f();
    expect(false, what + ": no exception");
  } catch (const E& e) {
    expect(e.what() == message, what + ": message was \"" + e.what() + "\", expected \"" + message + "\"");
  }
}

constexpr std::int64_t kIn = 5, kHidden = 8, kOut = 3;
constexpr std::int64_t kExamples = 48, kBatchPerRank = 6;  // 4 global batches of 12 per epoch
constexpr int kEpochs = 2;
constexpr double kLearningRate = 0.2;

// y = x W + b from mul and sum: [N, in, 1] * [1, in, out] summed over `in`.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  return sum(reshape(x, {x.size(0), x.size(1), 1}) * reshape(w, {1, w.size(0), w.size(1)}), {1}) + b;
}

Tensor mlp(const dist::NamedTensors& p, const Tensor& x) {
  Tensor h = linear(x, p[0].second, p[1].second);
  h = h / (1.0 + h * h);  // a smooth nonlinearity from the ops every branch has
  return linear(h, p[2].second, p[3].second);
}

dist::NamedTensors init_mlp(Key key) {
  const auto param = [&](const char* name, const Shape& shape) {
    return std::pair{std::string(name), random_normal(fold_in(key, name), shape, DType::Float32, 0.0, 0.5)
                                            .requires_grad_()};
  };
  return {param("fc1.kernel", {kIn, kHidden}), param("fc1.bias", {kHidden}), param("fc2.kernel", {kHidden, kOut}),
          param("fc2.bias", {kOut})};
}

void sgd_step(dist::NamedTensors& params) {
  NoGradGuard no_grad;
  for (auto& [name, p] : params) {
    p.copy_(p - kLearningRate * p.grad());
    p.zero_grad();
  }
}

// Mean squared error over the batch, so the mean over ranks of equal shards is
// the loss of their union.
void train(dist::NamedTensors& params, const TensorDataset& data, DataLoaderOptions options,
           const dist::DataParallel* dp) {
  DataLoader loader(data, options);
  for (int e = 0; e < kEpochs; ++e)
    for (Batch& b : loader.epoch(std::uint64_t(e))) {
      const Tensor d = mlp(params, b.inputs) - b.targets;
      (d * d).mean().backward();
      if (dp) dp->average_gradients();
      sgd_step(params);
    }
}

std::vector<double> flatten(const dist::NamedTensors& params) {
  std::vector<double> all;
  for (const auto& [name, p] : params) {
    const std::vector<double> v = p.to_vector();
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

// max |x - mean over ranks of x|: 0 exactly when every rank holds the same values.
double spread_across_ranks(const std::vector<double>& x) {
  const std::vector<double> sums = dist::all_reduce_sum(x);
  double spread = 0;
  for (std::size_t i = 0; i < x.size(); ++i) spread = std::max(spread, std::abs(x[i] - sums[i] / dist::world_size()));
  return dist::all_reduce_sum({spread})[0];
}

void check_training_matches_single_process() {
  const int r = dist::rank();
  const TensorDataset data(random_normal(make_key(100), {kExamples, kIn}),
                           random_normal(make_key(200), {kExamples, kOut}));
  const DataLoaderOptions options{.batch_size = kBatchPerRank, .seed = 7};

  dist::NamedTensors params = init_mlp(make_key(1 + std::uint64_t(r)));  // a different init on every rank
  expect(spread_across_ranks(flatten(params)) > 0.1, "the ranks start from different values");
  const dist::DataParallel dp(params, {.bucket_bytes = 64});  // 16 floats per bucket: 5 buckets, split tensors
  const std::vector<double> initial = flatten(params);
  expect(spread_across_ranks(initial) == 0.0, "after the broadcast every rank holds rank 0's values");

  train(params, data, dist::sharded(options), &dp);
  const std::vector<double> trained = flatten(params);
  expect(spread_across_ranks(trained) == 0.0, "the ranks stay identical through training");

  if (r == 0) {
    dist::NamedTensors reference = init_mlp(make_key(1));
    expect(flatten(reference) == initial, "rank 0's initialisation was broadcast");
    DataLoaderOptions whole = options;
    whole.batch_size = kBatchPerRank * 2;
    train(reference, data, whole, nullptr);
    const std::vector<double> expected = flatten(reference);
    double max_diff = 0, moved = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      max_diff = std::max(max_diff, std::abs(trained[i] - expected[i]));
      moved = std::max(moved, std::abs(expected[i] - initial[i]));
    }
    expect(moved > 0.05, "training moved the parameters");
    expect(max_diff <= 1e-5, "2 ranks x batch " + std::to_string(kBatchPerRank) + " match 1 process x batch " +
                                 std::to_string(2 * kBatchPerRank) + ": max |diff| " + std::to_string(max_diff));
    std::printf("training on 2 ranks vs 1 process: %zu parameters, %d steps, max |diff| %.3g (moved up to %.3g)\n",
                expected.size(), kEpochs * int(kExamples / (2 * kBatchPerRank)), max_diff, moved);
  }
}

void check_gradient_edge_cases() {
  const int r = dist::rank();
  const double k = r + 1;  // rank 0 contributes k = 1, rank 1 k = 2
  Tensor a = zeros({3}), b = zeros({2}, DType::Float64), c = zeros({4}, DType::Float16), unused = zeros({2});
  Tensor e = zeros({2}), f = zeros({2});
  a.set_grad(full({3}, k));
  if (r == 0) b.set_grad(from_vector({2, 4}, {2}, DType::Float64));  // missing on rank 1: zeros there
  c.set_grad(from_vector({k, 0.25 * k, 3 * k, 1000 * k}, {4}, DType::Float16));
  const Tensor shared = full({2}, 10 * k);  // two gradients sharing storage, as backward can make them
  e.set_grad(shared.detach());
  f.set_grad(shared.detach());
  const TensorImpl* a_grad_before = a.grad().impl();

  dist::all_reduce_gradients({{"a", a}, {"b", b}, {"c", c}, {"unused", unused}, {"e", e}, {"f", f}}, 8);
  expect(a.grad().to_vector() == std::vector<double>{1.5, 1.5, 1.5}, "float32 gradients average");
  expect(a.grad().impl() == a_grad_before, "a gradient owning its storage is averaged in place");
  expect(b.grad().defined() && b.grad().to_vector() == std::vector<double>{1, 2},
         "a gradient missing on one rank counts as zeros there and becomes defined");
  expect(c.grad().dtype() == DType::Float16 && c.grad().to_vector() == std::vector<double>{1.5, 0.375, 4.5, 1500},
         "float16 gradients average through float32");
  expect(!unused.grad().defined(), "a gradient missing everywhere stays undefined");
  expect(e.grad().to_vector() == std::vector<double>{15, 15} && f.grad().to_vector() == std::vector<double>{15, 15},
         "aliased gradients both average");
  expect(shared.to_vector() == std::vector<double>{10 * k, 10 * k}, "a shared gradient's storage is left alone");
}

void check_metrics_and_sharding() {
  const int r = dist::rank();
  expect(dist::all_reduce_mean(r == 0 ? 1.0 : 4.0) == 2.5, "all_reduce_mean");
  expect(dist::all_reduce_sum({double(r), 1.0}) == std::vector<double>{1, 2}, "all_reduce_sum");
  const DataLoaderOptions o = dist::sharded({.batch_size = 5});
  expect(o.batch_size == 5 && o.num_shards == 2 && o.shard_index == std::size_t(r), "sharded()");
}

void check_mismatches_fail_on_every_rank() {
  const int r = dist::rank();
  dist::NamedTensors params = {{"w", zeros({r == 0 ? 4 : 3})}};
  expect_throw<ValueError>([&] { dist::broadcast_parameters(params); },
                           r == 0 ? "distributed::broadcast_parameters: rank 1 reported a problem (see its error)"
                                  : "distributed::broadcast_parameters: rank 1's parameter 0 is 'w' float32 [3] but "
                                    "rank 0's is 'w' float32 [4]",
                           "broadcast of mismatched shapes");

  dist::NamedTensors extra = {{"w", zeros({2})}};
  if (r == 1) extra.push_back({"v", zeros({2})});
  expect_throw<ValueError>([&] { dist::all_reduce_gradients(extra); },
                           "distributed::all_reduce_gradients: the ranks pass different numbers of parameters "
                           "(from 1 to 2)",
                           "gradients of different parameter counts");
}

}  // namespace

int main(int argc, char** argv) {
  dist::Session session(&argc, &argv);
  if (dist::world_size() != 2) {
    std::fprintf(stderr, "distributed_equivalence: run me with mpirun -np 2 (world size is %d)\n", dist::world_size());
    return 2;
  }
  try {
    check_training_matches_single_process();
    check_gradient_edge_cases();
    check_metrics_and_sharding();
    check_mismatches_fail_on_every_rank();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: unexpected exception: %s\n", dist::rank(), e.what());
    throw;  // the Session aborts the job rather than leave the other rank waiting
  }
  const double failures = dist::all_reduce_sum({double(g_failures)})[0];
  if (dist::rank() == 0) std::printf("distributed_equivalence: %s\n", failures == 0 ? "OK" : "FAILED");
  return failures == 0 ? 0 : 1;
}
