// The number of threads xgrad's kernels use, and parallel_for: the one small pool
// every parallel kernel runs on (its workers sleep between calls). GEMMs are split
// over this pool too, with OpenBLAS single-threaded inside each piece: xgrad sets
// OpenBLAS to one thread once, at its first use, so two pools never compete for
// the same cores.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/thread_placement.hpp"

namespace xgrad {

// The CPUs this process may run on: its affinity mask (taskset, numactl), capped
// by its cgroup's CPU quota (docker --cpus, Kubernetes limits), at least 1.
int available_cpus();

// The thread count of xgrad's kernels. It defaults to XGRAD_NUM_THREADS if set
// (a positive integer; anything else is a ValueError), else OPENBLAS_NUM_THREADS
// if it is a positive integer, else available_cpus().
int num_threads();

// Sets the thread count of xgrad's kernels (n < 1 is treated as 1).
void set_num_threads(int n);

// Whether every result has the same bits at any thread count (default: true). Most
// kernels are so at no cost and ignore this switch. Where it costs time, a kernel
// runs the thread-count-invariant way only while it is on; today that is the local
// conv's general path (configurations the fast AVX2 kernels do not take: float64,
// 16-bit floats, feature groups, input dilation, ...), whose input gradient then sums
// a fixed number of per-slot copies of it, which one thread pays for alone: its
// forward + backward measured 6-8 % slower at 1 thread on 14x14x16 -> 3x3, F 32,
// N 64 (VALID, SAME) and 26 % with stride 2. Off, that split follows the thread
// count and the last bits of the input gradient may change with it.
void set_deterministic(bool enabled);
// The switch set_deterministic sets (process-wide; default true).
bool deterministic();

// The contiguous range [begin, end) of slot `slot` when `count` items are split
// over `slots` slots as OpenMP's schedule(static) splits them: the first
// count % slots slots take one item more. Kernels whose result depends on which
// slot did what (a summation order) rely on this exact split.
struct SlotRange {
  // \var begin
  // The first item of the slot.
  std::int64_t begin, end;  // one past the slot's last item
};
// The SlotRange of `slot` (0 <= slot < slots, slots >= 1) described above.
inline SlotRange static_slot_range(std::int64_t count, std::int64_t slots, std::int64_t slot) {
  const std::int64_t q = count / slots, r = count % slots;
  const std::int64_t begin = slot * q + (slot < r ? slot : r);
  return {begin, begin + q + (slot < r ? 1 : 0)};
}

namespace detail {
// num_threads()'s default from the two variables' values (null when unset).
int threads_from_environment(const char* xgrad_num_threads, const char* openblas_num_threads, int cpus);
void parallel_for(std::int64_t chunks, void (*run)(void* context, std::int64_t chunk), void* context);
}  // namespace detail

// Calls fn(chunk) once for every chunk in [0, chunks), on the calling thread and up
// to num_threads() − 1 pool workers. Each thread starts on its own contiguous block
// of chunks (the caller on the first), so consecutive calls over the same data give
// each thread the same part of it; chunks are claimed one at a time, so a worker the
// OS has not scheduled yet delays nothing (the others take its chunks); the call
// returns when every chunk is done. Workers block on a condition variable
// between calls. A call made while another is running (from another thread or
// from inside fn) runs serially on its caller. An exception from fn is rethrown
// after the other chunks finish.
template <class F>
void parallel_for(std::int64_t chunks, F&& fn) {
  using Fn = std::remove_reference_t<F>;
  detail::parallel_for(
      chunks, [](void* context, std::int64_t chunk) { (*static_cast<Fn*>(context))(chunk); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

// Splits [0, n) into at most max_chunks static_slot_range()s and calls
// fn(begin, end) for each through parallel_for.
template <class F>
void parallel_for_ranges(std::int64_t n, std::int64_t max_chunks, F&& fn) {
  const std::int64_t chunks = std::clamp<std::int64_t>(max_chunks, 1, std::max<std::int64_t>(n, 1));
  parallel_for(chunks, [&](std::int64_t c) {
    const SlotRange range = static_slot_range(n, chunks, c);
    fn(range.begin, range.end);
  });
}

// For a loop over n independent elements (an element-wise kernel): fn(begin, end)
// over the whole range on the caller when n is small, else over up to four ranges
// per thread of at least 32 Ki elements (below that the hand-off to a worker costs
// more than the memory traffic it shares; four, so a thread that finishes its own
// ranges early takes over part of a slower one's), of at least 256 Ki while the
// threads' cores share no cache (core/thread_placement.hpp; the self-attention
// block's 64 Ki-element ops then stay on the caller, an LSTM's 900 Ki-element gate
// ops do not). The result never depends on the split.
template <class F>
void parallel_for_elements(std::int64_t n, F&& fn) {
  constexpr std::int64_t kMinElementsPerRange = std::int64_t{1} << 15;
  constexpr std::int64_t kFarApartMinElementsPerRange = std::int64_t{1} << 18;
  std::int64_t ranges = std::min<std::int64_t>(4 * num_threads(), n / kMinElementsPerRange);
  if (ranges > 1)
    ranges = std::min(ranges, n / detail::min_parallel_work(kMinElementsPerRange, kFarApartMinElementsPerRange));
  if (ranges <= 1) {
    fn(std::int64_t{0}, n);
    return;
  }
  parallel_for_ranges(n, ranges, fn);
}

}  // namespace xgrad
