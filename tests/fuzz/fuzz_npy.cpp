// libFuzzer target for the .npy parser. Malformed bytes must end in an IOError;
// a crash, a sanitizer report or any other exception is a bug. Whatever parses
// must survive serialize + parse bit-exactly.
#include <cstdint>

#include "core/error.hpp"
#include "core/io/npy.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  xgrad::Tensor t;
  try {
    t = xgrad::parse_npy(fuzz::as_bytes(data, size), "fuzz.npy");
  } catch (const xgrad::IOError&) {
    return 0;
  }
  const xgrad::Tensor again = xgrad::parse_npy(xgrad::serialize_npy(t), "round-trip.npy");
  fuzz::expect(fuzz::identical(t, again), "an .npy array changed in a serialize + parse round trip");
  return 0;
}
