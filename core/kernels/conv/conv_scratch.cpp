#include "core/kernels/conv/conv_scratch.hpp"

#include <array>

#include "core/allocator.hpp"

namespace xgrad::kernels {

namespace {

// One slot's block, from the caching allocator (so memory_stats() counts it).
struct Buffer {
  void* data = nullptr;
  std::size_t bytes = 0;
  void reset(bool to_system = false) noexcept {
    if (to_system) detail::release_bytes(data, bytes);
    else detail::deallocate_bytes(data, bytes);
    data = nullptr;
    bytes = 0;
  }
};

struct ThreadBuffers {
  std::array<Buffer, static_cast<std::size_t>(ConvScratch::Count)> slots;
  std::uint64_t generation = 0;  // release_cached_memory() calls seen
  ~ThreadBuffers() {
    for (Buffer& b : slots) b.reset();
  }
};

thread_local ThreadBuffers t_buffers;

}  // namespace

template <class T>
T* conv_scratch(ConvScratch slot, std::size_t count) {
  // After release_cached_memory(), this thread's blocks go back to the system too.
  if (const std::uint64_t generation = detail::release_generation(); generation != t_buffers.generation) {
    for (Buffer& b : t_buffers.slots) b.reset(/*to_system=*/true);
    t_buffers.generation = generation;
  }
  Buffer& buffer = t_buffers.slots[static_cast<std::size_t>(slot)];
  const std::size_t bytes = count * sizeof(T);
  if (bytes > buffer.bytes) {
    buffer.reset();
    buffer.data = detail::allocate_bytes(bytes);  // 64-byte aligned
    buffer.bytes = bytes;
  }
  return static_cast<T*>(buffer.data);
}

template float* conv_scratch<float>(ConvScratch, std::size_t);
template double* conv_scratch<double>(ConvScratch, std::size_t);
template std::int64_t* conv_scratch<std::int64_t>(ConvScratch, std::size_t);

}  // namespace xgrad::kernels
