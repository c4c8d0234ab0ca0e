#include "core/threading.hpp"

#include <pthread.h>
#include <sched.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "core/error.hpp"

// OpenBLAS's own pool size; declared here rather than through <cblas.h>, which
// clashes with xtensor-blas's bundled declarations.
extern "C" void openblas_set_num_threads(int num_threads);

namespace xgrad {
namespace {

std::atomic<int> current_threads{0};
std::atomic<bool> deterministic_results{true};

// A positive integer, or 0 when `text` is not one.
int parse_positive(const char* text) {
  if (text == nullptr || *text == '\0') return 0;
  char* end = nullptr;
  const long n = std::strtol(text, &end, 10);
  return (*end == '\0' && n > 0 && n <= 1 << 16) ? static_cast<int>(n) : 0;
}

// The CPU quota of this process's cgroup in whole CPUs (rounded up), or 0 if none:
// cgroup v2's cpu.max ("200000 100000" = 2 CPUs, "max 100000" = no quota), else v1's
// cfs_quota_us / cfs_period_us.
int cgroup_cpu_quota() {
  double quota = 0, period = 0;
  if (std::ifstream v2("/sys/fs/cgroup/cpu.max"); v2) {
    std::string q;
    if (v2 >> q >> period && q != "max") quota = std::atof(q.c_str());
  } else {
    std::ifstream q1("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), p1("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
    if (q1 && p1) q1 >> quota, p1 >> period;
  }
  if (quota <= 0 || period <= 0) return 0;
  return std::max(1, static_cast<int>(std::ceil(quota / period)));
}

}  // namespace

int available_cpus() {
  int cpus = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = CPU_COUNT(&set);
  if (cpus <= 0) cpus = static_cast<int>(std::thread::hardware_concurrency());
  if (const int quota = cgroup_cpu_quota(); quota > 0) cpus = cpus > 0 ? std::min(cpus, quota) : quota;
  return std::max(cpus, 1);
}

namespace detail {

int threads_from_environment(const char* xgrad_num_threads, const char* openblas_num_threads, int cpus) {
  if (xgrad_num_threads != nullptr && *xgrad_num_threads != '\0') {
    const int n = parse_positive(xgrad_num_threads);
    if (n == 0)
      throw ValueError(fmt::format("XGRAD_NUM_THREADS='{}': expected a positive integer", xgrad_num_threads));
    return n;
  }
  if (const int n = parse_positive(openblas_num_threads); n > 0) return n;
  return std::max(cpus, 1);
}

}  // namespace detail

namespace {

// One parallel_for call. It lives on the caller's stack: workers join it only
// while the pool publishes it, and the caller waits for them to leave.
//
// The chunks are cut into one contiguous "home" block per participant (the caller
// is participant 0, the workers 1, 2, … in the order they join). Each participant
// claims the chunks of its home block first, then helps with the others' blocks, so
// a participant the OS runs late delays nothing. Why homes rather than one shared
// counter: consecutive kernels split the same data the same way (the samples of a
// batch, the rows of a GEMM), so with homes the thread that wrote a piece of a
// tensor is the one that reads it in the next kernel, from its own L2 cache. With one
// shared counter the pieces went to whichever thread came first and moved between
// the cores' caches at every kernel.
struct Job {
  static constexpr int kMaxHomes = 16;  // participants beyond this share homes

  // A block's next unclaimed chunk, on its own cache line (threads claim concurrently).
  struct alignas(64) Home {
    std::atomic<std::int64_t> next{0};
    std::int64_t end = 0;
  };

  void (*run)(void*, std::int64_t);
  void* context;
  std::int64_t chunks;
  int helpers_wanted;
  int helpers_joined = 0;  // guarded by the pool's mutex
  int helpers_inside = 0;  // guarded by the pool's mutex
  std::atomic<int> helpers_working{0};  // read without the mutex by the caller's spin
  std::atomic<bool> failed{false};
  std::exception_ptr error = nullptr;  // the first exception, written by whoever set `failed`
  int homes = 1;
  Home home[kMaxHomes];

  Job(void (*run_fn)(void*, std::int64_t), void* run_context, std::int64_t chunk_count, int helpers)
      : run(run_fn), context(run_context), chunks(chunk_count), helpers_wanted(helpers) {
    homes = static_cast<int>(std::min<std::int64_t>({helpers + 1, kMaxHomes, chunks}));
    for (int h = 0; h < homes; ++h) {
      home[h].next.store(chunks * h / homes, std::memory_order_relaxed);
      home[h].end = chunks * (h + 1) / homes;
    }
  }

