// libFuzzer target for the restricted unpickler of PyTorch checkpoints. The input is
// the data.pkl; storages "0" to "3" exist (64 bytes each), any other key is missing.
// Malformed or disallowed pickles must end in an IOError (never a call, a crash or a
// large allocation); whatever loads must survive save_torch + load_torch bit-exactly.
#include <cstdint>
#include <map>
#include <string>

#include "core/error.hpp"
#include "core/io/torch_format.hpp"
#include "core/io/torch_unpickler.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string storage = [] {
    std::string s(64, '\0');
    for (int i = 0; i < 64; ++i) s[i] = static_cast<char>(i * 37 + 11);
    return s;
  }();
  const auto storage_bytes = [&](const std::string& key) -> std::string_view {
    if (key.size() == 1 && key[0] >= '0' && key[0] <= '3') return storage;
    throw xgrad::IOError("fuzz: no storage " + key);
  };
  std::map<std::string, xgrad::Tensor> tensors;
  try {
    tensors = xgrad::torch_detail::unpickle_state_dict(fuzz::as_bytes(data, size), storage_bytes, 1 << 20, "fuzz.pkl");
  } catch (const xgrad::IOError&) {
    return 0;
  }
  const auto again = xgrad::parse_torch(xgrad::serialize_torch(tensors), "round-trip");
  fuzz::expect(again.size() == tensors.size(), "the round trip changed the number of tensors");
  for (const auto& [key, t] : tensors) {
    const auto found = again.find(key);
    fuzz::expect(found != again.end(), "the round trip lost a key");
    fuzz::expect(fuzz::identical(t, found->second), "a tensor changed in a torch round trip");
  }
  return 0;
}
