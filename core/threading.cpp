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
#include "core/flush_denormals.hpp"
#include "core/thread_placement.hpp"

// OpenBLAS's own pool size; declared here rather than through <cblas.h>, which
// clashes with xtensor-blas's bundled declarations.
extern "C" void openblas_set_num_threads(int num_threads);
// Stops OpenBLAS's pool threads (its pthreads build; the fork handler's routine, and
// OpenBLAS starts them again by itself if a later call wants them). Weak: other BLAS
// builds may not have it, and xgrad then leaves their threads alone.
extern "C" int blas_thread_shutdown_(void) __attribute__((weak));

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
  // The caller's floating-point control (flush denormals, rounding): the workers
  // run its chunks in it, so no result depends on which thread computed it.
  std::uint32_t floating_point_control = detail::floating_point_control();
  std::uint32_t generation = 0;  // the pool's generation that published it
  std::atomic<int> helpers_joined{0};
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

// Polls `done` after every PAUSE (one PAUSE is ~25-30 ns on the AMD EPYC guests
// this suite runs on; polling every 64 of them answered ~1 µs late, twice per
// parallel_for) and the clock every 64 polls. False if the deadline passed first.
template <class Done>
bool spin_until(Done&& done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpinBeforeBlocking;
  for (int polls = 1; !done(); ++polls) {
    cpu_relax();
    if (polls % 64 == 0 && std::chrono::steady_clock::now() > deadline) return done();
  }
  return true;
}

// The pool hands a job to its workers through three atomics and no lock:
//   publish: owner_ (one job at a time), job_, then generation_ + 1;
//   a worker that sees a new generation counts itself in `inside_`, reads job_,
//     joins it if it is that generation's job and a helper is still wanted, and
//     counts itself out;
//   retire: job_ = null, then wait until `inside_` is 0.
// With sequentially consistent order on job_ and inside_, a worker either counted
// itself in before the caller's wait read inside_ (the caller waits for it) or reads
// job_ after it was cleared (and never touches the finished job). The hot path is a
// few cache-line hand-offs between the caller and each worker; the mutex and the
// condition variables are taken only by a worker going to sleep (after the spin
// above), by a caller going to sleep while a long chunk runs, and by whoever must
// wake them. Where the two vCPUs share no L3 each hand-off costs ~0.2 µs, and the
// previous pool (a mutex for every join and leave, a condition variable to retire)
// made a dozen of them per call.
class Pool {
 public:
  // Returns false if the pool is busy with another call (the caller then runs serially).
  bool publish(Job& job) {
    if (owner_.exchange(true, std::memory_order_acquire)) return false;
    const std::uint32_t current = generation_.load(std::memory_order_relaxed);
    try {
      while (static_cast<int>(workers_.size()) < job.helpers_wanted)
        workers_.emplace_back([this, current] { worker_loop(current); });
    } catch (...) {  // no thread to be had: run with the workers there are
      if (workers_.empty()) {
        owner_.store(false, std::memory_order_release);
        return false;
      }
    }
    job.generation = current + 1;
    job_.store(&job, std::memory_order_seq_cst);
    generation_.store(current + 1, std::memory_order_seq_cst);
    if (sleeping_workers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard lock(mutex_);
      wake_.notify_all();
    }
    return true;
  }

  // Unpublishes the job and waits for the workers still inside it.
  void retire() {
    job_.store(nullptr, std::memory_order_seq_cst);
    const auto all_out = [&] { return inside_.load(std::memory_order_seq_cst) == 0; };
    if (!spin_until(all_out)) {
      std::unique_lock lock(mutex_);
      caller_sleeping_.store(true, std::memory_order_seq_cst);
      left_.wait(lock, all_out);
      caller_sleeping_.store(false, std::memory_order_relaxed);
    }
    owner_.store(false, std::memory_order_release);
  }

