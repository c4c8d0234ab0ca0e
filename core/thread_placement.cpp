#include "core/thread_placement.hpp"

#include <atomic>

namespace xgrad::detail {

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> far_apart{false};            // the last probe's verdict
std::atomic<Clock::rep> decided_at{0};         // when it was recorded
std::atomic<Clock::rep> last_probe{0};         // when placement_probe_due last said yes
std::atomic<std::uint64_t> probes_measured{0};
std::atomic<std::uint64_t> probes_far_apart{0};
std::atomic<std::int64_t> last_round_trip{-1};
std::atomic<int> forced{-1};                   // -1: measured; 0: near; 1: far apart

Clock::rep now() { return Clock::now().time_since_epoch().count(); }

template <class Duration>
Clock::rep ticks(Duration d) {
  return std::chrono::duration_cast<Clock::duration>(d).count();
}

// Whether the threads are far apart by the last probe, and that verdict still holds.
bool measured_far_apart() {
  return far_apart.load(std::memory_order_relaxed) &&
         now() - decided_at.load(std::memory_order_relaxed) < ticks(kFarApartHold);
}

// Claims the interval that `last` started: true for one caller once it has passed.
bool claim_interval(std::atomic<Clock::rep>& last) {
  const Clock::rep t = now();
  Clock::rep previous = last.load(std::memory_order_relaxed);
  return t - previous >= ticks(kProbeInterval) && last.compare_exchange_strong(previous, t, std::memory_order_relaxed);
}

}  // namespace

bool placement_probe_due() { return forced.load(std::memory_order_relaxed) < 0 && claim_interval(last_probe); }

void record_round_trip(std::optional<std::int64_t> nanoseconds) {
  if (!nanoseconds) return;
  decided_at.store(now(), std::memory_order_relaxed);
  const bool far = *nanoseconds > kFarApartRoundTripNanoseconds;
  far_apart.store(far, std::memory_order_relaxed);
  last_round_trip.store(*nanoseconds, std::memory_order_relaxed);
  probes_far_apart.fetch_add(far ? 1 : 0, std::memory_order_relaxed);
  probes_measured.fetch_add(1, std::memory_order_relaxed);
}

PlacementProbes placement_probes() {
  return {probes_measured.load(std::memory_order_relaxed), probes_far_apart.load(std::memory_order_relaxed),
          last_round_trip.load(std::memory_order_relaxed)};
}

bool threads_far_apart() {
  if (const int f = forced.load(std::memory_order_relaxed); f >= 0) return f == 1;
  return measured_far_apart();
}

void force_threads_far_apart(std::optional<bool> far) { forced.store(far ? int{*far} : -1, std::memory_order_relaxed); }

}  // namespace xgrad::detail
