// Whether the pool's threads run on cores far apart (sharing no last-level cache),
// measured by the pool itself, and what kernels do about it.
//
// Where two threads' cores share an L3, a kernel's output written by one thread is
// read by the other from that L3 at the next kernel; where they share none (seen on
// 2-vCPU cloud guests, whose host moves the vCPUs between the CPU's core complexes
// from one minute to the next: bench/core_to_core), it crosses between caches at
// ~200 ns a miss, and chains of small kernels each split over the threads ran slower
// on 2 threads than on 1 (a self-attention block on 64 × 16 × 64: 2.22 ms against
// 1.88; 1.89 with this file's rule). So the pool probes the placement now and then: right after a job a worker
// took part in (so that the worker is still polling; a sleeping one takes up to
// milliseconds to wake on such guests), at most once per kProbeInterval, the caller
// and that worker bounce a cache line a few times (~1 µs). While the last probe
// found the threads far apart, kernels hand the pool only larger jobs than they
// otherwise would, each kernel family by its own bound (roughly 100 µs of one
// thread's work or more; the rest run on the calling thread); the verdict lapses
// after kFarApartHold, so that small jobs go to the pool again, the worker joins
// one, and the next probe follows the placement back.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace xgrad::detail {

// A mean round trip of a cache line between the caller and a worker above this is
// "far apart". Measured on 2-vCPU AMD EPYC Zen 4 guests: 65-76 ns with a shared L3;
// 170-190 ns in a placement where 2 threads still ran the main job's step 1.9x as fast
// as 1; without a shared L3 310-410 ns (220-240 in some spells), where chains of small
// split kernels ran slower than on 1 thread. On a 2-vCPU Intel Xeon guest (family 6
// model 167, one L3 over a mesh) 119-162 ns by bench/core_to_core and 140-209 by the
// pool's own probe: with a bound of 150 ns half its probes found the threads far apart,
// and the MLP step (batch 64) then ran its GEMMs on the caller, 0.74 ms at 2 threads
// as at 1 against 0.47 ms split.
constexpr std::int64_t kFarApartRoundTripNanoseconds = 250;

// The shortest interval between two placement probes.
constexpr auto kProbeInterval = std::chrono::milliseconds(20);

// How long a far-apart verdict holds.
constexpr auto kFarApartHold = std::chrono::milliseconds(200);

// Whether a probe is due; true claims it (one caller per interval gets true).
bool placement_probe_due();

// Records a probe: the mean round trip it measured, or nullopt when the worker did
// not answer in time (the placement is then left as it was).
void record_round_trip(std::optional<std::int64_t> nanoseconds);

// Whether the last probe, less than kFarApartHold ago, found the threads far apart
// (or the outcome forced for tests).
bool threads_far_apart();

// `near` while the threads are near, `far` while they are far apart: the smallest
// work a kernel hands to the pool.
inline std::int64_t min_parallel_work(std::int64_t near, std::int64_t far) { return threads_far_apart() ? far : near; }

// What the probes have found since the process started (for tests, and for
// benchmarks, whose 2-thread figures depend on the placement at the time).
struct PlacementProbes {
  std::uint64_t measured = 0;          // probes that measured a round trip
  std::uint64_t far_apart = 0;         // of which found the threads far apart
  std::int64_t last_round_trip = -1;   // the last one's mean round trip, ns (-1: none yet)
};
PlacementProbes placement_probes();

// For tests: fixes the outcome (true: far apart, false: near; no probes run), or
// measures again (nullopt).
void force_threads_far_apart(std::optional<bool> far);

}  // namespace xgrad::detail
