// libFuzzer target for the IDX reader, plain and gzip'ed. read_idx reads files
// through zlib's gz* layer, so the input goes into an in-memory file (memfd) that
// read_idx opens by its /proc path: the fuzzer exercises exactly the production
// path, gzip detection included. Malformed bytes must end in an IOError.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "core/error.hpp"
#include "data/idx.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const int fd = memfd_create("fuzz.idx", 0);
  fuzz::expect(fd >= 0, "memfd_create failed");
  fuzz::expect(ftruncate(fd, 0) == 0, "ftruncate failed");
  fuzz::expect(pwrite(fd, data, size, 0) == static_cast<ssize_t>(size), "pwrite failed");
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    const xgrad::IdxArray array = xgrad::read_idx(path);
    fuzz::expect(static_cast<std::int64_t>(array.bytes.size()) == xgrad::numel(array.shape),
                 "read_idx returned a byte count that does not match its shape");
  } catch (const xgrad::IOError&) {
  }
  return 0;
}
