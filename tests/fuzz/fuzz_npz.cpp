// libFuzzer target for the .npz reader (zip container + one .npy per entry).
// Malformed bytes must end in an IOError; whatever parses must survive being
// written again (stored or deflated, chosen by the input) and re-read bit-exactly.
#include <cstdint>
#include <map>
#include <string>

#include "core/error.hpp"
#include "core/io/npy.hpp"
#include "core/io/npz.hpp"
#include "core/io/zip.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::map<std::string, xgrad::Tensor> arrays;
  try {
    arrays = xgrad::parse_npz(fuzz::as_bytes(data, size), "fuzz.npz");
  } catch (const xgrad::IOError&) {
    return 0;
  }
  std::string archive;
  xgrad::ZipWriter zip([&](std::string_view bytes) { archive += bytes; }, "round-trip.npz");
  const bool compress = size > 0 && (data[size - 1] & 1);
  for (const auto& [key, t] : arrays) {
    if (key.size() + 4 > 0xffff) return 0;  // "<key>.npy" would exceed zip's name limit
    zip.add(key + ".npy", xgrad::serialize_npy(t), compress);
  }
  zip.finish();
  const auto again = xgrad::parse_npz(archive, "round-trip.npz");
  fuzz::expect(again.size() == arrays.size(), "the round trip changed the number of arrays");
  for (const auto& [key, t] : arrays) {
    const auto found = again.find(key);
    fuzz::expect(found != again.end(), "the round trip lost a key");
    fuzz::expect(fuzz::identical(t, found->second), "an array changed in an .npz round trip");
  }
  return 0;
}
