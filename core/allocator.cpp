#include "core/allocator.hpp"

#include <array>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/error.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define XGRAD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define XGRAD_ASAN 1
#endif
#endif
#ifdef XGRAD_ASAN
#include <sanitizer/asan_interface.h>
#define XGRAD_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define XGRAD_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define XGRAD_POISON(p, n) ((void)(p), (void)(n))
#define XGRAD_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace xgrad {

namespace {

constexpr std::size_t kAlignment = 64;
constexpr std::size_t kSmallestClass = 64;
// Larger requests go to the system as they are (nothing of this size is reused
// step after step, and the class arithmetic below stays far from overflow).
constexpr std::size_t kLargestCached = std::size_t{1} << 40;
constexpr int kClassCount = 4 * (40 - 6) + 1;
constexpr std::size_t kDefaultCacheLimit = std::size_t{2048} << 20;

// Size classes: 64 bytes, then four classes per power of two: for
// 2^k < bytes <= 2^(k+1) the class is 2^k + q 2^(k-2), q = 1..4 (at most 25 % slack).
struct SizeClass {
  int index;
  std::size_t bytes;
};
SizeClass size_class(std::size_t bytes) {
  if (bytes <= kSmallestClass) return {0, kSmallestClass};
  const int k = static_cast<int>(std::bit_width(bytes - 1)) - 1;  // k >= 6
  const std::size_t base = std::size_t{1} << k, step = base / 4;
  const std::size_t q = (bytes - base + step - 1) / step;
  return {(k - 6) * 4 + static_cast<int>(q), base + q * step};
}

// The inverse: the bytes of class `index`.
std::size_t size_class_bytes(int index) {
  if (index == 0) return kSmallestClass;
  const int k = (index - 1) / 4 + 6, q = (index - 1) % 4 + 1;
  const std::size_t base = std::size_t{1} << k;
  return base + static_cast<std::size_t>(q) * (base / 4);
}

void* system_allocate(std::size_t bytes) { return ::operator new(bytes, std::align_val_t{kAlignment}); }
void system_free(void* block) noexcept { ::operator delete(block, std::align_val_t{kAlignment}); }

std::size_t cache_limit_from_environment() {
  const char* text = std::getenv("XGRAD_CACHE_LIMIT_MB");
  if (text == nullptr || *text == '\0') return kDefaultCacheLimit;
  char* end = nullptr;
  const unsigned long long mib = std::strtoull(text, &end, 10);
  if (*end != '\0' || text[0] == '-' || mib > (kLargestCached >> 20))
    throw ValueError(fmt::format("XGRAD_CACHE_LIMIT_MB='{}': expected a number of MiB between 0 and {}", text,
                                 kLargestCached >> 20));
  return static_cast<std::size_t>(mib) << 20;
}

bool caching_from_environment() {
  const char* text = std::getenv("XGRAD_ALLOCATOR");
  if (text == nullptr || *text == '\0') return true;
  const std::string_view kind(text);
  if (kind == "caching") return true;
  if (kind == "system") return false;
  throw ValueError(fmt::format("XGRAD_ALLOCATOR='{}': expected 'caching' (the default) or 'system'", kind));
}

struct Pool {
  std::mutex mutex;
  std::array<std::vector<void*>, kClassCount> free_blocks;
  MemoryStats stats;
  std::atomic<std::uint64_t> generation{0};

  Pool() {
    stats.caching = caching_from_environment();
    stats.cache_limit = cache_limit_from_environment();
  }

  void note_in_use(std::size_t bytes) {
    stats.bytes_in_use += bytes;
    if (stats.bytes_in_use > stats.peak_bytes_in_use) stats.peak_bytes_in_use = stats.bytes_in_use;
  }

  // Removes cached blocks, largest classes first, until at most `keep` bytes stay
  // cached; returns them (the caller frees them outside the lock).
  std::vector<std::pair<void*, std::size_t>> take_cached_above(std::size_t keep) {
    std::vector<std::pair<void*, std::size_t>> taken;
    for (int index = kClassCount - 1; index >= 0 && stats.bytes_cached > keep; --index) {
      auto& list = free_blocks[static_cast<std::size_t>(index)];
      const std::size_t class_bytes = size_class_bytes(index);
      while (!list.empty() && stats.bytes_cached > keep) {
        taken.emplace_back(list.back(), class_bytes);
        list.pop_back();
        stats.bytes_cached -= class_bytes;
        ++stats.system_frees;
      }
    }
    return taken;
  }

};

// Never destroyed: tensors held by static objects may be freed after main returns.
Pool& pool() {
  static Pool* instance = new Pool();
  return *instance;
}

void free_all(const std::vector<std::pair<void*, std::size_t>>& blocks) noexcept {
  for (auto [block, bytes] : blocks) {
    XGRAD_UNPOISON(block, bytes);
    system_free(block);
  }
}

}  // namespace

