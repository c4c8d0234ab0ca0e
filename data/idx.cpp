#include "data/idx.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <string_view>
#include <system_error>

#include <fmt/format.h>
#include <zlib.h>

#include "core/error.hpp"

namespace xgrad {
namespace {

// A file read through zlib's gz* layer, which inflates gzip members and passes
// any other content through unchanged.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path), file_(gzopen(path.c_str(), "rb")) {
    if (file_ == nullptr)
      throw IOError(fmt::format("{}: cannot open: {}", path, std::generic_category().message(errno)));
    gzbuffer(file_, 1u << 18);
  }
  ~GzReader() { gzclose(file_); }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  // Reads up to n bytes; returns fewer only when the content ends.
  std::size_t read(void* out, std::size_t n) {
    auto* bytes = static_cast<unsigned char*>(out);
    std::size_t total = 0;
    while (total < n) {
      const auto chunk = static_cast<unsigned>(std::min<std::size_t>(n - total, std::size_t{1} << 30));
      const int got = gzread(file_, bytes + total, chunk);
      if (got < 0) throw IOError(fmt::format("{}: corrupt or unreadable: {}", path_, zlib_message()));
      if (got == 0) break;
      total += static_cast<std::size_t>(got);
    }
    return total;
  }

  // True when a gzip stream stopped before its end marker (a cut-off .gz file).
  bool ended_early() const {
    int code = Z_OK;
    gzerror(file_, &code);
    return code == Z_BUF_ERROR;
  }

 private:
  // zlib prefixes its messages with the path; ours already start with it.
  std::string zlib_message() const {
    int code = Z_OK;
    std::string_view message = gzerror(file_, &code);
    const std::string prefix = path_ + ": ";
    if (message.starts_with(prefix)) message.remove_prefix(prefix.size());
    return std::string(message);
  }

  std::string path_;
  gzFile file_;
};

// IDX element type codes and their names; only unsigned bytes are read.
constexpr unsigned char kUnsignedByte = 0x08;
const char* idx_type_name(unsigned char code) {
  switch (code) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return nullptr;
  }
}

std::string dims_str(const Shape& shape) { return fmt::format("{}", fmt::join(shape, "x")); }

std::string declared_bytes_str(const Shape& shape, std::int64_t count) {
  if (shape.size() == 1) return fmt::format("{} bytes", count);
  return fmt::format("{} = {} bytes", dims_str(shape), count);
}

std::uint32_t big_endian_u32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  GzReader in(path);

  std::array<unsigned char, 4> magic{};
  const std::size_t magic_got = in.read(magic.data(), magic.size());
  if (magic_got == 0) throw IOError(fmt::format("{}: not an IDX file: the file is empty", path));
  if (magic_got < magic.size())
    throw IOError(fmt::format("{}: truncated: the file ends inside the 4-byte magic number", path));
  const std::uint32_t magic_number = big_endian_u32(magic.data());
  if (magic[0] != 0 || magic[1] != 0)
    throw IOError(fmt::format("{}: not an IDX file: magic number 0x{:08x} does not start with two zero bytes",
                              path, magic_number));
  const unsigned char type_code = magic[2];
  if (idx_type_name(type_code) == nullptr)
    throw IOError(fmt::format("{}: not an IDX file: magic number 0x{:08x} has unknown element type code 0x{:02x}",
                              path, magic_number, type_code));
  if (type_code != kUnsignedByte)
    throw IOError(fmt::format("{}: unsupported IDX element type 0x{:02x} ({}) in magic number 0x{:08x}; "
                              "only 0x08 (unsigned byte) is supported",
                              path, type_code, idx_type_name(type_code), magic_number));
  const std::size_t rank = magic[3];
  if (rank == 0)
    throw IOError(fmt::format("{}: not an IDX file: magic number 0x{:08x} declares 0 dimensions", path,
                              magic_number));

  std::vector<unsigned char> header(4 * rank);
  const std::size_t header_got = in.read(header.data(), header.size());
  if (header_got < header.size())
    throw IOError(fmt::format("{}: truncated: the file ends inside the header ({} of {} bytes)", path,
                              magic.size() + header_got, magic.size() + header.size()));

  IdxArray result;
  result.shape.resize(rank);
  for (std::size_t i = 0; i < rank; ++i) result.shape[i] = big_endian_u32(&header[4 * i]);
  std::int64_t count = 1;
  for (std::size_t i = 0; i < rank; ++i) {
    if (result.shape[i] == 0)
      throw IOError(fmt::format("{}: header declares an empty {} array (dimension {} is 0)", path,
                                dims_str(result.shape), i));
    // count <= 2^31 and a dimension < 2^32 before this product: no overflow.
    count *= result.shape[i];
    if (count > kMaxIdxElements)
      throw IOError(fmt::format("{}: header declares {} elements, more than the limit of {} (2^31)", path,
                                dims_str(result.shape), kMaxIdxElements));
  }

  // Grow with what arrives rather than trusting the header with one big allocation:
  // only once a first full chunk has arrived is room reserved for (up to 64 chunks of)
  // the rest, which saves the copies of geometric growth on real datasets.
  const auto declared = static_cast<std::size_t>(count);
  constexpr std::size_t kChunk = std::size_t{1} << 20;
  std::vector<std::uint8_t>& bytes = result.bytes;
  while (bytes.size() < declared) {
    const std::size_t before = bytes.size();
    const std::size_t want = std::min(kChunk, declared - before);
    bytes.resize(before + want);
    const std::size_t got = in.read(bytes.data() + before, want);
    bytes.resize(before + got);
    if (got < want) break;
    if (before == 0) bytes.reserve(std::min(declared, 64 * kChunk));
  }
  if (bytes.size() < declared)
    throw IOError(fmt::format("{}: truncated: header declares {} of data, found {}", path,
                              declared_bytes_str(result.shape, count), bytes.size()));

  // Read to the end: counts trailing bytes and lets zlib check the gzip trailer (CRC, length).
  std::size_t trailing = 0;
  std::array<unsigned char, 1 << 16> scratch{};
  while (const std::size_t got = in.read(scratch.data(), scratch.size())) trailing += got;
  if (trailing > 0)
    throw IOError(fmt::format("{}: trailing data: header declares {} of data, found {}", path,
                              declared_bytes_str(result.shape, count), declared + trailing));
  if (in.ended_early())
    throw IOError(fmt::format("{}: truncated: the gzip stream ends before its end marker", path));
  return result;
}

}  // namespace xgrad
