// libFuzzer target for the Flax msgpack reader (msgpack-c++ parse events, Flax's
// extension types, chunked arrays). Malformed bytes must end in an IOError; whatever
// parses must survive save (chunk size chosen by the input) and re-read bit-exactly,
// unless its keys cannot nest (a ValueError of the saver: "a" beside "a.b", empty parts).
#include <cstdint>
#include <map>
#include <string>

#include "core/error.hpp"
#include "core/io/flax_msgpack.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::map<std::string, xgrad::Tensor> tensors;
  try {
    tensors = xgrad::parse_flax_msgpack(fuzz::as_bytes(data, size), "fuzz.msgpack");
  } catch (const xgrad::IOError&) {
    return 0;
  }
  std::string bytes;
  try {
    bytes = xgrad::serialize_flax_msgpack(tensors, 1 + (size > 0 ? data[size - 1] % 64 : 0));
  } catch (const xgrad::ValueError&) {
    return 0;
  }
  const auto again = xgrad::parse_flax_msgpack(bytes, "round-trip");
  fuzz::expect(again.size() == tensors.size(), "the round trip changed the number of tensors");
  for (const auto& [key, t] : tensors) {
    const auto found = again.find(key);
    fuzz::expect(found != again.end(), "the round trip lost a key");
    fuzz::expect(fuzz::identical(t, found->second), "a tensor changed in a msgpack round trip");
  }
  return 0;
}
