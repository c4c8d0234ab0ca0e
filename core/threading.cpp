#include "core/threading.hpp"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>

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

}  // namespace xgrad
