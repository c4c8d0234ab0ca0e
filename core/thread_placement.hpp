// Whether the pool's threads run on cores far apart (sharing no last-level cache),
// measured by the pool itself, and what kernels do about it.
//
// Where two threads' cores share an L3, a kernel's output written by one thread is
// read by the other from that L3 at the next kernel; where they share none (seen on
// 2-vCPU cloud guests, whose host moves the vCPUs between the CPU's core complexes
// from one minute to the next: bench/core_to_core), it crosses between caches at
// ~200 ns per miss, and chains of small kernels each split over the threads run
// slower on 2 threads than on 1 (a self-attention block on 64 × 16 × 64: 2.20 ms
// against 1.91). So the pool times each hand-off (a published job to a worker
// joining it, one cache-line transfer plus the worker's poll) and keeps the
// smallest of each window of hand-offs: ~50-60 ns with a shared L3, ~200 ns
// without. While the threads are far apart, kernels hand the pool only jobs
// kFarApartWorkScale times larger than they otherwise would (the rest run on the
// calling thread); one job in every kProbeInterval still goes out at the near
// size so that the measurement follows the placement back.
#pragma once

#include <cstdint>
#include <optional>

namespace xgrad::detail {

// How many times larger a job must be to go to the pool while the threads are far apart.
constexpr std::int64_t kFarApartWorkScale = 64;

// The smallest-of-a-window classifier: add() each hand-off's nanoseconds; every
// kWindow of them it decides, from their minimum (the one least disturbed by
// descheduling, sleep or a busy worker), whether the threads are far apart.
class HandoffWindow {
 public:
  static constexpr int kWindow = 16;
  static constexpr std::int64_t kFarApartNanoseconds = 140;  // one way; between the two clusters above

  // Adds one hand-off; returns the decision when this one completed a window.
  std::optional<bool> add(std::int64_t nanoseconds);

 private:
  std::int64_t smallest_ = INT64_MAX;
  int count_ = 0;
};

// Records one hand-off seen by a pool worker (thread-safe; the pool calls it).
void record_handoff(std::int64_t nanoseconds);

// 1 while the threads are near (or nothing is measured yet), kFarApartWorkScale while
// they are far apart, except for one call per probe interval, which gets 1.
std::int64_t far_apart_work_scale();

// Whether the last window found the threads far apart (for benchmarks' reports).
bool threads_far_apart();

// For tests: fixes the outcome (true: far apart, false: near; every call gets the
// fixed scale, no probes), or measures again (nullopt).
void force_threads_far_apart(std::optional<bool> far);

}  // namespace xgrad::detail
