// A minimal zip reader and writer on zlib, for .npz archives and PyTorch's zip
// checkpoints (internal).
//
// Reading follows the central directory (ZIP64 records included, as Python's
// zipfile writes them for NumPy), supports stored and deflated entries, verifies
// every CRC-32 and checks every size and offset against the archive before
// allocating. Entry names are only returned, never used as paths.
// Writing produces a plain (non-ZIP64) archive: up to 65535 entries, 4 GiB.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace xgrad {

// 'name' in single quotes with unprintable bytes escaped, for error messages.
std::string quoted_name(std::string_view name);
// "entry 'w.npy' of model.npz"
std::string describe_zip_entry(std::string_view name, const std::string& archive);

// Calls visit(name, contents) for each entry in central-directory order. Stored
// contents are views into `archive`. `what` names the archive in errors.
void read_zip(std::string_view archive, const std::string& what,
              const std::function<void(const std::string& name, std::string_view contents)>& visit);

// Every entry by name, for formats that look entries up (PyTorch's zip checkpoints).
// Stored contents are views into `archive`; deflated ones are inflated into
// `inflated`, which must outlive the returned views. A repeated name is an IOError.
std::map<std::string, std::string_view> read_zip_entries(std::string_view archive, const std::string& what,
                                                         std::list<std::string>& inflated);

// The entry names in central-directory order, without inflating or checking any
// contents: enough to recognise what kind of archive it is.
std::vector<std::string> zip_entry_names(std::string_view archive, const std::string& what);

class ZipWriter {
 public:
  using Sink = std::function<void(std::string_view)>;
  ZipWriter(Sink sink, std::string what);

  // Deflates (zlib's default level) when `compress`, else stores. With `align` > 0
  // the data starts at a multiple of `align` bytes in the archive, padded through an
  // extra field of the local header (id "FB", as PyTorch pads its records to 64).
  void add(const std::string& name, std::string_view contents, bool compress, std::size_t align = 0);
  // Writes the central directory; the archive is complete afterwards.
  void finish();

 private:
  struct Record {
    std::string name;
    std::uint16_t method = 0;
    std::uint32_t crc = 0;
    std::uint32_t compressed_size = 0;
    std::uint32_t size = 0;
    std::uint32_t offset = 0;
  };
  void emit(std::string_view bytes);

  Sink sink_;
  std::string what_;
  std::vector<Record> records_;
  std::uint64_t offset_ = 0;
};

}  // namespace xgrad
