// core/thread_placement: the hand-off classifier, the work scale kernels apply while
// the threads are far apart (with its probe), and the kernels that follow it.
#include <algorithm>
#include <chrono>
#include <mutex>
#include <optional>
#include <utility>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "core/kernels/matmul.hpp"
#include "core/thread_placement.hpp"
#include "core/threading.hpp"
#include "test_support.hpp"

using namespace xgrad;
using detail::HandoffWindow;

namespace {

// Feeds the global window enough hand-offs of `nanoseconds` that its last decision
// comes from them alone (whatever an earlier window left half full).
void record_window_of(std::int64_t nanoseconds) {
  for (int i = 0; i < 2 * HandoffWindow::kWindow; ++i) detail::record_handoff(nanoseconds);
}

// Leaves the measured state "near" and nothing forced, as the suite expects.
struct PlacementReset {
  ~PlacementReset() {
    detail::force_threads_far_apart(std::nullopt);
    record_window_of(50);
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

TEST_CASE("HandoffWindow decides once per window, from the window's smallest hand-off") {
  HandoffWindow w;
  for (int i = 0; i < HandoffWindow::kWindow - 1; ++i) CHECK_FALSE(w.add(i == 3 ? 60 : 5000).has_value());
  const std::optional<bool> near = w.add(5000);  // one quick hand-off among slow ones: near
  REQUIRE(near.has_value());
  CHECK_FALSE(*near);
  for (int i = 0; i < HandoffWindow::kWindow - 1; ++i) CHECK_FALSE(w.add(300).has_value());
  const std::optional<bool> far = w.add(HandoffWindow::kFarApartNanoseconds + 1);  // the 60 is forgotten
  REQUIRE(far.has_value());
  CHECK(*far);
  for (int i = 0; i < HandoffWindow::kWindow - 1; ++i) CHECK_FALSE(w.add(400).has_value());
  CHECK(w.add(HandoffWindow::kFarApartNanoseconds) == std::optional<bool>(false));  // the bound itself is near
}

TEST_CASE("far apart: kernels keep small jobs on the caller, probe now and then, and come back when near") {
  PlacementReset reset;
  test_support::ThreadCountGuard guard(2);
  const std::int64_t n = std::int64_t{1} << 20;  // 32 ranges' worth near, half a range's far apart

  record_window_of(60);
  CHECK_FALSE(detail::threads_far_apart());
  CHECK(detail::far_apart_work_scale() == 1);
  CHECK(element_ranges(n).first == 8);  // four per thread

  record_window_of(400);
  CHECK(detail::threads_far_apart());
  // One call per probe interval gets the near scale (so the pool keeps measuring);
  // the calls right after it the far one.
  std::vector<std::int64_t> scales;
  for (int i = 0; i < 4; ++i) scales.push_back(detail::far_apart_work_scale());
  std::this_thread::sleep_for(std::chrono::milliseconds(25));
  scales.push_back(detail::far_apart_work_scale());
  scales.push_back(detail::far_apart_work_scale());
  CHECK(std::count(scales.begin(), scales.begin() + 4, std::int64_t{1}) <= 1);
  CHECK(std::count(scales.begin(), scales.begin() + 4, detail::kFarApartWorkScale) >= 3);
  CHECK(scales[4] == 1);
  CHECK(scales[5] == detail::kFarApartWorkScale);
  CHECK(element_ranges(n) == std::pair{1, 1});  // one range, on the caller

  record_window_of(60);
  CHECK_FALSE(detail::threads_far_apart());
  CHECK(element_ranges(n).first == 8);
}

TEST_CASE("forced far apart: the same bits, and the work stays on the caller") {
  PlacementReset reset;
  test_support::ThreadCountGuard guard(2);
  // A product cut into pieces (the attention block's projection) and an element-wise op.
  const Tensor a = random_normal(make_key(1), {1024, 64}), b = random_normal(make_key(2), {64, 64});
  const Tensor x = random_normal(make_key(3), {1 << 20});
  detail::force_threads_far_apart(false);
  const std::vector<double> product_near = kernels::matmul(a, b, false, true).to_vector();
  const std::vector<double> tanh_near = tanh(x).to_vector();
  CHECK(element_ranges(x.numel()).first == 8);
  detail::force_threads_far_apart(true);
  CHECK(kernels::matmul(a, b, false, true).to_vector() == product_near);
  CHECK(tanh(x).to_vector() == tanh_near);
  CHECK(element_ranges(x.numel()) == std::pair{1, 1});
  CHECK(detail::far_apart_work_scale() == detail::kFarApartWorkScale);  // forced: no probes
}
