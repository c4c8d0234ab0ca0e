#include "core/thread_placement.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>

namespace xgrad::detail {

namespace {

using Clock = std::chrono::steady_clock;

// A far-apart decision lets one job per interval through at the near size.
constexpr auto kProbeInterval = std::chrono::milliseconds(20);

std::atomic<bool> far_apart{false};
std::atomic<int> forced{-1};  // -1: measured; 0: near; 1: far apart
std::atomic<Clock::rep> last_probe{0};

std::mutex window_mutex;  // taken by workers only, once per hand-off
HandoffWindow window;

}  // namespace

std::optional<bool> HandoffWindow::add(std::int64_t nanoseconds) {
  smallest_ = std::min(smallest_, nanoseconds);
  if (++count_ < kWindow) return std::nullopt;
  const bool far = smallest_ > kFarApartNanoseconds;
  smallest_ = INT64_MAX;
  count_ = 0;
  return far;
}

void record_handoff(std::int64_t nanoseconds) {
  std::lock_guard lock(window_mutex);
  if (const std::optional<bool> far = window.add(nanoseconds)) far_apart.store(*far, std::memory_order_relaxed);
}

std::int64_t far_apart_work_scale() {
  if (const int f = forced.load(std::memory_order_relaxed); f >= 0) return f == 1 ? kFarApartWorkScale : 1;
  if (!far_apart.load(std::memory_order_relaxed)) return 1;
  const Clock::rep now = Clock::now().time_since_epoch().count();
  Clock::rep last = last_probe.load(std::memory_order_relaxed);
  if (now - last >= std::chrono::duration_cast<Clock::duration>(kProbeInterval).count() &&
      last_probe.compare_exchange_strong(last, now, std::memory_order_relaxed))
    return 1;  // this call probes the placement
  return kFarApartWorkScale;
}

bool threads_far_apart() {
  if (const int f = forced.load(std::memory_order_relaxed); f >= 0) return f == 1;
  return far_apart.load(std::memory_order_relaxed);
}

void force_threads_far_apart(std::optional<bool> far) { forced.store(far ? int{*far} : -1, std::memory_order_relaxed); }

}  // namespace xgrad::detail
