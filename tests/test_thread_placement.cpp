// core/thread_placement: the pool's placement probe, the verdict (its bound and its
// lapse), and the kernels that keep small jobs on the caller while it says far apart.
#include <algorithm>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "core/kernels/matmul.hpp"
#include "core/thread_placement.hpp"
#include "core/threading.hpp"
#include "test_support.hpp"

using namespace xgrad;

namespace {

// Leaves the placement "near" and nothing forced, as the rest of the suite expects.
struct PlacementReset {
  ~PlacementReset() {
    detail::force_threads_far_apart(std::nullopt);
    detail::record_round_trip(60);
  }
};

// How many ranges parallel_for_elements cut n elements into, and on how many threads.
std::pair<int, int> element_ranges(std::int64_t n) {
  std::mutex m;
  int ranges = 0;
  std::vector<std::thread::id> threads;
  parallel_for_elements(n, [&](std::int64_t, std::int64_t) {
    std::lock_guard lock(m);
    ++ranges;
    if (std::find(threads.begin(), threads.end(), std::this_thread::get_id()) == threads.end())
      threads.push_back(std::this_thread::get_id());
  });
  return {ranges, static_cast<int>(threads.size())};
}

}  // namespace

TEST_CASE("the pool probes the placement after jobs a worker took part in, at most once per interval") {
  PlacementReset reset;
  test_support::ThreadCountGuard guard(2);
  // Jobs of a few microseconds back to back: the worker joins them and keeps polling
  // between them. The probe's verdict depends on where this machine's CPUs sit; that
  // probes run does not.
  const auto job = [] {
    parallel_for(4, [](std::int64_t) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(2);
      while (std::chrono::steady_clock::now() < until) {
      }
    });
  };
  const std::uint64_t before = detail::placement_probes().measured;
  const auto start = std::chrono::steady_clock::now();
  while (detail::placement_probes().measured == before && std::chrono::steady_clock::now() - start < std::chrono::seconds(5))
    job();
  CHECK(detail::placement_probes().measured > before);
  // At most one probe per interval: over 100 jobs, no more than the intervals they spanned, plus one.
  const std::uint64_t measured = detail::placement_probes().measured;
  const auto first = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) job();
  const auto intervals = (std::chrono::steady_clock::now() - first) / detail::kProbeInterval;
  CHECK(detail::placement_probes().measured - measured <= static_cast<std::uint64_t>(intervals) + 1);
}

TEST_CASE("far apart: kernels keep small jobs on the caller until the verdict lapses or a probe says near") {
  PlacementReset reset;
  test_support::ThreadCountGuard guard(2);
  const std::int64_t n = std::int64_t{1} << 17;  // four ranges' worth near, half a range's far apart

  const detail::PlacementProbes before = detail::placement_probes();
  detail::record_round_trip(60);
  CHECK_FALSE(detail::threads_far_apart());
  CHECK(detail::min_parallel_work(1, 2) == 1);
  CHECK(element_ranges(n).first == 4);
  detail::record_round_trip(detail::kFarApartRoundTripNanoseconds + 7);
  detail::record_round_trip(std::nullopt);
  const detail::PlacementProbes counted = detail::placement_probes();  // (the jobs above probe too: at least)
  CHECK(counted.measured >= before.measured + 2);
  CHECK(counted.far_apart >= before.far_apart + 1);
  CHECK(counted.last_round_trip == detail::kFarApartRoundTripNanoseconds + 7);  // not the unanswered probe
  detail::record_round_trip(60);

  detail::record_round_trip(detail::kFarApartRoundTripNanoseconds + 1);
  CHECK(detail::threads_far_apart());
  CHECK(detail::min_parallel_work(1, 2) == 2);
  CHECK(element_ranges(n) == std::pair{1, 1});  // one range, on the caller (so no probe runs either)
  CHECK(element_ranges(std::int64_t{1} << 20).first == 4);  // large enough to split even so
  detail::record_round_trip(detail::kFarApartRoundTripNanoseconds + 1);  // whatever that job's probe found
  detail::record_round_trip(std::nullopt);  // a probe nobody answered changes nothing
  CHECK(detail::threads_far_apart());
  std::this_thread::sleep_for(detail::kFarApartHold + std::chrono::milliseconds(10));
  CHECK_FALSE(detail::threads_far_apart());  // lapsed
  CHECK(detail::min_parallel_work(1, 2) == 1);

  detail::record_round_trip(detail::kFarApartRoundTripNanoseconds + 1);
  CHECK(detail::threads_far_apart());
  detail::record_round_trip(detail::kFarApartRoundTripNanoseconds);  // the bound itself is near
  CHECK_FALSE(detail::threads_far_apart());
  CHECK(element_ranges(n).first == 4);
}

TEST_CASE("forced far apart: the same bits (products, element-wise ops, AdamW), and the work stays on the caller") {
  PlacementReset reset;
  test_support::ThreadCountGuard guard(2);
  // A product cut into pieces (the attention block's projection) and an element-wise op.
  const Tensor a = random_normal(make_key(1), {1024, 64}), b = random_normal(make_key(2), {64, 64});
  const Tensor x = random_normal(make_key(3), {1 << 17});
  // And a fused AdamW step on 300 K parameters (split near, on the caller far apart).
  const auto adamw_step = [] {
    optim::NamedTensors params{{"w", random_normal(make_key(4), {300, 1000})}};
    params[0].second.set_grad(random_normal(make_key(5), {300, 1000}));
    optim::Optimizer opt(params, optim::adamw({.learning_rate = 1e-2, .weight_decay = 0.1}));
    opt.step();
    return params[0].second.to_vector();
  };
  detail::force_threads_far_apart(false);
  const std::vector<double> product_near = kernels::matmul(a, b, false, true).to_vector();
  const std::vector<double> tanh_near = tanh(x).to_vector();
  const std::vector<double> adamw_near = adamw_step();
  CHECK(element_ranges(x.numel()).first == 4);
  detail::force_threads_far_apart(true);
  CHECK(kernels::matmul(a, b, false, true).to_vector() == product_near);
  CHECK(tanh(x).to_vector() == tanh_near);
  CHECK(adamw_step() == adamw_near);
  CHECK(element_ranges(x.numel()) == std::pair{1, 1});
  CHECK(detail::threads_far_apart());
}
