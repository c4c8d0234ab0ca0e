#include "core/threading.hpp"

#include <pthread.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

// OpenBLAS's own pool size; declared here rather than through <cblas.h>, which
// clashes with xtensor-blas's bundled declarations.
extern "C" void openblas_set_num_threads(int num_threads);

namespace xgrad {
namespace {

std::atomic<int> current_threads{0};

int default_threads() {
  if (const char* env = std::getenv("XGRAD_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n > 0) return static_cast<int>(n);
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

// One parallel_for call. It lives on the caller's stack: workers join it only
// while the pool publishes it, and the caller waits for them to leave.
struct Job {
  void (*run)(void*, std::int64_t);
  void* context;
  std::int64_t chunks;
  int helpers_wanted;
  int helpers_joined = 0;  // guarded by the pool's mutex
  int helpers_inside = 0;  // guarded by the pool's mutex
  std::atomic<int> helpers_working{0};  // read without the mutex by the caller's spin
  std::atomic<std::int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error = nullptr;  // the first exception, written by whoever set `failed`

  // Claims and runs chunks until none are left.
  void work() {
    for (std::int64_t chunk = next.fetch_add(1); chunk < chunks; chunk = next.fetch_add(1)) {
      if (failed.load(std::memory_order_relaxed)) continue;  // skip the rest, still claim them
      try {
        run(context, chunk);
      } catch (...) {
        if (!failed.exchange(true)) error = std::current_exception();
      }
    }
  }
};

thread_local bool inside_pool_worker = false;

// Waking a thread blocked on a condition variable costs tens of microseconds here,
// about the length of a whole small kernel. So a worker that finishes a job, and a
// caller waiting for its helpers, first poll for up to this long (with PAUSE, so
// the sibling hyperthread keeps running) before they block; kernels called back to
// back then hand over without a sleep. Bounded, so an idle pool stops burning CPU
// at once and never spins next to OpenBLAS for long.
constexpr auto kSpinBeforeBlocking = std::chrono::microseconds(50);

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
      ++job.helpers_joined;
      ++job.helpers_inside;
      job.helpers_working.fetch_add(1, std::memory_order_relaxed);
      lock.unlock();
      job.work();
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

int num_threads() {
  static std::once_flag initialised;
  std::call_once(initialised, [] {
    int expected = 0;
    const int n = default_threads();
    // A set_num_threads() that ran before the first query wins.
    if (current_threads.compare_exchange_strong(expected, n)) openblas_set_num_threads(n);
  });
  return current_threads.load(std::memory_order_relaxed);
}

void set_num_threads(int n) {
  if (n < 1) n = 1;
  current_threads.store(n, std::memory_order_relaxed);
  openblas_set_num_threads(n);
}

namespace detail {

void parallel_for(std::int64_t chunks, void (*run)(void*, std::int64_t), void* context) {
  if (chunks <= 0) return;
  const int helpers = static_cast<int>(std::min<std::int64_t>(num_threads(), chunks)) - 1;
  Job job{.run = run, .context = context, .chunks = chunks, .helpers_wanted = helpers};
  const bool shared = helpers > 0 && !inside_pool_worker && pool().publish(job);
  job.work();
  if (shared) pool().retire(job);
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace detail

}  // namespace xgrad
