#include "core/flush_denormals.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define XGRAD_HAVE_MXCSR 1
#endif

namespace xgrad {

namespace {

#ifdef XGRAD_HAVE_MXCSR
constexpr std::uint32_t kExceptionFlags = 0x3F;  // sticky status bits, not control
constexpr std::uint32_t kFlushBits = 0x8000 | 0x0040;  // FTZ (bit 15) | DAZ (bit 6)
#else
constexpr std::uint32_t kFlushBits = 0;
#endif

}  // namespace

namespace detail {

std::uint32_t floating_point_control() {
#ifdef XGRAD_HAVE_MXCSR
  return _mm_getcsr() & ~kExceptionFlags;
#else
  return 0;
#endif
}

void set_floating_point_control([[maybe_unused]] std::uint32_t control) {
#ifdef XGRAD_HAVE_MXCSR
  _mm_setcsr((_mm_getcsr() & kExceptionFlags) | (control & ~kExceptionFlags));
#endif
}

}  // namespace detail

FlushDenormalsGuard::FlushDenormalsGuard(bool flush) : previous_(detail::floating_point_control()) {
  detail::set_floating_point_control(flush ? previous_ | kFlushBits : previous_ & ~kFlushBits);
}

FlushDenormalsGuard::~FlushDenormalsGuard() { detail::set_floating_point_control(previous_); }

bool flush_denormals_supported() { return kFlushBits != 0; }

bool flushing_denormals() { return kFlushBits != 0 && (detail::floating_point_control() & kFlushBits) == kFlushBits; }

}  // namespace xgrad