namespace detail {

void* allocate_bytes(std::size_t bytes) {
  if (bytes == 0) bytes = 1;
  Pool& p = pool();
  if (bytes > kLargestCached) {
    void* block = system_allocate(bytes);
    std::lock_guard lock(p.mutex);
    ++p.stats.allocations;
    ++p.stats.system_allocations;
    p.note_in_use(bytes);
    return block;
  }
  const SizeClass c = size_class(bytes);
  {
    std::lock_guard lock(p.mutex);
    ++p.stats.allocations;
    p.note_in_use(c.bytes);
    auto& list = p.free_blocks[static_cast<std::size_t>(c.index)];
    if (!list.empty()) {
      void* block = list.back();
      list.pop_back();
      p.stats.bytes_cached -= c.bytes;
      ++p.stats.cache_hits;
      XGRAD_UNPOISON(block, bytes);
      return block;
    }
    ++p.stats.system_allocations;
  }
  void* block = nullptr;
  try {
    block = system_allocate(c.bytes);
  } catch (const std::bad_alloc&) {
    // The cache may hold what the system lacks: give it back and try once more.
    release_cached_memory();
    try {
      block = system_allocate(c.bytes);
    } catch (...) {
      std::lock_guard lock(p.mutex);
      p.stats.bytes_in_use -= c.bytes;
      throw;
    }
  }
  XGRAD_POISON(static_cast<char*>(block) + bytes, c.bytes - bytes);  // the slack past the request
  return block;
}

namespace {

void give_back(void* block, std::size_t bytes, bool may_cache) noexcept {
  if (block == nullptr) return;
  if (bytes == 0) bytes = 1;
  Pool& p = pool();
  if (bytes > kLargestCached) {
    {
      std::lock_guard lock(p.mutex);
      p.stats.bytes_in_use -= bytes;
      ++p.stats.system_frees;
    }
    system_free(block);
    return;
  }
  const SizeClass c = size_class(bytes);
  {
    std::lock_guard lock(p.mutex);
    p.stats.bytes_in_use -= c.bytes;
    if (may_cache && p.stats.caching && p.stats.bytes_cached + c.bytes <= p.stats.cache_limit) {
      try {
        p.free_blocks[static_cast<std::size_t>(c.index)].push_back(block);
        p.stats.bytes_cached += c.bytes;
        XGRAD_POISON(block, c.bytes);
        return;
      } catch (const std::bad_alloc&) {
        // No room to remember the block: it goes back to the system below.
      }
    }
    ++p.stats.system_frees;
  }
  XGRAD_UNPOISON(block, c.bytes);
  system_free(block);
}

}  // namespace

void deallocate_bytes(void* block, std::size_t bytes) noexcept { give_back(block, bytes, true); }
void release_bytes(void* block, std::size_t bytes) noexcept { give_back(block, bytes, false); }

std::uint64_t release_generation() noexcept { return pool().generation.load(std::memory_order_acquire); }

void set_caching_enabled(bool enabled) {
  Pool& p = pool();
  std::vector<std::pair<void*, std::size_t>> taken;
  {
    std::lock_guard lock(p.mutex);
    p.stats.caching = enabled;
    if (!enabled) taken = p.take_cached_above(0);
  }
  free_all(taken);
}

}  // namespace detail

MemoryStats memory_stats() {
  Pool& p = pool();
  std::lock_guard lock(p.mutex);
  return p.stats;
}

std::string format_memory_stats(const MemoryStats& s) {
  constexpr double kMiB = 1024.0 * 1024.0;
  const double hit_percent = s.allocations == 0 ? 0.0 : 100.0 * static_cast<double>(s.cache_hits) /
                                                              static_cast<double>(s.allocations);
  return fmt::format("in use {:.1f} MiB (peak {:.1f} MiB), cached {:.1f} MiB of {:.0f} MiB, {} allocations "
                     "({:.1f} % from cache, {} from the system){}",
                     static_cast<double>(s.bytes_in_use) / kMiB, static_cast<double>(s.peak_bytes_in_use) / kMiB,
                     static_cast<double>(s.bytes_cached) / kMiB, static_cast<double>(s.cache_limit) / kMiB,
                     s.allocations, hit_percent, s.system_allocations, s.caching ? "" : " [XGRAD_ALLOCATOR=system]");
}

void release_cached_memory() {
  Pool& p = pool();
  std::vector<std::pair<void*, std::size_t>> taken;
  {
    std::lock_guard lock(p.mutex);
    taken = p.take_cached_above(0);
    p.generation.fetch_add(1, std::memory_order_acq_rel);
  }
  free_all(taken);
}

void set_memory_cache_limit(std::size_t bytes) {
  Pool& p = pool();
  std::vector<std::pair<void*, std::size_t>> taken;
  {
    std::lock_guard lock(p.mutex);
    p.stats.cache_limit = bytes;
    taken = p.take_cached_above(bytes);
  }
  free_all(taken);
}

void reset_peak_memory_stats() {
  Pool& p = pool();
  std::lock_guard lock(p.mutex);
  p.stats.peak_bytes_in_use = p.stats.bytes_in_use;
}

}  // namespace xgrad
