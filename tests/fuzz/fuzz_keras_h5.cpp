// libFuzzer target for load_keras_h5 (Keras 2 HDF5 weights through xgrad's own HDF5
// subset reader, core/io/hdf5_reader.hpp). The input is written to a scratch file
// (the reader reads files by position) and loaded; a malformed file must end in a
// typed xgrad::Error, never a crash, a huge allocation or output on stderr. Whatever
// loads must hold tensors whose storage matches their shape.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "core/error.hpp"
#include "core/io/keras_h5.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/xgrad-fuzz-keras-" + std::to_string(::getpid()) + ".h5";
  if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
    if (size > 0) std::fwrite(data, 1, size, f);
    std::fclose(f);
  } else {
    return 0;
  }
  try {
    const auto weights = xgrad::load_keras_h5(path);
    for (const auto& [key, t] : weights) {
      fuzz::expect(!key.empty(), "an empty key");
      fuzz::expect(t.defined(), "an undefined tensor");
      std::int64_t numel = 1;
      for (auto d : t.shape()) numel *= d;
      fuzz::expect(numel == t.numel(), "a tensor whose element count does not match its shape");
    }
  } catch (const xgrad::Error&) {
  }
  return 0;
}