 private:
  void worker_loop(std::uint32_t seen) {
    inside_pool_worker = true;
    for (;;) {
      const auto published = [&] { return generation_.load(std::memory_order_seq_cst) != seen; };
      if (!spin_until(published)) {
        std::unique_lock lock(mutex_);
        sleeping_workers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, published);
        sleeping_workers_.fetch_sub(1, std::memory_order_relaxed);
      }
      seen = generation_.load(std::memory_order_seq_cst);
      inside_.fetch_add(1, std::memory_order_seq_cst);
      if (Job* job = job_.load(std::memory_order_seq_cst); job != nullptr && job->generation == seen) {
        const int participant = job->helpers_joined.fetch_add(1, std::memory_order_relaxed) + 1;
        if (participant <= job->helpers_wanted) {
          const std::uint32_t own = detail::floating_point_control();
          if (own != job->floating_point_control) detail::set_floating_point_control(job->floating_point_control);
          job->work(participant);
          if (own != job->floating_point_control) detail::set_floating_point_control(own);
        }
      }
      if (inside_.fetch_sub(1, std::memory_order_seq_cst) == 1 && caller_sleeping_.load(std::memory_order_seq_cst)) {
        std::lock_guard lock(mutex_);
        left_.notify_all();
      }
    }
  }

  std::atomic<bool> owner_{false};  // a caller has a job published (touched by callers only)
  alignas(64) std::atomic<Job*> job_{nullptr};
  std::atomic<std::uint32_t> generation_{0};  // + 1 at every publish
  std::atomic<int> inside_{0};                // workers between reading job_ and leaving it
  alignas(64) std::atomic<int> sleeping_workers_{0};
  std::atomic<bool> caller_sleeping_{false};
  std::mutex mutex_;              // only for sleeping and waking
  std::condition_variable wake_;  // a job was published
  std::condition_variable left_;  // the last worker left its job
  std::vector<std::thread> workers_;  // grown by the owner only
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
//
// Setting OpenBLAS to one thread does not stop the pool threads its pthreads build
// started when it was loaded (one per CPU but one), and each of them polls for work
// with sched_yield for 2^28 TSC cycles (~0.1 s) after its start and after every job
// before it sleeps. On 2 vCPUs that idle poller took a CPU share from xgrad's caller
// and worker for the first 0.1 s of every program: the MLP step at batch 1 (0.2 ms)
// took 1.0-1.5 ms in 10-20 % of its steps at 2 threads, all within that window
// (bench/README "OpenBLAS's idle threads"). So they are stopped here.
void make_blas_serial() {
  static std::once_flag done;
  std::call_once(done, [] {
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_ != nullptr) blas_thread_shutdown_();
  });
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

namespace {

// The placement probe (core/thread_placement.hpp): chunk 0 (the caller's) and chunk 1
// (a worker's) bounce `ball` kBounces times; the mean round trip after the first
// bounce is the measurement (one clock read at each end: a clock read costs about
// as much as a round trip with a shared L3). It runs right after a job a worker took
// part in, so that worker is polling; each side waits at most kPatience for the
// other, so a worker that went elsewhere costs the caller little and measures nothing.
struct PlacementProbe {
  static constexpr int kBounces = 9;
  static constexpr auto kPatience = std::chrono::microseconds(20);

  alignas(64) std::atomic<int> ball{0};
  alignas(64) std::atomic<bool> gave_up{false};
  std::int64_t round_trip = 0;  // the mean over the bounces after the first

  // Waits until ball == value; false (and gives up the probe) after kPatience.
  bool wait_for(int value) {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (ball.load(std::memory_order_acquire) != value) {
      if (gave_up.load(std::memory_order_relaxed) || std::chrono::steady_clock::now() > deadline) {
        gave_up.store(true, std::memory_order_relaxed);
        return false;
      }
    }
    return true;
  }

  static void run(void* context, std::int64_t chunk) {
    auto& p = *static_cast<PlacementProbe*>(context);
    std::chrono::steady_clock::time_point start;
    for (int i = 0; i < kBounces; ++i) {
      if (chunk == 0) {  // serve 2i + 1, wait for the answer 2i + 2
        p.ball.store(2 * i + 1, std::memory_order_release);
        if (!p.wait_for(2 * i + 2)) return;
        if (i == 0) start = std::chrono::steady_clock::now();  // the first answer may include the worker's arrival
      } else {
        if (!p.wait_for(2 * i + 1)) return;
        p.ball.store(2 * i + 2, std::memory_order_release);
      }
    }
    if (chunk == 0)
      p.round_trip = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count() /
                     (kBounces - 1);
  }
};

void probe_placement() {
  PlacementProbe probe;
  Job job(PlacementProbe::run, &probe, 2, 1);
  if (!pool().publish(job)) return;
  job.work(0);
  pool().retire();
  detail::record_round_trip(probe.gave_up.load() ? std::nullopt : std::optional<std::int64_t>(probe.round_trip));
}

}  // namespace

namespace detail {

void parallel_for(std::int64_t chunks, void (*run)(void*, std::int64_t), void* context) {
  if (chunks <= 0) return;
  const int helpers = static_cast<int>(std::min<std::int64_t>(num_threads(), chunks)) - 1;
  Job job(run, context, chunks, helpers);
  const bool shared = helpers > 0 && !inside_pool_worker && pool().publish(job);
  job.work(0);
  if (shared) {
    pool().retire();
    if (job.helpers_joined.load(std::memory_order_relaxed) > 0 && placement_probe_due()) probe_placement();
  }
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace detail

}  // namespace xgrad
