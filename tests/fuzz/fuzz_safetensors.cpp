// libFuzzer target for the safetensors reader. Malformed bytes must end in an
// IOError; whatever parses must survive being written again and re-read bit-exactly,
// metadata included.
#include <cstdint>
#include <map>
#include <string>

#include "core/error.hpp"
#include "core/io/safetensors.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::map<std::string, xgrad::Tensor> tensors;
  std::map<std::string, std::string> metadata;
  try {
    tensors = xgrad::parse_safetensors(fuzz::as_bytes(data, size), "fuzz.safetensors", &metadata);
  } catch (const xgrad::IOError&) {
    return 0;
  }
  std::map<std::string, std::string> again_metadata;
  const auto again = xgrad::parse_safetensors(xgrad::serialize_safetensors(tensors, metadata), "round-trip",
                                              &again_metadata);
  fuzz::expect(again_metadata == metadata, "the round trip changed the metadata");
  fuzz::expect(again.size() == tensors.size(), "the round trip changed the number of tensors");
  for (const auto& [key, t] : tensors) {
    const auto found = again.find(key);
    fuzz::expect(found != again.end(), "the round trip lost a key");
    fuzz::expect(fuzz::identical(t, found->second), "a tensor changed in a safetensors round trip");
  }
  return 0;
}
