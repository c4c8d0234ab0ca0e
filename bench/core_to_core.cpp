// How far apart this machine's first two CPUs are: the round trip of a cache line
// bounced between two threads pinned to CPUs 0 and 1 (each waits for the other's
// write, then writes back). The 2-vCPU virtual machines this suite runs on are
// placed by their host in ways the guest cannot see in /proc/cpuinfo or lscpu, and
// the placement changes from one minute to the next. Seen on a 2-vCPU AMD EPYC Zen 4
// guest (December 2026, bench/README "Where the second vCPU sits"), with what it did
// to 2-thread figures:
//   ~55-65 ns     a shared L3: 2 threads ~1.9x 1 thread on the main job's step;
//   ~170-190 ns   still ~1.9x on that step;
//   ~350-450 ns   memory-bound kernels that read what the other thread wrote (pools,
//                 element-wise ops, the evaluation forward) 1.5x slower than at
//                 ~60 ns, some slower than on 1 thread;
//   ~1000 ns      as above, and Adam no faster on 2 threads than on 1.
// On a 2-vCPU Intel Xeon guest (family 6 model 167, one L3 over a mesh): 119-162 ns,
// and splitting small jobs paid there (the MLP step 0.47 against 0.74 ms unsplit).
// 1-thread figures do not move. The suite scripts print this probe before and after
// a suite, so that every 2-thread figure carries the placement it was measured in.
//   usage: core_to_core [round_trips=2000000]   (as the benchmarks run: bench/prioritized on a shared machine)
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

alignas(64) std::atomic<long> ball{0};

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);  // best effort: unpinned still measures
}

// Nanoseconds per round trip over `trips` trips: the main thread serves odd values,
// the partner answers with the next even one.
double round_trip_ns(long trips) {
  ball.store(0);
  std::thread partner([trips] {
    pin_to(1);
    for (long i = 0; i < trips; ++i) {
      while (ball.load(std::memory_order_acquire) != 2 * i + 1) {
      }
      ball.store(2 * i + 2, std::memory_order_release);
    }
  });
  pin_to(0);
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < trips; ++i) {
    ball.store(2 * i + 1, std::memory_order_release);
    while (ball.load(std::memory_order_acquire) != 2 * i + 2) {
    }
  }
  const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  partner.join();
  return ns / static_cast<double>(trips);
}

}  // namespace

int main(int argc, char** argv) {
  const long trips = argc > 1 ? std::max(1000L, std::atol(argv[1])) : 2000000L;
  if (std::thread::hardware_concurrency() < 2) {
    std::printf("core_to_core: one CPU, nothing to measure\n");
    return 0;
  }
  std::vector<double> runs;
  for (int r = 0; r < 3; ++r) runs.push_back(round_trip_ns(trips / 3));
  std::sort(runs.begin(), runs.end());
  const double median = runs[1];
  // Not a RESULT line: the suite scripts' tables read those as workloads.
  std::printf("core_to_core: CPUs 0 and 1, round trip %.0f ns%s\n", median,
              median <= 250 ? " (near: a shared L3; the pool's bound is 250 ns, core/thread_placement.hpp)"
                            : " (far apart: no shared L3, see bench/core_to_core.cpp)");
  return 0;
}
