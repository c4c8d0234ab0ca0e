#include "core/kernels/conv_scratch.hpp"

#include <array>
#include <memory>


namespace xgrad::kernels {

namespace {

struct Buffer {
  std::unique_ptr<std::byte[]> data;
  std::size_t bytes = 0;
};

thread_local std::array<Buffer, static_cast<std::size_t>(ConvScratch::Count)> t_buffers;

}  // namespace

template <class T>
T* conv_scratch(ConvScratch slot, std::size_t count) {
  Buffer& buffer = t_buffers[static_cast<std::size_t>(slot)];
  const std::size_t bytes = count * sizeof(T);
  if (bytes > buffer.bytes) {
    // new[] of std::byte is aligned for any fundamental type (and 16 bytes on x86-64).
    buffer.data.reset(new std::byte[bytes]);
    buffer.bytes = bytes;
  }
  return reinterpret_cast<T*>(buffer.data.get());
}

template float* conv_scratch<float>(ConvScratch, std::size_t);
template double* conv_scratch<double>(ConvScratch, std::size_t);

}  // namespace xgrad::kernels
