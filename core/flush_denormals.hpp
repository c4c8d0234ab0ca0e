// Flushing denormal (subnormal) floats to zero, as JAX does on CPU: XLA's CPU client
// runs every computation with the x86 MXCSR's flush-to-zero and denormals-are-zero
// bits set (tsl::port::ScopedFlushDenormal; jax-ml/jax#16200: "working as intended").
// xgrad's optimizer steps run so (optim/optimizer.hpp); anything else can, in a scope.
#pragma once

#include <cstdint>

namespace xgrad {

// RAII: on this thread and in the pool workers that run its parallel kernels,
// floating-point results too small to be normal become ±0 and denormal operands
// are read as ±0 (float and double; x86-64: MXCSR's FTZ and DAZ bits). The
// destructor restores the previous mode. A no-op where flush_denormals_supported()
// is false.
class FlushDenormalsGuard {
 public:
  // Flushes in the scope when `flush` is true; keeps (gradual underflow) when false.
  explicit FlushDenormalsGuard(bool flush = true);
  ~FlushDenormalsGuard();
  FlushDenormalsGuard(const FlushDenormalsGuard&) = delete;
  FlushDenormalsGuard& operator=(const FlushDenormalsGuard&) = delete;

 private:
  std::uint32_t previous_;
};

// Whether this build can switch the mode (x86-64 and x86: yes; elsewhere no).
bool flush_denormals_supported();
// Whether this thread flushes denormals now.
bool flushing_denormals();

namespace detail {
// This thread's floating-point control bits (x86: MXCSR without its sticky
// exception flags; 0 elsewhere): parallel_for's workers compute in the caller's.
std::uint32_t floating_point_control();
void set_floating_point_control(std::uint32_t control);
}  // namespace detail

}  // namespace xgrad
