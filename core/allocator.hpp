// xgrad's caching allocator: every tensor's storage and the kernels' scratch come
// from it. A training step frees and re-requests the same sizes each time; without
// a cache, glibc hands large blocks back to the kernel (munmap) and the next step
// faults every page back in (~2 µs per 4 KiB page). The cache keeps freed blocks in
// size classes (four per power of two, so at most 25 % slack) and hands them out
// again, so a step after warm-up maps no fresh memory.
//
// XGRAD_ALLOCATOR=system (read once, at the first allocation) sends every request
// straight to the system allocator: the sanitizer builds use it so that ASan sees
// every use-after-free. Under ASan, cached blocks are poisoned as well.
// XGRAD_CACHE_LIMIT_MB bounds the bytes kept in the cache (default 2048).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <string>

namespace xgrad {

// Counters of the caching allocator behind tensor storage (see the top of this file).
struct MemoryStats {
  std::size_t bytes_in_use = 0;       // blocks handed out and not yet freed (size-class bytes)
  std::size_t peak_bytes_in_use = 0;  // since start or reset_peak_memory_stats()
  std::size_t bytes_cached = 0;       // free blocks kept for reuse
  std::size_t cache_limit = 0;        // the most bytes_cached may reach
  std::uint64_t allocations = 0;         // requests served
  std::uint64_t cache_hits = 0;          // of which from the cache
  std::uint64_t system_allocations = 0;  // blocks taken from the system
  std::uint64_t system_frees = 0;        // blocks given back to it
  bool caching = true;                   // false under XGRAD_ALLOCATOR=system
};

// A snapshot of the allocator's counters (all threads).
MemoryStats memory_stats();
// One line: "in use 12.3 MiB (peak 40.1 MiB), cached 8.0 MiB of 2048 MiB, 1234 allocations (98.7 % from cache)".
std::string format_memory_stats(const MemoryStats& stats);

// Gives every cached block back to the system. Kernel scratch held by a thread is
// given back the next time that thread asks for scratch.
void release_cached_memory();
// Bounds the cache (blocks freed past the bound go back to the system) and trims
// the cache to the new bound at once.
void set_memory_cache_limit(std::size_t bytes);
// Sets peak_bytes_in_use to the current bytes_in_use.
void reset_peak_memory_stats();

namespace detail {
void* allocate_bytes(std::size_t bytes);
void deallocate_bytes(void* block, std::size_t bytes) noexcept;
// As deallocate_bytes, but the block goes back to the system, not to the cache.
void release_bytes(void* block, std::size_t bytes) noexcept;
// Incremented by release_cached_memory(); long-lived per-thread buffers compare it
// with the value they saw to know when to give their blocks back.
std::uint64_t release_generation() noexcept;
// For tests: switches between the cache and the system allocator at run time
// (blocks from either may be freed by the other).
void set_caching_enabled(bool enabled);
}  // namespace detail

// A standard allocator over the cache, 64-byte aligned (one cache line, one
// AVX-512 register). Tensor storage is xt::xarray<T, row_major, CachingAllocator<T>>.
template <class T>
struct CachingAllocator {
  using value_type = T;  // the element type allocated
  CachingAllocator() noexcept = default;
  // Rebinding copy: the allocator is stateless.
  template <class U>
  CachingAllocator(const CachingAllocator<U>&) noexcept {}
  // Room for n elements, from the cache or the system; std::bad_array_new_length if n * sizeof(T) overflows.
  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(detail::allocate_bytes(n * sizeof(T)));
  }
  // Returns a block from allocate(n) to the cache (or the system past the cache limit).
  void deallocate(T* block, std::size_t n) noexcept { detail::deallocate_bytes(block, n * sizeof(T)); }
  // Always true: any CachingAllocator frees another's blocks.
  template <class U>
  bool operator==(const CachingAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace xgrad
