// xgrad::parallel_for: every chunk runs exactly once whatever the thread count,
// nested and concurrent calls complete (serially), exceptions reach the caller, and
// a forked child gets a working pool; sleeping workers wake for the next call;
// OpenBLAS's own idle pool is stopped once xgrad makes it serial.
#include <dlfcn.h>
#include <sched.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <stdexcept>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "core/error.hpp"
#include "core/threading.hpp"
#include "xgrad.hpp"
#include "test_support.hpp"

using namespace xgrad;

namespace {

std::vector<int> run_counts(std::int64_t chunks) {
  std::vector<std::atomic<int>> counts(static_cast<std::size_t>(chunks));
  parallel_for(chunks, [&](std::int64_t c) { counts[static_cast<std::size_t>(c)].fetch_add(1); });
  std::vector<int> out;
  for (auto& c : counts) out.push_back(c.load());
  return out;
}

}  // namespace

TEST_CASE("parallel_for runs every chunk exactly once") {
  for (int threads : {1, 2, 4, 17}) {  // 17: more threads than the 16 home blocks
    test_support::ThreadCountGuard guard(threads);
    CAPTURE(threads);
    for (std::int64_t chunks : {0, 1, 2, 3, 16, 17, 100}) {
      CAPTURE(chunks);
      for (int repeat = 0; repeat < 20; ++repeat) CHECK(run_counts(chunks) == std::vector<int>(chunks, 1));
    }
  }
}

TEST_CASE("parallel_for: the caller starts on its home block, the first chunks") {
  // Chunk 1 (the worker's home) waits until chunk 0 has started, so a worker cannot
  // finish its home and take chunk 0 first: the caller always runs chunk 0, whether
  // the worker comes on time or late.
  test_support::ThreadCountGuard guard(2);
  const std::thread::id caller = std::this_thread::get_id();
  for (int repeat = 0; repeat < 50; ++repeat) {
    std::atomic<bool> first_started{false};
    std::thread::id ran_first;
    parallel_for(2, [&](std::int64_t chunk) {
      if (chunk == 0) {
        ran_first = std::this_thread::get_id();
        first_started.store(true);
      } else {
        while (!first_started.load()) std::this_thread::yield();
      }
    });
    CHECK(ran_first == caller);
  }
}

TEST_CASE("parallel_for: a nested call and calls from several threads complete") {
  test_support::ThreadCountGuard guard(2);
  std::atomic<int> inner_runs{0};
  parallel_for(4, [&](std::int64_t) { parallel_for(3, [&](std::int64_t) { inner_runs.fetch_add(1); }); });
  CHECK(inner_runs.load() == 12);

  std::atomic<int> runs{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int repeat = 0; repeat < 50; ++repeat) parallel_for(8, [&](std::int64_t) { runs.fetch_add(1); });
    });
  for (auto& c : callers) c.join();
  CHECK(runs.load() == 4 * 50 * 8);
}

TEST_CASE("parallel_for: workers asleep after an idle spell join the next call; the caller waits out a long chunk") {
  // Workers poll for ~1 ms after a call, then sleep; a caller whose helpers are still
  // busy after ~1 ms sleeps too. Each round idles past the poll, then makes a 2-chunk
  // call whose chunk 0 (the caller's) waits for chunk 1 to start on another thread
  // (bounded, so a worker that never wakes fails the check instead of hanging), and
  // chunk 1 outlasts the caller's poll: the call must still return after it.
  test_support::ThreadCountGuard guard(2);
  CHECK(run_counts(4) == std::vector<int>(4, 1));  // the worker exists
  const std::thread::id caller = std::this_thread::get_id();
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::atomic<bool> second_started{false}, second_finished{false};
    std::thread::id second_ran_on;
    parallel_for(2, [&](std::int64_t chunk) {
      if (chunk == 0) {
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!second_started.load() && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
        return;
      }
      second_ran_on = std::this_thread::get_id();
      second_started.store(true);
      std::this_thread::sleep_for(std::chrono::milliseconds(4));
      second_finished.store(true);
    });
    CHECK(second_ran_on != caller);
    CHECK(second_finished.load());
  }
}

TEST_CASE("parallel_for rethrows a chunk's exception after the others finish") {
  test_support::ThreadCountGuard guard(2);
  std::atomic<int> finished{0};
  CHECK_THROWS_WITH_AS(parallel_for(64,
                                    [&](std::int64_t c) {
                                      if (c == 5) throw std::runtime_error("chunk 5 failed");
                                      finished.fetch_add(1);
                                    }),
                       "chunk 5 failed", std::runtime_error);
  CHECK(finished.load() <= 63);
  // The pool is usable afterwards.
  CHECK(run_counts(10) == std::vector<int>(10, 1));
}

