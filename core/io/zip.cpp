#include "core/io/zip.hpp"

#include <zlib.h>

#include <algorithm>
#include <limits>

#include "core/error.hpp"

namespace xgrad {

namespace {

constexpr std::uint32_t kLocalSignature = 0x04034b50;
constexpr std::uint32_t kCentralSignature = 0x02014b50;
constexpr std::uint32_t kEndSignature = 0x06054b50;
constexpr std::uint32_t kZip64EndSignature = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr std::uint64_t kLocalSize = 30, kCentralSize = 46, kEndSize = 22, kZip64EndSize = 56,
                        kZip64LocatorSize = 20, kMaxCommentSize = 0xffff;
constexpr std::uint16_t kZip64ExtraId = 0x0001;
constexpr std::uint16_t kPaddingExtraId = 0x4246;  // "FB", PyTorch's alignment padding
constexpr std::uint32_t kZip64Marker = 0xffffffff;
constexpr std::uint16_t kStored = 0, kDeflated = 8;
constexpr std::uint16_t kFlagEncrypted = 0x0001, kFlagUtf8Name = 0x0800;
// Deflate cannot expand its input more than 1032-fold (a 258-byte match per 2 bits).
constexpr std::uint64_t kMaxDeflateRatio = 1032;
// Written timestamps are fixed (1980-01-01 00:00) so that equal data gives equal files.
constexpr std::uint16_t kDosTime = 0, kDosDate = (1 << 5) | 1;
constexpr std::uint16_t kVersionNeeded = 20;             // 2.0: deflate
constexpr std::uint16_t kVersionMadeBy = (3 << 8) | 20;  // Unix, 2.0
constexpr std::uint32_t kUnixFileAttributes = 0100644u << 16;

std::uint64_t read_le(std::string_view b, std::uint64_t at, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i)
    v |= static_cast<std::uint64_t>(static_cast<unsigned char>(b[at + i])) << (8 * i);
  return v;
}
std::uint16_t u16(std::string_view b, std::uint64_t at) {
  return static_cast<std::uint16_t>(read_le(b, at, 2));
}
std::uint32_t u32(std::string_view b, std::uint64_t at) {
  return static_cast<std::uint32_t>(read_le(b, at, 4));
}
std::uint64_t u64(std::string_view b, std::uint64_t at) { return read_le(b, at, 8); }

void put(std::string& out, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

struct Entry {
  std::string name;
  std::uint16_t flags = 0;
  std::uint16_t method = 0;
  std::uint32_t crc = 0;
  std::uint64_t compressed_size = 0;
  std::uint64_t size = 0;
  std::uint64_t local_offset = 0;
  std::uint64_t data_offset = 0;  // found from the local header
};

class ZipReader {
 public:
  ZipReader(std::string_view archive, const std::string& what) : a_(archive), what_(what) {}

  std::vector<Entry> entries() {
    locate_directory();
    std::vector<Entry> entries;
    entries.reserve(count_);
    std::uint64_t pos = directory_offset_;
    const std::uint64_t end = directory_offset_ + directory_size_;
    for (std::uint64_t i = 0; i < count_; ++i) entries.push_back(central_entry(pos, end));
    for (Entry& e : entries) locate_data(e);
    check_disjoint(entries);
    return entries;
  }

  // Checked, inflated contents; `scratch` holds them when the entry is deflated.
  std::string_view contents(const Entry& e, std::string& scratch) const {
    std::string_view data = a_.substr(e.data_offset, e.compressed_size);
    if (e.method == kStored) {
      if (e.compressed_size != e.size)
        corrupt(entry_label(e.name) + " is stored with different compressed and plain sizes");
    } else {
      if (e.size / kMaxDeflateRatio > e.compressed_size)
        corrupt(entry_label(e.name) + " claims " + std::to_string(e.size) + " bytes from " +
                std::to_string(e.compressed_size) + " compressed bytes, more than deflate can produce");
      scratch.resize(e.size);
      inflate_raw(data, scratch.data(), e);
      data = scratch;
    }
    const std::uint32_t crc =
        static_cast<std::uint32_t>(crc32_z(0, reinterpret_cast<const Bytef*>(data.data()), data.size()));
    if (crc != e.crc)
      throw IOError("CRC mismatch in " + describe_zip_entry(e.name, what_) + ": stored " + hex(e.crc) +
                    ", computed " + hex(crc));
    return data;
  }

 private:
  std::string_view a_;
  const std::string& what_;
  std::uint64_t count_ = 0;
  std::uint64_t directory_offset_ = 0;
  std::uint64_t directory_size_ = 0;

  [[noreturn]] void corrupt(const std::string& problem) const {
    throw IOError("corrupt zip archive " + what_ + ": " + problem);
  }

  static std::string entry_label(std::string_view name) { return "entry " + quoted_name(name); }

  static std::string hex(std::uint32_t v) {
    static const char* digits = "0123456789abcdef";
    std::string s = "0x";
    for (int shift = 28; shift >= 0; shift -= 4) s += digits[(v >> shift) & 15];
    return s;
  }

  bool has(std::uint64_t at, std::uint64_t n, std::uint64_t limit) const {
    return at <= limit && n <= limit - at;
  }

  // The end-of-central-directory record is the last one whose comment fits the archive.
  std::uint64_t find_end_record() const {
    if (a_.size() >= kEndSize) {
      const std::uint64_t last = a_.size() - kEndSize;
      const std::uint64_t first = last > kMaxCommentSize ? last - kMaxCommentSize : 0;
      for (std::uint64_t pos = last + 1; pos-- > first;)
        if (u32(a_, pos) == kEndSignature && pos + kEndSize + u16(a_, pos + 20) <= a_.size()) return pos;
    }
    throw IOError("not a zip archive: " + what_ + " has no end-of-central-directory record");
  }

  void locate_directory() {
    const std::uint64_t end = find_end_record();
    std::uint64_t disk = u16(a_, end + 4), directory_disk = u16(a_, end + 6), on_this_disk = u16(a_, end + 8);
    count_ = u16(a_, end + 10);
    directory_size_ = u32(a_, end + 12);
    directory_offset_ = u32(a_, end + 16);
    std::uint64_t limit = end;  // the directory ends before this
    if (end >= kZip64LocatorSize && u32(a_, end - kZip64LocatorSize) == kZip64LocatorSignature) {
      const std::uint64_t locator = end - kZip64LocatorSize;
      const std::uint64_t record = u64(a_, locator + 8);
      if (!has(record, kZip64EndSize, locator) || u32(a_, record) != kZip64EndSignature)
        corrupt("bad ZIP64 end-of-central-directory record");
      disk = u32(a_, record + 16);
      directory_disk = u32(a_, record + 20);
      on_this_disk = u64(a_, record + 24);
      count_ = u64(a_, record + 32);
      directory_size_ = u64(a_, record + 40);
      directory_offset_ = u64(a_, record + 48);
      limit = record;
    }
    if (disk != 0 || directory_disk != 0 || on_this_disk != count_)
      throw IOError("unsupported zip archive " + what_ + ": multi-disk archives are not supported");
    if (!has(directory_offset_, directory_size_, limit))
      corrupt("the central directory lies outside the archive");
    if (count_ > directory_size_ / kCentralSize)
      corrupt(std::to_string(count_) + " entries cannot fit in a central directory of " +
              std::to_string(directory_size_) + " bytes");
  }

  Entry central_entry(std::uint64_t& pos, std::uint64_t end) const {
    if (!has(pos, kCentralSize, end) || u32(a_, pos) != kCentralSignature)
      corrupt("bad central directory record at offset " + std::to_string(pos));
    Entry e;
    e.flags = u16(a_, pos + 8);
    e.method = u16(a_, pos + 10);
    e.crc = u32(a_, pos + 16);
    e.compressed_size = u32(a_, pos + 20);
    e.size = u32(a_, pos + 24);
    const std::uint64_t name_size = u16(a_, pos + 28), extra_size = u16(a_, pos + 30),
                        comment_size = u16(a_, pos + 32);
    e.local_offset = u32(a_, pos + 42);
    const std::uint64_t name_at = pos + kCentralSize, extra_at = name_at + name_size;
    if (!has(name_at, name_size + extra_size + comment_size, end))
      corrupt("central directory record at offset " + std::to_string(pos) + " overruns the directory");
    e.name = std::string(a_.substr(name_at, name_size));
    read_zip64_extra(e, extra_at, extra_at + extra_size);
    pos = extra_at + extra_size + comment_size;
    return e;
  }

  // Sizes and offsets that overflow 32 bits are 0xffffffff in the record and live here.
  void read_zip64_extra(Entry& e, std::uint64_t at, std::uint64_t end) const {
    while (at + 4 <= end) {
      const std::uint16_t id = u16(a_, at), size = u16(a_, at + 2);
      const std::uint64_t field = at + 4, field_end = field + size;
      if (field_end > end) corrupt("bad extra field in the record of " + entry_label(e.name));
      if (id == kZip64ExtraId) {
        std::uint64_t p = field;
        for (std::uint64_t* value : {&e.size, &e.compressed_size, &e.local_offset}) {
          if (*value != kZip64Marker) continue;
          if (p + 8 > field_end) corrupt("short ZIP64 field in the record of " + entry_label(e.name));
          *value = u64(a_, p);
          p += 8;
        }
      }
      at = field_end;
    }
  }

  void locate_data(Entry& e) const {
    const std::string label = entry_label(e.name);
    if (e.flags & kFlagEncrypted)
      throw IOError("unsupported zip archive " + what_ + ": " + label + " is encrypted");
    if (e.method != kStored && e.method != kDeflated)
      throw IOError("unsupported zip archive " + what_ + ": " + label + " uses compression method " +
                    std::to_string(e.method) + " (xgrad reads stored and deflated entries)");
    const std::uint64_t at = e.local_offset;
    if (!has(at, kLocalSize, directory_offset_) || u32(a_, at) != kLocalSignature)
      corrupt("bad local header for " + label);
    const std::uint64_t name_size = u16(a_, at + 26), extra_size = u16(a_, at + 28);
    e.data_offset = at + kLocalSize + name_size + extra_size;
    if (!has(at + kLocalSize, name_size + extra_size, directory_offset_) ||
        !has(e.data_offset, e.compressed_size, directory_offset_))
      corrupt(label + " extends past its space in the archive");
    if (a_.substr(at + kLocalSize, name_size) != e.name)
      corrupt("the local header of " + label + " names a different entry");
  }

  // Overlapping entries would let a small archive expand to many times its size.
  void check_disjoint(const std::vector<Entry>& entries) const {
    std::vector<const Entry*> order;
    for (const Entry& e : entries) order.push_back(&e);
    std::sort(order.begin(), order.end(),
              [](const Entry* x, const Entry* y) { return x->local_offset < y->local_offset; });
    for (std::size_t i = 1; i < order.size(); ++i)
      if (order[i - 1]->data_offset + order[i - 1]->compressed_size > order[i]->local_offset)
        corrupt(entry_label(order[i - 1]->name) + " overlaps " + entry_label(order[i]->name));
  }

  // Raw deflate into exactly e.size bytes, in chunks that fit zlib's 32-bit counters.
  void inflate_raw(std::string_view in, char* out, const Entry& e) const {
    const std::string label = entry_label(e.name);
    z_stream zs{};
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
      throw IOError("zlib: cannot start inflating " + describe_zip_entry(e.name, what_));
    struct End {
      z_stream* zs;
      ~End() { inflateEnd(zs); }
    } end{&zs};
    constexpr std::uint64_t kChunk = std::uint64_t{1} << 30;
    std::uint64_t in_left = in.size(), out_left = e.size;
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.next_out = reinterpret_cast<Bytef*>(out);
    while (true) {
      if (zs.avail_in == 0 && in_left > 0) {
        zs.avail_in = static_cast<uInt>(std::min(in_left, kChunk));
        in_left -= zs.avail_in;
      }
      if (zs.avail_out == 0 && out_left > 0) {
        zs.avail_out = static_cast<uInt>(std::min(out_left, kChunk));
        out_left -= zs.avail_out;
      }
      const int rc = inflate(&zs, Z_NO_FLUSH);
      if (rc == Z_STREAM_END) break;
      if (rc == Z_BUF_ERROR && zs.avail_out == 0 && out_left == 0)
        corrupt(label + " inflates to more than its declared " + std::to_string(e.size) + " bytes");
      if (rc == Z_BUF_ERROR) corrupt(label + " has truncated deflate data");
      if (rc != Z_OK)
        corrupt(label + " has bad deflate data (" + std::string(zs.msg ? zs.msg : "zlib error") + ")");
    }
    if (zs.avail_out != 0 || out_left != 0)
      corrupt(label + " inflates to fewer than its declared " + std::to_string(e.size) + " bytes");
  }
};

}  // namespace

std::string quoted_name(std::string_view name) {
  static const char* digits = "0123456789abcdef";
  std::string out = "'";
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '\'' || c == '\\') {
      out += "\\x";
      out += digits[u >> 4];
      out += digits[u & 15];
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string describe_zip_entry(std::string_view name, const std::string& archive) {
  return "entry " + quoted_name(name) + " of " + archive;
}

void read_zip(std::string_view archive, const std::string& what,
              const std::function<void(const std::string& name, std::string_view contents)>& visit) {
  ZipReader reader(archive, what);
  std::string scratch;
  for (const Entry& e : reader.entries()) visit(e.name, reader.contents(e, scratch));
}

std::map<std::string, std::string_view> read_zip_entries(std::string_view archive, const std::string& what,
                                                         std::list<std::string>& inflated) {
  ZipReader reader(archive, what);
  std::map<std::string, std::string_view> out;
  for (const Entry& e : reader.entries()) {
    std::string scratch;
    std::string_view contents = reader.contents(e, scratch);
    if (e.method != kStored) contents = inflated.emplace_back(std::move(scratch));
    if (!out.emplace(e.name, contents).second)
      throw IOError("corrupt zip archive " + what + ": entry " + quoted_name(e.name) + " appears twice");
  }
  return out;
}

std::vector<std::string> zip_entry_names(std::string_view archive, const std::string& what) {
  ZipReader reader(archive, what);
  std::vector<std::string> names;
  for (const Entry& e : reader.entries()) names.push_back(e.name);
  return names;
}

ZipWriter::ZipWriter(Sink sink, std::string what) : sink_(std::move(sink)), what_(std::move(what)) {}

void ZipWriter::emit(std::string_view bytes) {
  sink_(bytes);
  offset_ += bytes.size();
}

namespace {

std::string deflate_raw(std::string_view in) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw IOError("zlib: cannot start deflating");
  std::string out(deflateBound(&zs, in.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());  // the caller keeps entries below 4 GiB
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw IOError("zlib: deflate failed");
  out.resize(zs.total_out);
  return out;
}

IOError needs_zip64(const std::string& what) {
  return IOError("cannot write " + what +
                 ": the archive would exceed 4 GiB, which needs ZIP64 (not written by xgrad)");
}

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

}  // namespace

void ZipWriter::add(const std::string& name, std::string_view contents, bool compress, std::size_t align) {
  constexpr std::uint64_t kLimit = std::numeric_limits<std::uint32_t>::max();
  if (name.size() > 0xffff) throw IOError("cannot write " + what_ + ": entry name longer than 65535 bytes");
  if (records_.size() == 0xffff) throw IOError("cannot write " + what_ + ": more than 65535 entries");
  if (contents.size() >= kLimit) throw needs_zip64(what_);
  Record r;
  r.name = name;
  r.crc = static_cast<std::uint32_t>(
      crc32_z(0, reinterpret_cast<const Bytef*>(contents.data()), contents.size()));
  r.size = static_cast<std::uint32_t>(contents.size());
  std::string deflated;
  std::string_view payload = contents;
  if (compress) {
    deflated = deflate_raw(contents);
    payload = deflated;
    r.method = kDeflated;
  }
  r.compressed_size = static_cast<std::uint32_t>(payload.size());
  // The padding field: 2-byte id, 2-byte size, then `pad` bytes, so that the data is aligned.
  std::size_t extra_size = 0;
  if (align > 0) {
    const std::uint64_t unpadded = offset_ + kLocalSize + name.size() + 4;
    extra_size = 4 + (align - unpadded % align) % align;
    if (extra_size > 0xffff) throw IOError("cannot write " + what_ + ": alignment " + std::to_string(align) + " too large");
  }
  if (offset_ + kLocalSize + name.size() + extra_size + payload.size() >= kLimit) throw needs_zip64(what_);
  r.offset = static_cast<std::uint32_t>(offset_);

  std::string header;
  put(header, kLocalSignature, 4);
  put(header, kVersionNeeded, 2);
  put(header, is_ascii(name) ? 0 : kFlagUtf8Name, 2);
  put(header, r.method, 2);
  put(header, kDosTime, 2);
  put(header, kDosDate, 2);
  put(header, r.crc, 4);
  put(header, r.compressed_size, 4);
  put(header, r.size, 4);
  put(header, name.size(), 2);
  put(header, extra_size, 2);
  header += name;
  if (extra_size > 0) {
    put(header, kPaddingExtraId, 2);
    put(header, extra_size - 4, 2);
    header.append(extra_size - 4, 'Z');
  }
  emit(header);
  emit(payload);
  records_.push_back(std::move(r));
}

void ZipWriter::finish() {
  const std::uint64_t directory_offset = offset_;
  std::string directory;
  for (const Record& r : records_) {
    put(directory, kCentralSignature, 4);
    put(directory, kVersionMadeBy, 2);
    put(directory, kVersionNeeded, 2);
    put(directory, is_ascii(r.name) ? 0 : kFlagUtf8Name, 2);
    put(directory, r.method, 2);
    put(directory, kDosTime, 2);
    put(directory, kDosDate, 2);
    put(directory, r.crc, 4);
    put(directory, r.compressed_size, 4);
    put(directory, r.size, 4);
    put(directory, r.name.size(), 2);
    put(directory, 0, 2);  // extra field
    put(directory, 0, 2);  // comment
    put(directory, 0, 2);  // disk
    put(directory, 0, 2);  // internal attributes
    put(directory, kUnixFileAttributes, 4);
    put(directory, r.offset, 4);
    directory += r.name;
  }
  const std::uint64_t directory_size = directory.size();
  if (directory_offset + directory_size >= std::numeric_limits<std::uint32_t>::max())
    throw needs_zip64(what_);
  put(directory, kEndSignature, 4);
  put(directory, 0, 2);  // this disk
  put(directory, 0, 2);  // disk with the directory
  put(directory, records_.size(), 2);
  put(directory, records_.size(), 2);
  put(directory, directory_size, 4);
  put(directory, directory_offset, 4);
  put(directory, 0, 2);  // comment
  emit(directory);
}

}  // namespace xgrad
