// Built in the AddressSanitizer build only (tests/meson.build), where ASan must stop
// it: reading a tensor's elements after the tensor is gone is reported whichever
// allocator served the storage (XGRAD_ALLOCATOR=system: freed memory; the caching
// allocator: it poisons the blocks it keeps).
#include "xgrad.hpp"

int main() {
  const float* elements = nullptr;
  {
    xgrad::Tensor t = xgrad::ones({1000}, xgrad::DType::Float32);
    elements = t.data<float>();
  }
  volatile float read_after_free = elements[10];
  return read_after_free == 1.0f ? 0 : 1;
}