TEST_CASE("parallel_for works in a child process forked after the pool started") {
  test_support::ThreadCountGuard guard(2);
  CHECK(run_counts(16) == std::vector<int>(16, 1));  // the pool's worker exists now
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::atomic<int> runs{0};
    parallel_for(16, [&](std::int64_t) { runs.fetch_add(1); });
    std::_Exit(runs.load() == 16 ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("the default thread count: XGRAD_NUM_THREADS, then OPENBLAS_NUM_THREADS, then the CPUs available") {
  CHECK(detail::threads_from_environment("3", "5", 8) == 3);
  CHECK(detail::threads_from_environment(nullptr, "5", 8) == 5);
  CHECK(detail::threads_from_environment(nullptr, nullptr, 8) == 8);
  CHECK(detail::threads_from_environment("", "junk", 2) == 2);  // OpenBLAS ignores junk as well
  CHECK(detail::threads_from_environment(nullptr, "0", 0) == 1);
  for (const char* bad : {"0", "-2", "two", "3x"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(detail::threads_from_environment(bad, nullptr, 2),
                         doctest::Contains("XGRAD_NUM_THREADS"), ValueError);
  }
}

TEST_CASE("available_cpus respects the affinity mask") {
  cpu_set_t set;
  REQUIRE(sched_getaffinity(0, sizeof(set), &set) == 0);
  CHECK(available_cpus() >= 1);
  CHECK(available_cpus() <= CPU_COUNT(&set));
}

namespace {

// The number of threads of this process (/proc/self/task's entries).
int process_threads() {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) count += entry.is_directory();
  return count;
}

constexpr const char* kChildVariable = "XGRAD_TEST_COUNT_THREADS_AND_EXIT";
constexpr const char* kOpenBlasTestName = "OpenBLAS's idle pool threads are stopped once xgrad makes it serial";

// Runs this test binary again for `kOpenBlasTestName` alone, with XGRAD_NUM_THREADS=2 and
// `openblas_threads` (null: unset) as OPENBLAS_NUM_THREADS; returns its thread count.
int threads_of_fresh_process(const char* openblas_threads) {
  std::vector<std::string> env_strings = {std::string(kChildVariable) + "=1", "XGRAD_NUM_THREADS=2"};
  if (openblas_threads) env_strings.push_back(std::string("OPENBLAS_NUM_THREADS=") + openblas_threads);
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    if (entry.rfind("OPENBLAS_NUM_THREADS=", 0) != 0 && entry.rfind("XGRAD_NUM_THREADS=", 0) != 0) env_strings.push_back(entry);
  }
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string exe = "/proc/self/exe", filter = std::string("--test-case=") + kOpenBlasTestName;
  std::vector<char*> argv = {exe.data(), filter.data(), nullptr};
  pid_t child = 0;
  REQUIRE(posix_spawn(&child, exe.c_str(), nullptr, nullptr, argv.data(), envp.data()) == 0);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

}  // namespace

// OpenBLAS's pthreads build starts one pool thread per CPU but one when it is loaded;
// each polls with sched_yield for ~0.1 s before it sleeps, and took a CPU share from
// xgrad's own threads in every short run (core/threading.cpp, make_blas_serial). A
// process of this binary started with OPENBLAS_NUM_THREADS=1 (OpenBLAS then starts
// none) is the baseline; one started without must have as many threads once xgrad
// made OpenBLAS serial. On a 1-CPU machine OpenBLAS starts none either way and this
// checks nothing beyond the baseline (said so).
TEST_CASE(kOpenBlasTestName) {
  if (std::getenv(kChildVariable) != nullptr) {
    // num_threads() makes OpenBLAS serial (the test listener has called it already).
    // Nothing a CHECK reports survives _Exit: a failure here is exit code 255.
    bool right = num_threads() == 2;
    // A thread started and joined first, so that both processes have whatever threads
    // a runtime adds at the first thread start (ThreadSanitizer's background thread).
    std::thread([] {}).join();
    const int threads = process_threads();
#if !defined(__SANITIZE_THREAD__)
    // A program that raises OpenBLAS's thread count again gets a working pool back
    // (OpenBLAS restarts it at its next threaded call): a 512 x 512 product of ones.
    // Not under ThreadSanitizer, which cannot see OpenBLAS's own synchronisation
    // (scripts/tsan); the other builds run it.
    using SetThreads = void (*)(int);
    if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(2);
    const Tensor product = matmul(ones({512, 512}), ones({512, 512}));
    right = right && product.data<float>()[0] == 512.0f && product.data<float>()[512 * 512 - 1] == 512.0f;
#endif
    std::_Exit(right ? std::min(threads, 250) : 255);
  }
  if (available_cpus() < 2) MESSAGE("one CPU: OpenBLAS starts no pool threads to stop");
  const int baseline = threads_of_fresh_process("1");
  const int as_users_run = threads_of_fresh_process(nullptr);
  CHECK(baseline >= 1);
  CHECK(baseline < 255);  // 255: the child's thread count or product was wrong
  CHECK(as_users_run == baseline);
}
