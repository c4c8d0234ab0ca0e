// One line on where the pool found its two threads during a benchmark: its 2-thread
// figures depend on it (core/thread_placement.hpp; bench/README.md, session 9).
#pragma once

#include <cstdio>

#include "core/thread_placement.hpp"

namespace xgrad::bench {

// Prints the pool's placement probes since the process started: how many, how many
// found the threads far apart (no shared L3), and the last mean round trip.
inline void print_placement() {
  const detail::PlacementProbes p = detail::placement_probes();
  if (p.measured == 0) {
    std::printf("pool placement: no probe ran (one thread, or no job a worker joined)\n");
    return;
  }
  std::printf("pool placement: %llu probe%s, %llu found the threads far apart (no shared L3); last mean round trip "
              "%lld ns\n",
              static_cast<unsigned long long>(p.measured), p.measured == 1 ? "" : "s",
              static_cast<unsigned long long>(p.far_apart), static_cast<long long>(p.last_round_trip));
}

}  // namespace xgrad::bench