  // Claims and runs chunks until none are left, starting with participant's home.
  void work(int participant) {
    const int first = participant % homes;
    for (int visited = 0; visited < homes; ++visited) {
      Home& h = home[(first + visited) % homes];
      for (std::int64_t chunk = h.next.fetch_add(1); chunk < h.end; chunk = h.next.fetch_add(1)) {
        if (failed.load(std::memory_order_relaxed)) continue;  // skip the rest, still claim them
        try {
          run(context, chunk);
        } catch (...) {
          if (!failed.exchange(true)) error = std::current_exception();
        }
      }
    }
  }
};

thread_local bool inside_pool_worker = false;

// Waking a thread blocked on a condition variable costs tens of microseconds on an
// idle machine and far more on a busy one (the woken thread waits for a time slice),
// about the length of a whole small kernel. So a worker that finishes a job, and a
// caller waiting for its helpers, first poll for up to this long (with PAUSE, so
// the sibling hyperthread keeps running) before they block. A training step's
// kernels come less than a millisecond apart (the serial tape work between them,
// the next batch), so during training the workers never sleep; with 50 µs they
// slept between most kernels, came late to the next one, and the caller ran most
// chunks alone (Fashion-MNIST's main job at 2 threads: 1.54x its 1-thread speed with
// 50 µs, measured in bench/README "Threads that stay awake"). Bounded, so an idle
// pool stops burning CPU after a millisecond, as OpenMP runtimes do after their
// spin count.
constexpr auto kSpinBeforeBlocking = std::chrono::microseconds(1000);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

template <class Done>
void spin_until(Done&& done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpinBeforeBlocking;
  while (!done()) {
    for (int i = 0; i < 64; ++i) cpu_relax();
    if (std::chrono::steady_clock::now() > deadline) return;
  }
}

class Pool {
 public:
  // Returns false if the pool is busy with another call (the caller then runs serially).
  bool publish(Job& job) {
    std::lock_guard lock(mutex_);
    if (job_) return false;
    while (static_cast<int>(workers_.size()) < job.helpers_wanted)
      workers_.emplace_back([this] { worker_loop(); });
    job_ = &job;
    ++generation_;
    published_.store(generation_, std::memory_order_release);
    wake_.notify_all();
    return true;
  }

  // Unpublishes the job and waits for the workers still inside it.
  void retire(Job& job) {
    spin_until([&] { return job.helpers_working.load(std::memory_order_acquire) == 0; });
    std::unique_lock lock(mutex_);
    job_ = nullptr;
    left_.wait(lock, [&] { return job.helpers_inside == 0; });
  }

 private:
  void worker_loop() {
    inside_pool_worker = true;
    std::unique_lock lock(mutex_);
    std::uint64_t seen = generation_;
    for (;;) {
      lock.unlock();
      spin_until([&] { return published_.load(std::memory_order_acquire) != seen; });
      lock.lock();
      wake_.wait(lock, [&] { return job_ && generation_ != seen; });
      seen = generation_;
      Job& job = *job_;
      if (job.helpers_joined == job.helpers_wanted) continue;
      const int participant = ++job.helpers_joined;
      ++job.helpers_inside;
      job.helpers_working.fetch_add(1, std::memory_order_relaxed);
      lock.unlock();
      job.work(participant);
      job.helpers_working.fetch_sub(1, std::memory_order_release);
      lock.lock();
      if (--job.helpers_inside == 0) left_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;  // a job was published
  std::condition_variable left_;  // a worker left its job
  std::vector<std::thread> workers_;
  Job* job_ = nullptr;
  std::uint64_t generation_ = 0;
  std::atomic<std::uint64_t> published_{0};  // generation_, for the workers' spin
};

// Never destroyed: workers block in wait() until the process exits. A child made by
// fork() has none of the workers (and maybe the mutex held by one of them), so it
// starts a fresh pool; the old one is leaked.
std::atomic<Pool*> pool_instance{nullptr};

Pool& pool() {
  static std::once_flag created;
  std::call_once(created, [] {
    pool_instance.store(new Pool);
    pthread_atfork(nullptr, nullptr, [] { pool_instance.store(new Pool); });
  });
  return *pool_instance.load();
}

}  // namespace

namespace {

// OpenBLAS runs single-threaded inside xgrad's threads: xgrad splits its own GEMMs
// over its pool (core/kernels/gemm.cpp), so OpenBLAS's pool would only compete
// with ours for the same cores. Done once, before xgrad's first GEMM; never mid-call.
void make_blas_serial() {
  static std::once_flag done;
  std::call_once(done, [] { openblas_set_num_threads(1); });
}

}  // namespace

int num_threads() {
  static std::once_flag initialised;
  std::call_once(initialised, [] {
    make_blas_serial();
    int expected = 0;
    const int n = detail::threads_from_environment(std::getenv("XGRAD_NUM_THREADS"),
                                                   std::getenv("OPENBLAS_NUM_THREADS"), available_cpus());
    current_threads.compare_exchange_strong(expected, n);  // a set_num_threads() that ran first wins
  });
  return current_threads.load(std::memory_order_relaxed);
}

void set_num_threads(int n) {
  make_blas_serial();
  current_threads.store(std::max(n, 1), std::memory_order_relaxed);
}

void set_deterministic(bool enabled) { deterministic_results.store(enabled, std::memory_order_relaxed); }
bool deterministic() { return deterministic_results.load(std::memory_order_relaxed); }

namespace detail {

void parallel_for(std::int64_t chunks, void (*run)(void*, std::int64_t), void* context) {
  if (chunks <= 0) return;
  const int helpers = static_cast<int>(std::min<std::int64_t>(num_threads(), chunks)) - 1;
  Job job(run, context, chunks, helpers);
  const bool shared = helpers > 0 && !inside_pool_worker && pool().publish(job);
  job.work(0);
  if (shared) pool().retire(job);
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace detail

}  // namespace xgrad
