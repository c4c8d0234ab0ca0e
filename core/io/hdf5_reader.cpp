// The bounded HDF5 subset reader (core/io/hdf5_reader.hpp). Structure names and
// field orders follow the HDF5 File Format Specification 3.0; "spec IV.A.1.a" style
// references name its sections. Every read goes through Cursor (bounds-checked
// little-endian fields) over a block fetched by Impl::block (checked against the
// file, capped in size); any failure is an IOError saying what was being read.
#include "core/io/hdf5_reader.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <string_view>

#include <fmt/format.h>

#include "core/error.hpp"

namespace xgrad::hdf5 {

namespace {

constexpr std::string_view kSignature{"\x89HDF\r\n\x1a\n", 8};
constexpr std::uint64_t kUndefined = std::numeric_limits<std::uint64_t>::max();
// No metadata block (object header chunk, heap segment, B-tree node) of a Keras file
// comes near this; a larger claim is damage, refused before anything is allocated.
constexpr std::uint64_t kMaxMetadataBlock = std::uint64_t{64} << 20;
constexpr std::size_t kMaxHeaderChunks = 4096;    // continuation blocks per object
constexpr std::size_t kMaxMessages = 1 << 16;     // messages per object header
constexpr std::size_t kMaxLinks = 1 << 20;        // members per group
constexpr std::size_t kMaxBtreeNodes = 1 << 20;   // nodes per B-tree walk
constexpr std::size_t kMaxRank = 32;              // H5S_MAX_RANK
constexpr std::size_t kMaxPathComponents = 256;
constexpr std::size_t kMaxEnumMembers = 1 << 16;
constexpr std::uint64_t kMaxNameBytes = 1 << 16;  // a link, attribute or enum member name
// Allowance on top of kMaxExpansion * file size, so tiny files still decode.
constexpr std::uint64_t kBudgetAllowance = std::uint64_t{1} << 20;
// Metadata bytes read per byte of file. A well-formed file's metadata is read about
// once (objects are cached); overlapping structures in a hostile file could otherwise
// make every lookup re-read (and the object cache keep) the whole file.
constexpr std::uint64_t kMaxMetadataReads = 32;

// Little-endian fields of a block; running past its end is an IOError naming `what`.
class Cursor {
 public:
  Cursor(std::string_view data, const std::string& context, std::string what)
      : data_(data), context_(context), what_(std::move(what)) {}

  std::size_t pos() const { return pos_; }
  std::size_t remaining() const { return data_.size() - pos_; }
  void seek(std::size_t pos) {
    if (pos > data_.size()) fail("a field lies past its end");
    pos_ = pos;
  }
  void skip(std::uint64_t n) {
    if (n > remaining()) fail("it ends early");
    pos_ += static_cast<std::size_t>(n);
  }
  std::string_view bytes(std::uint64_t n) {
    if (n > remaining()) fail("it ends early");
    std::string_view out = data_.substr(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return out;
  }
  std::uint64_t uint(unsigned n) {  // n in 1..8
    const std::string_view b = bytes(n);
    std::uint64_t v = 0;
    for (unsigned i = 0; i < n; ++i) v |= std::uint64_t{static_cast<unsigned char>(b[i])} << (8 * i);
    return v;
  }
  std::uint8_t u8() { return static_cast<std::uint8_t>(uint(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(uint(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(uint(4)); }
  std::uint64_t u64() { return uint(8); }
  [[noreturn]] void fail(const std::string& why) const {
    throw IOError(fmt::format("{}: damaged HDF5 file: {}: {}", context_, what_, why));
  }

 private:
  std::string_view data_;
  std::size_t pos_ = 0;
  const std::string& context_;
  std::string what_;
};

std::uint64_t round_up8(std::uint64_t n) { return (n + 7) & ~std::uint64_t{7}; }

}  // namespace

const char* type_class_name(TypeClass c) {
  static const char* names[] = {"integer", "float", "time", "string", "bitfield", "opaque", "compound", "reference",
                                "enum",    "vlen",  "array"};
  const auto i = static_cast<std::size_t>(c);
  return i < std::size(names) ? names[i] : "unknown";
}

struct File::Impl {
  std::string context;
  InputFile input;
  std::uint64_t file_size = 0;
  std::uint64_t base = 0;          // the superblock's base address (addresses are relative to it)
  unsigned offset_size = 8, length_size = 8;
  std::uint64_t root_address = 0;
  std::map<std::uint64_t, std::unique_ptr<Object>> objects;
  // Global heap collections already indexed: address -> (object index -> (offset, size)).
  std::map<std::uint64_t, std::map<std::uint16_t, std::pair<std::uint64_t, std::uint64_t>>> heaps;
  std::uint64_t budget = 0;
  std::uint64_t metadata_budget = 0;

  Impl(const std::string& path, std::string ctx) : context(std::move(ctx)), input(path), file_size(input.size()) {
    budget = file_size > (kUndefined - kBudgetAllowance) / File::kMaxExpansion
                 ? kUndefined
                 : file_size * File::kMaxExpansion + kBudgetAllowance;
    metadata_budget = file_size > (kUndefined - kBudgetAllowance) / kMaxMetadataReads
                          ? kUndefined
                          : file_size * kMaxMetadataReads + kBudgetAllowance;
  }

  [[noreturn]] void damaged(const std::string& why) const {
    throw IOError(fmt::format("{}: damaged HDF5 file: {}", context, why));
  }
  [[noreturn]] void unsupported(const std::string& why) const {
    throw IOError(fmt::format("{}: unsupported HDF5 feature: {}", context, why));
  }

  // The file offset of relative address `address` holding `n` bytes; IOError if any of
  // it lies outside the file.
  std::uint64_t locate(std::uint64_t address, std::uint64_t n, const std::string& what) const {
    if (address == kUndefined) damaged(fmt::format("{} has an undefined address", what));
    std::uint64_t offset = 0;
    if (__builtin_add_overflow(address, base, &offset) || offset > file_size || n > file_size - offset)
      damaged(fmt::format("{} at address {} ({} bytes) runs past the end of the {}-byte file (truncated?)", what,
                          address, n, file_size));
    return offset;
  }

  std::string read(std::uint64_t address, std::uint64_t n, const std::string& what) const {
    const std::uint64_t offset = locate(address, n, what);
    std::string out(static_cast<std::size_t>(n), '\0');
    if (n) input.read_at(offset, out.data(), out.size());
    return out;
  }

  // A metadata block: within the file and at most kMaxMetadataBlock bytes.
  std::string block(std::uint64_t address, std::uint64_t n, const std::string& what) {
    if (n > kMaxMetadataBlock) damaged(fmt::format("{} claims {} bytes", what, n));
    locate(address, n, what);
    if (n > metadata_budget)
      damaged(fmt::format("reading {} would take the metadata read from this {}-byte file past {} times its size "
                          "(overlapping structures?)",
                          what, file_size, kMaxMetadataReads));
    metadata_budget -= n;
    return read(address, n, what);
  }

  // As many bytes as exist from `address` up to `n` (for structures whose length is
  // only known after their header is parsed).
  std::string block_upto(std::uint64_t address, std::uint64_t n, const std::string& what) {
    const std::uint64_t offset = locate(address, 0, what);
    return block(address, std::min(n, file_size - offset), what);
  }

  std::uint64_t addr(Cursor& c) const {
    const std::uint64_t v = c.uint(offset_size);
    return offset_size < 8 && v == (std::uint64_t{1} << (8 * offset_size)) - 1 ? kUndefined : v;
  }
  std::uint64_t len(Cursor& c) const { return c.uint(length_size); }

  void charge(std::uint64_t bytes, const std::string& what) {
    if (bytes > budget)
      throw ValueError(fmt::format("{}: {} would take the bytes decoded from this {}-byte file past {} times its "
                                   "size",
                                   context, what, file_size, File::kMaxExpansion));
    budget -= bytes;
  }

  // ---- superblock (spec II.A) ----
  void open_superblock() {
    // The signature sits at 0, 512, 1024, 2048, ... (after a user block).
    std::uint64_t at = kUndefined;
    for (std::uint64_t pos = 0; pos < file_size && file_size - pos >= kSignature.size(); pos = pos ? pos * 2 : 512) {
      char sig[8];
      input.read_at(pos, sig, 8);
      if (std::string_view(sig, 8) == kSignature) {
        at = pos;
        break;
      }
    }
    if (at == kUndefined)
      throw IOError(fmt::format("{} is not an HDF5 file (no HDF5 signature; truncated or another format?)", context));
    const std::string head = block_upto(at, 256, "the superblock");  // block_upto: base is still 0
    Cursor c(head, context, "the superblock");
    c.skip(8);
    const unsigned version = c.u8();
    if (version <= 1) {
      c.skip(4);  // free-space and root group entry versions, reserved, shared header version
      offset_size = c.u8();
      length_size = c.u8();
      check_sizes();
      c.skip(1 + 2 + 2 + 4);  // reserved, group leaf / internal node K, consistency flags
      if (version == 1) c.skip(4);  // indexed storage internal node K, reserved
      base = addr(c);
      addr(c);  // free-space info
      addr(c);  // end of file
      addr(c);  // driver info
      // Root group symbol table entry (spec III.C): link name offset, object header address.
      addr(c);
      root_address = addr(c);
    } else if (version == 2 || version == 3) {
      offset_size = c.u8();
      length_size = c.u8();
      check_sizes();
      c.skip(1);  // file consistency flags
      base = addr(c);
      addr(c);  // superblock extension
      addr(c);  // end of file
      root_address = addr(c);
    } else {
      unsupported(fmt::format("superblock version {} (xgrad reads versions 0-3)", version));
    }
    if (base == kUndefined || base > file_size) c.fail(fmt::format("base address {} lies outside the file", base));
  }

  void check_sizes() const {
    auto ok = [](unsigned n) { return n == 2 || n == 4 || n == 8; };
    if (!ok(offset_size) || !ok(length_size))
      damaged(fmt::format("the superblock gives {}-byte offsets and {}-byte lengths (2, 4 or 8 expected)", offset_size,
                          length_size));
  }

  // ---- object headers (spec IV.A) ----
  struct RawMessage {
    std::uint16_t type;
    std::uint8_t flags;
    std::string_view data;
  };

  Object& object(std::uint64_t address) {
    if (auto it = objects.find(address); it != objects.end()) return *it->second;
    auto object = std::make_unique<Object>();
    object->address = address;
    std::vector<std::string> chunks;  // keep message data alive while decoding
    std::vector<RawMessage> messages;
    read_header(address, chunks, messages);
    decode(*object, messages);
    return *objects.emplace(address, std::move(object)).first->second;
  }

  void read_header(std::uint64_t address, std::vector<std::string>& chunks, std::vector<RawMessage>& messages) {
    const std::string what = fmt::format("the object header at address {}", address);
    const std::string prefix = block_upto(address, 16, what);
    if (prefix.size() >= 4 && prefix.compare(0, 4, "OHDR") == 0) return read_header_v2(address, chunks, messages);
    Cursor c(prefix, context, what);
    const unsigned version = c.u8();
    if (version != 1) c.fail(fmt::format("version {} (not an object header: 1 or \"OHDR\" expected)", version));
    c.skip(1 + 2 + 4);  // reserved, message count, reference count
    const std::uint64_t size = c.u32();
    // v1: the messages start after the 12-byte prefix, aligned to 8.
    std::uint64_t start = 0;
    if (__builtin_add_overflow(address, std::uint64_t{16}, &start)) c.fail("its address overflows");
    std::set<std::uint64_t> seen{address};
    std::vector<std::pair<std::uint64_t, std::uint64_t>> pending{{start, size}};
    while (!pending.empty()) {
      const auto [at, n] = pending.back();
      pending.pop_back();
      if (chunks.size() >= kMaxHeaderChunks) c.fail("more than 4096 continuation blocks");
      chunks.push_back(block(at, n, what + " (a message block)"));
      Cursor m(chunks.back(), context, what);
      while (m.remaining() >= 8) {
        const std::uint16_t type = m.u16();
        const std::uint16_t msize = m.u16();
        const std::uint8_t flags = m.u8();
        m.skip(3);
        const std::string_view data = m.bytes(msize);
        add_message(messages, {type, flags, data}, seen, pending, what, /*v2=*/false);
      }
    }
  }

  void read_header_v2(std::uint64_t address, std::vector<std::string>& chunks, std::vector<RawMessage>& messages) {
    const std::string what = fmt::format("the object header at address {}", address);
    const std::string prefix = block_upto(address, 4 + 2 + 16 + 4 + 8, what);
    Cursor c(prefix, context, what);
    c.skip(4);
    const unsigned version = c.u8();
    if (version != 2) c.fail(fmt::format("\"OHDR\" version {} (2 expected)", version));
    const std::uint8_t flags = c.u8();
    if (flags & 0x20) c.skip(16);  // access, modification, change, birth times
    if (flags & 0x10) c.skip(4);   // attribute phase change values
    const std::uint64_t chunk0 = c.uint(1u << (flags & 3));
    const bool creation_order = flags & 0x04;
    std::uint64_t start = 0;
    if (__builtin_add_overflow(address, std::uint64_t{c.pos()}, &start)) c.fail("its address overflows");
    std::set<std::uint64_t> seen{address};
    // Chunk 0: messages then a 4-byte checksum. Continuation blocks: "OCHK", messages, checksum.
    std::vector<std::tuple<std::uint64_t, std::uint64_t, bool>> pending{{start, chunk0, false}};
    while (!pending.empty()) {
      const auto [at, n, continuation] = pending.back();
      pending.pop_back();
      if (chunks.size() >= kMaxHeaderChunks) c.fail("more than 4096 continuation blocks");
      std::uint64_t total = n;
      if (!continuation && __builtin_add_overflow(n, std::uint64_t{4}, &total)) c.fail("its size overflows");
      chunks.push_back(block(at, total, what + " (a message block)"));
      Cursor m(chunks.back(), context, what);
      if (continuation) {
        if (m.bytes(std::min<std::size_t>(4, m.remaining())) != "OCHK")
          m.fail("a continuation block lacks its \"OCHK\" signature");
      }
      if (m.remaining() < 4) m.fail("a message block is shorter than its checksum");
      const std::size_t end = chunks.back().size() - 4;
      const std::size_t header = creation_order ? 6 : 4;
      std::vector<std::pair<std::uint64_t, std::uint64_t>> next;
      while (m.pos() + header <= end) {
        const std::uint8_t type = m.u8();
        const std::uint16_t msize = m.u16();
        const std::uint8_t mflags = m.u8();
        if (creation_order) m.skip(2);
        if (msize > end - m.pos()) m.fail("a message runs past its block");
        const std::string_view data = m.bytes(msize);
        add_message(messages, {type, mflags, data}, seen, next, what, /*v2=*/true);
      }
      for (auto [a, l] : next) pending.emplace_back(a, l, true);
    }
  }

  void add_message(std::vector<RawMessage>& messages, RawMessage message, std::set<std::uint64_t>& seen,
                   std::vector<std::pair<std::uint64_t, std::uint64_t>>& pending, const std::string& what, bool v2) {
    if (messages.size() >= kMaxMessages) damaged(fmt::format("{} has more than {} messages", what, kMaxMessages));
    if (message.type == 0x10) {  // continuation (spec IV.A.2.q): offset, length
      Cursor c(message.data, context, what + " (a continuation message)");
      const std::uint64_t at = addr(c);
      const std::uint64_t n = len(c);
      if (!seen.insert(at).second) c.fail(fmt::format("continuation to address {} is a loop", at));
      if (v2 && n < 8) c.fail("a continuation block too short for its signature and checksum");
      pending.emplace_back(at, n);
      return;
    }
    messages.push_back(message);
  }

  void decode(Object& object, const std::vector<RawMessage>& messages) {
    const std::string what = fmt::format("the object header at address {}", object.address);
    bool has_layout = false, has_group = false;
    for (const RawMessage& m : messages) {
      switch (m.type) {
        case 0x0001:
          if (m.flags & 0x02) object.shared_type = true;  // a shared dataspace: refused with shared datatypes
          else object.space = dataspace(m.data, what + " (dataspace)");
          object.has_space = true;
          break;
        case 0x0003:
          if (m.flags & 0x02) {
            object.shared_type = true;
          } else {
            Cursor c(m.data, context, what + " (datatype)");
            object.type = datatype(c, 0);
          }
          object.has_type = true;
          break;
        case 0x0007: object.external = true; break;
        case 0x0008:
          layout(object, m.data, what + " (data layout)");
          has_layout = true;
          break;
        case 0x000B: filters(object, m.data, what + " (filter pipeline)"); break;
        case 0x000C: attribute(object, m, what + " (attribute)"); break;
        case 0x0011: symbol_table(object, m.data, what + " (symbol table)"); has_group = true; break;
        case 0x0002:
          object.dense_links |= has_dense_storage(m.data, what + " (link info)", 8);
          has_group = true;
          break;
        case 0x0006: link(object, m.data, what + " (link)"); has_group = true; break;
        case 0x0015: object.dense_attributes |= has_dense_storage(m.data, what + " (attribute info)", 2); break;
        default: break;  // NIL, fill value, modification time, ... : not needed to read the data
      }
    }
    object.kind = has_layout ? ObjectKind::Dataset : has_group ? ObjectKind::Group : ObjectKind::Other;
  }

  // ---- messages ----
  Dataspace dataspace(std::string_view data, const std::string& what) {
    Cursor c(data, context, what);
    Dataspace space;
    const unsigned version = c.u8();
    const unsigned rank = c.u8();
    const unsigned flags = c.u8();
    if (version == 1) {
      c.skip(5);
    } else if (version == 2) {
      const unsigned type = c.u8();
      if (type == 2) space.null = true;
      else if (type > 2) c.fail(fmt::format("dataspace type {}", type));
      if (type == 0 && rank != 0) c.fail("a scalar dataspace with dimensions");
    } else {
      c.fail(fmt::format("dataspace version {} (1 or 2 expected)", version));
    }
    if (rank > kMaxRank) c.fail(fmt::format("rank {} (at most {})", rank, kMaxRank));
    space.count = space.null ? 0 : 1;
    for (unsigned i = 0; i < rank; ++i) {
      const std::uint64_t d = len(c);
      if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        c.fail(fmt::format("dimension {} is {}", i, d));
      space.dims.push_back(d);
      if (!space.null && __builtin_mul_overflow(space.count, d, &space.count))
        c.fail("its element count overflows 64 bits");
    }
    (void)flags;  // maximum dimensions and permutation follow; not needed
    return space;
  }

  // A datatype message (spec IV.A.2.d) at the cursor; `depth` bounds nesting.
  Datatype datatype(Cursor& c, int depth) {
    if (depth > 2) c.fail("datatypes nested too deeply");
    Datatype t;
    const std::uint8_t class_version = c.u8();
    const unsigned version = class_version >> 4;
    const unsigned cls = class_version & 0x0F;
    const std::uint8_t b0 = c.u8(), b1 = c.u8(), b2 = c.u8();
    t.size = c.u32();
    if (version < 1 || version > 4) c.fail(fmt::format("datatype version {}", version));
    if (cls > 10) c.fail(fmt::format("datatype class {}", cls));
    t.type_class = static_cast<TypeClass>(cls);
    switch (t.type_class) {
      case TypeClass::FixedPoint: {
        t.big_endian = b0 & 0x01;
        t.is_signed = b0 & 0x08;
        const unsigned offset = c.u16(), precision = c.u16();
        // Only whole, unpadded integers are read as such.
        t.whole = offset == 0 && precision == 8 * t.size;
        break;
      }
      case TypeClass::Float: {
        const unsigned order = (b0 & 0x01) | ((b0 >> 5) & 0x02);
        t.big_endian = order == 1;
        const unsigned sign = b1;
        const unsigned offset = c.u16(), precision = c.u16();
        const unsigned exp_loc = c.u8(), exp_size = c.u8(), man_loc = c.u8(), man_size = c.u8();
        const std::uint32_t bias = c.u32();
        const unsigned norm = (b0 >> 4) & 0x03;
        auto is = [&](unsigned size, unsigned e, unsigned m, std::uint32_t b) {
          return t.size == size && offset == 0 && precision == 8 * size && sign == 8 * size - 1 &&
                 exp_loc == m && exp_size == e && man_loc == 0 && man_size == m && bias == b && norm == 2;
        };
        t.ieee = order <= 1 && (b0 & 0x0E) == 0 && (is(2, 5, 10, 15) || is(4, 8, 23, 127) || is(8, 11, 52, 1023));
        (void)b2;
        break;
      }
      case TypeClass::String: t.string_padding = b0 & 0x0F; break;
      case TypeClass::Enum: {
        const unsigned n = b0 | (unsigned{b1} << 8);
        if (n > kMaxEnumMembers) c.fail("too many enum members");
        t.base = std::make_shared<Datatype>(datatype(c, depth + 1));
        if (t.base->type_class != TypeClass::FixedPoint || !t.base->whole || t.base->size == 0 || t.base->size > 8) {
          t.base.reset();  // an enum over anything else is described, not read
          break;
        }
        std::vector<std::string> names;
        for (unsigned i = 0; i < n; ++i) {
          const std::size_t start = c.pos();
          std::string name;
          for (;;) {
            const char ch = static_cast<char>(c.u8());
            if (ch == '\0') break;
            if (name.size() >= kMaxNameBytes) c.fail("an enum member name is too long");
            name.push_back(ch);
          }
          if (version < 3) c.skip(round_up8(c.pos() - start) - (c.pos() - start));
          names.push_back(std::move(name));
        }
        for (unsigned i = 0; i < n; ++i) {
          std::uint64_t v = c.uint(t.base->size);
          if (t.base->big_endian) {
            std::uint64_t r = 0;
            for (unsigned k = 0; k < t.base->size; ++k) r = (r << 8) | ((v >> (8 * k)) & 0xFF);
            v = r;
          }
          std::int64_t value = static_cast<std::int64_t>(v);
          if (t.base->is_signed && t.base->size < 8 && (v >> (8 * t.base->size - 1)) & 1)
            value = static_cast<std::int64_t>(v | (~std::uint64_t{0} << (8 * t.base->size)));
          t.members.emplace_back(std::move(names[i]), value);
        }
        break;
      }
      case TypeClass::VarLen: {
        t.vlen_string = (b0 & 0x0F) == 1;
        t.string_padding = b0 >> 4;
        // The base type follows (a 1-byte character for strings); not needed.
        break;
      }
      default: break;  // described by class and size only
    }
    return t;
  }

  void layout(Object& object, std::string_view data, const std::string& what) {
    Cursor c(data, context, what);
    object.layout_version = c.u8();
    if (object.layout_version < 3 || object.layout_version > 4)
      unsupported(fmt::format("{}: data layout message version {} (xgrad reads 3 and 4)", what, object.layout_version));
    object.layout_class = c.u8();
    switch (object.layout_class) {
      case 0: {
        const std::uint16_t n = c.u16();
        object.compact_data = std::string(c.bytes(n));
        break;
      }
      case 1:
        object.data_address = addr(c);
        object.data_size = len(c);
        object.data_defined = object.data_address != kUndefined;
        break;
      case 2: {
        if (object.layout_version == 3) {
          const unsigned n = c.u8();
          if (n < 2 || n > kMaxRank + 1) c.fail(fmt::format("chunk dimensionality {}", n));
          object.data_address = addr(c);
          object.data_defined = object.data_address != kUndefined;
          for (unsigned i = 0; i < n; ++i) object.chunk_dims.push_back(c.u32());
          object.chunk_dims.pop_back();  // the element size
          object.chunk_index_type = 0;
        } else {
          const std::uint8_t flags = c.u8();
          const unsigned n = c.u8();
          const unsigned width = c.u8();
          if (n < 2 || n > kMaxRank + 1) c.fail(fmt::format("chunk dimensionality {}", n));
          if (width < 1 || width > 8) c.fail(fmt::format("{}-byte chunk dimensions", width));
          for (unsigned i = 0; i < n; ++i) object.chunk_dims.push_back(c.uint(width));
          object.chunk_dims.pop_back();
          object.chunk_index_type = c.u8();
          if (object.chunk_index_type == 1) {
            object.single_chunk_filtered = flags & 0x02;
            if (object.single_chunk_filtered) {
              object.single_chunk_size = len(c);
              object.single_chunk_mask = c.u32();
            }
            object.data_address = addr(c);
            object.data_defined = object.data_address != kUndefined;
          }
        }
        break;
      }
      case 3: break;  // virtual: refused when read
      default: c.fail(fmt::format("layout class {}", object.layout_class));
    }
  }

  void filters(Object& object, std::string_view data, const std::string& what) {
    Cursor c(data, context, what);
    const unsigned version = c.u8();
    const unsigned n = c.u8();
    if (version == 1) c.skip(6);
    else if (version != 2) c.fail(fmt::format("filter pipeline version {}", version));
    if (n > 32) c.fail(fmt::format("{} filters", n));
    for (unsigned i = 0; i < n; ++i) {
      const std::uint16_t id = c.u16();
      std::uint16_t name_length = 0;
      if (version == 1 || id >= 256) name_length = c.u16();
      c.u16();  // flags
      const unsigned values = c.u16();
      if (version == 1) c.skip(round_up8(name_length));
      else c.skip(name_length);
      c.skip(std::uint64_t{4} * values);
      if (version == 1 && (values & 1)) c.skip(4);
      object.filters.push_back(id);
    }
  }

  void attribute(Object& object, const RawMessage& m, const std::string& what) {
    Cursor c(m.data, context, what);
    const unsigned version = c.u8();
    unsigned flags = 0;
    if (version == 1) c.skip(1);
    else if (version == 2 || version == 3) flags = c.u8();
    else c.fail(fmt::format("attribute message version {}", version));
    const std::uint16_t name_size = c.u16(), type_size = c.u16(), space_size = c.u16();
    if (version == 3) c.skip(1);  // name character set
    auto padded = [&](std::uint64_t n) { return version == 1 ? round_up8(n) : n; };
    const std::string_view raw_name = c.bytes(name_size);
    c.skip(padded(name_size) - name_size);
    std::string name(raw_name.substr(0, raw_name.find('\0')));
    if (name.empty()) c.fail("an attribute without a name");
    Attribute a;
    const std::string_view type_bytes = c.bytes(type_size);
    c.skip(padded(type_size) - type_size);
    const std::string_view space_bytes = c.bytes(space_size);
    c.skip(padded(space_size) - space_size);
    const std::string where = fmt::format("{} '{}'", what, name);
    if (flags & 0x03) {
      a.type.type_class = TypeClass::Opaque;  // shared (committed) datatype or dataspace: described only
      a.type.size = 0;
    } else {
      Cursor t(type_bytes, context, where + " (datatype)");
      a.type = datatype(t, 0);
      a.space = dataspace(space_bytes, where + " (dataspace)");
      std::uint64_t bytes = 0;
      const std::uint64_t element = a.type.type_class == TypeClass::VarLen ? 4 + offset_size + 4 : a.type.size;
      if (__builtin_mul_overflow(a.space.count, element, &bytes)) c.fail(fmt::format("{}: size overflows", where));
      a.data = std::string(c.bytes(bytes));
    }
    object.attributes.insert_or_assign(std::move(name), std::move(a));
  }

  // The attribute info and link info messages (version 0): flags, the maximum creation
  // index when tracked (`index_bytes`: 2 for attributes, 8 for links), then the address
  // of the fractal heap that holds dense storage (undefined when the storage is compact).
  bool has_dense_storage(std::string_view data, const std::string& what, std::uint64_t index_bytes) {
    Cursor c(data, context, what);
    if (c.u8() != 0) c.fail("version (0 expected)");
    if (c.u8() & 0x01) c.skip(index_bytes);
    return addr(c) != kUndefined;
  }

  void link(Object& object, std::string_view data, const std::string& what) {
    Cursor c(data, context, what);
    if (c.u8() != 1) c.fail("link message version (1 expected)");
    const std::uint8_t flags = c.u8();
    unsigned type = 0;
    if (flags & 0x08) type = c.u8();
    if (flags & 0x04) c.skip(8);
    if (flags & 0x10) c.skip(1);
    const std::uint64_t name_length = c.uint(1u << (flags & 3));
    if (name_length == 0 || name_length > kMaxNameBytes) c.fail(fmt::format("a link name of {} bytes", name_length));
    std::string name(c.bytes(name_length));
    if (object.links.size() + object.unreadable_links.size() >= kMaxLinks) c.fail("too many links");
    if (type == 0) {
      object.links.insert_or_assign(name, addr(c));
    } else {
      object.unreadable_links.insert_or_assign(
          name, type == 1 ? "a soft link" : type == 64 ? "an external link (to another file)" : "a user-defined link");
    }
  }

  // Symbol table message: the group's v1 B-tree (type 0) and local heap (spec III.A, III.D).
  void symbol_table(Object& object, std::string_view data, const std::string& what) {
    Cursor c(data, context, what);
    const std::uint64_t tree = addr(c);
    const std::uint64_t heap_address = addr(c);
    // Local heap: "HEAP", version 0, reserved 3, data segment size, free list offset, data address.
    const std::string heap_what = fmt::format("the local heap at address {}", heap_address);
    const std::string header = block(heap_address, 8 + 2 * length_size + offset_size, heap_what);
    Cursor h(header, context, heap_what);
    if (h.bytes(4) != "HEAP") h.fail("no \"HEAP\" signature");
    if (h.u8() != 0) h.fail("version (0 expected)");
    h.skip(3);
    const std::uint64_t segment_size = len(h);
    len(h);
    const std::uint64_t segment_address = addr(h);
    const std::string segment = block(segment_address, segment_size, heap_what + " (its data segment)");
    std::set<std::uint64_t> visited;
    walk_group_btree(object, tree, -1, segment, visited);
  }

  // B-tree node header (spec III.A.1): "TREE", type, level, entries used, siblings.
  struct Node {
    unsigned level;
    unsigned entries;
    std::string bytes;
    std::size_t keys_at;
  };

  Node btree_node(std::uint64_t address, unsigned type, std::uint64_t key_size, int expected_level,
                  std::set<std::uint64_t>& visited) {
    const std::string what = fmt::format("the B-tree node at address {}", address);
    if (!visited.insert(address).second) damaged(what + " is reached twice (a cycle or shared subtree)");
    if (visited.size() > kMaxBtreeNodes) damaged(what + ": the B-tree has too many nodes");
    const std::size_t head = 8 + 2 * offset_size;
    const std::string prefix = block(address, head, what);
    Cursor c(prefix, context, what);
    if (c.bytes(4) != "TREE") c.fail("no \"TREE\" signature");
    if (c.u8() != type) c.fail(fmt::format("node type (expected {})", type));
    const unsigned level = c.u8();
    const unsigned entries = c.u16();
    if (expected_level >= 0 && level != static_cast<unsigned>(expected_level))
      c.fail(fmt::format("level {} where {} was expected", level, expected_level));
    // keys and children: key0 child0 key1 child1 ... key_n.
    const std::uint64_t body = (entries + std::uint64_t{1}) * key_size + std::uint64_t{entries} * offset_size;
    Node node{level, entries, block(address, head + body, what), head};
    return node;
  }

  void walk_group_btree(Object& object, std::uint64_t address, int level, const std::string& heap,
                        std::set<std::uint64_t>& visited) {
    Node node = btree_node(address, 0, length_size, level, visited);
    Cursor c(node.bytes, context, fmt::format("the group B-tree node at address {}", address));
    c.seek(node.keys_at);
    for (unsigned i = 0; i < node.entries; ++i) {
      len(c);  // key: heap offset of the largest name in the child
      const std::uint64_t child = addr(c);
      if (node.level > 0) walk_group_btree(object, child, static_cast<int>(node.level) - 1, heap, visited);
      else symbol_node(object, child, heap, visited);
    }
  }

  // Symbol table node (spec III.B): "SNOD", version 1, reserved, symbol count, entries.
  void symbol_node(Object& object, std::uint64_t address, const std::string& heap, std::set<std::uint64_t>& visited) {
    const std::string what = fmt::format("the symbol table node at address {}", address);
    if (!visited.insert(address).second) damaged(what + " is reached twice");
    const std::string head = block(address, 8, what);
    Cursor h(head, context, what);
    if (h.bytes(4) != "SNOD") h.fail("no \"SNOD\" signature");
    if (h.u8() != 1) h.fail("version (1 expected)");
    h.skip(1);
    const unsigned count = h.u16();
    const std::uint64_t entry = 2 * std::uint64_t{offset_size} + 4 + 4 + 16;
    const std::string body = block(address + 8, count * entry, what);
    Cursor c(body, context, what);
    for (unsigned i = 0; i < count; ++i) {
      const std::uint64_t name_offset = c.uint(offset_size);
      const std::uint64_t header = addr(c);
      c.skip(4 + 4 + 16);  // cache type, reserved, scratch pad
      if (name_offset >= heap.size())
        c.fail(fmt::format("a name offset {} outside its {}-byte heap", name_offset, heap.size()));
      const std::size_t end = heap.find('\0', name_offset);
      if (end == std::string::npos) c.fail("a name that runs off the end of its heap");
      std::string name = heap.substr(name_offset, end - name_offset);
      if (name.empty()) c.fail("an empty member name");
      if (object.links.size() >= kMaxLinks) c.fail("too many members");
      object.links.insert_or_assign(std::move(name), header);
    }
  }

  // ---- global heap (spec III.E) ----
  // The (address, size) of object `index` of the global heap collection at `collection`.
  std::pair<std::uint64_t, std::uint64_t> heap_object(std::uint64_t collection, std::uint32_t index,
                                                      const std::string& what) {
    auto it = heaps.find(collection);
    if (it == heaps.end()) {
      const std::string cwhat = fmt::format("the global heap collection at address {}", collection);
      const std::string head = block(collection, 8 + length_size, cwhat);
      Cursor h(head, context, cwhat);
      if (h.bytes(4) != "GCOL") h.fail("no \"GCOL\" signature");
      if (h.u8() != 1) h.fail("version (1 expected)");
      h.skip(3);
      const std::uint64_t size = len(h);
      const std::string body = block(collection, size, cwhat);
      Cursor c(body, context, cwhat);
      c.skip(8 + length_size);
      std::map<std::uint16_t, std::pair<std::uint64_t, std::uint64_t>> index_map;
      while (c.remaining() >= 8 + length_size) {
        const std::uint16_t id = c.u16();
        if (id == 0) break;  // free space: the rest of the collection
        c.skip(2 + 4);
        const std::uint64_t n = len(c);
        const std::uint64_t at = c.pos();
        c.skip(n);
        c.skip(std::min<std::uint64_t>(round_up8(n) - n, c.remaining()));
        index_map.insert_or_assign(id, std::pair{collection + at, n});
      }
      it = heaps.emplace(collection, std::move(index_map)).first;
    }
    const auto obj = it->second.find(static_cast<std::uint16_t>(index));
    if (index > 0xFFFF || obj == it->second.end())
      damaged(fmt::format("{} points at object {} of the global heap at address {}, which has no such object", what,
                          index, collection));
    return obj->second;
  }

  // ---- chunked data ----
  void unfilter(std::string& chunk, std::uint32_t mask, const Object& dataset, std::uint64_t expected,
                const std::string& what) {
    for (std::size_t i = dataset.filters.size(); i-- > 0;) {
      if (mask & (1u << i)) continue;
      const std::uint16_t id = dataset.filters[i];
      if (id == 1) {  // deflate: the output size is known; a stream that makes more is damage
        charge(expected, what);
        std::string out(static_cast<std::size_t>(expected), '\0');
        z_stream z{};
        if (inflateInit(&z) != Z_OK) damaged(what + ": zlib failed to initialise");
        z.next_in = reinterpret_cast<Bytef*>(chunk.data());
        z.avail_in = static_cast<uInt>(std::min<std::size_t>(chunk.size(), std::numeric_limits<uInt>::max()));
        z.next_out = reinterpret_cast<Bytef*>(out.data());
        z.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size(), std::numeric_limits<uInt>::max()));
        const int status = inflate(&z, Z_FINISH);
        const std::uint64_t produced = z.total_out;
        inflateEnd(&z);
        if (status != Z_STREAM_END || produced != expected)
          damaged(fmt::format("{}: a deflated chunk does not inflate to its {} bytes", what, expected));
        chunk = std::move(out);
      } else if (id == 2) {  // shuffle: byte k of every element stored together
        const std::size_t element = dataset.type.size;
        if (element > 1 && chunk.size() % element == 0) {
          std::string out(chunk.size(), '\0');
          const std::size_t n = chunk.size() / element;
          for (std::size_t k = 0; k < element; ++k)
            for (std::size_t e = 0; e < n; ++e) out[e * element + k] = chunk[k * n + e];
          chunk = std::move(out);
        }
      } else if (id == 3) {  // fletcher32: a 4-byte checksum appended
        if (chunk.size() < 4) damaged(what + ": a fletcher32 chunk shorter than its checksum");
        chunk.resize(chunk.size() - 4);
      } else {
        unsupported(fmt::format("{} uses HDF5 filter {} (xgrad reads deflate, shuffle and fletcher32)", what, id));
      }
    }
  }

  // Copies the part of chunk `data` (at element offsets `at`) inside the dataset.
  static void place_chunk(const std::string& data, const std::vector<std::uint64_t>& at, const Object& dataset,
                          char* dst) {
    const auto& dims = dataset.space.dims;
    const auto& chunk = dataset.chunk_dims;
    const std::size_t rank = dims.size();
    const std::uint64_t element = dataset.type.size;
    if (rank == 0) {
      std::memcpy(dst, data.data(), element);
      return;
    }
    // Iterate over the chunk's rows (all but the last dim), copying the valid run of each.
    const std::uint64_t last_valid = std::min(chunk[rank - 1], dims[rank - 1] - at[rank - 1]);
    std::vector<std::uint64_t> idx(rank, 0);
    for (;;) {
      bool inside = true;
      for (std::size_t d = 0; d + 1 < rank; ++d)
        if (at[d] + idx[d] >= dims[d]) inside = false;
      if (inside) {
        std::uint64_t src = 0, out = 0;
        for (std::size_t d = 0; d < rank; ++d) {
          src = src * chunk[d] + idx[d];
          out = out * dims[d] + at[d] + idx[d];
        }
        std::memcpy(dst + out * element, data.data() + src * element, last_valid * element);
      }
      std::size_t d = rank - 1;
      for (;;) {
        if (d == 0) return;
        --d;
        if (++idx[d] < chunk[d]) break;
        idx[d] = 0;
      }
    }
  }

  void read_chunked(const Object& dataset, char* dst, const std::string& what) {
    const auto& dims = dataset.space.dims;
    const std::size_t rank = dims.size();
    if (dataset.chunk_dims.size() != std::max<std::size_t>(rank, 1) || (rank == 0 && dataset.chunk_dims[0] != 1))
      damaged(fmt::format("{}: chunks of rank {} for a dataset of rank {}", what, dataset.chunk_dims.size(), rank));
    std::uint64_t chunk_bytes = dataset.type.size;
    for (std::uint64_t d : dataset.chunk_dims)
      if (d == 0 || __builtin_mul_overflow(chunk_bytes, d, &chunk_bytes))
        damaged(fmt::format("{}: chunk dimensions {} are impossible", what, fmt::join(dataset.chunk_dims, "x")));
    if (chunk_bytes > budget)
      throw ValueError(fmt::format("{}: {}: chunks of {} bytes exceed what this {}-byte file can yield", context,
                                   what, chunk_bytes, file_size));
    if (dataset.layout_version == 4 && dataset.chunk_index_type != 1)
      unsupported(fmt::format("{} is chunked with a version-4 chunk index of type {} (xgrad reads a single chunk "
                              "and version-3 B-tree chunking; re-save with h5py's default libver)",
                              what, dataset.chunk_index_type));
    // Unwritten chunks would read as the fill value, which xgrad does not decode: like
    // an unwritten contiguous dataset, a dataset missing chunks is refused.
    std::uint64_t expected_chunks = 1;
    for (std::size_t d = 0; d < rank; ++d)
      expected_chunks *= dims[d] ? (dims[d] - 1) / dataset.chunk_dims[d] + 1 : 0;  // <= elements: no overflow
    if (!dataset.data_defined)
      throw ValueError(fmt::format("{}: {} has no data stored", context, what));
    auto load = [&](std::uint64_t address, std::uint64_t stored, std::uint32_t mask, std::vector<std::uint64_t> at) {
      for (std::size_t d = 0; d < rank; ++d)
        if (at[d] >= dims[d] || at[d] % dataset.chunk_dims[d] != 0)
          damaged(fmt::format("{}: a chunk at offset {} in dim {} of {}", what, at[d], d, dims[d]));
      if (stored > chunk_bytes * 2 + 1024 && dataset.filters.empty())
        damaged(fmt::format("{}: a chunk stored in {} bytes for {}", what, stored, chunk_bytes));
      const std::string cwhat = what + " (a chunk)";
      if (stored > kMaxMetadataBlock && stored > chunk_bytes)
        damaged(fmt::format("{}: a chunk claims {} stored bytes", what, stored));
      charge(stored, cwhat);
      std::string data = read(address, stored, cwhat);
      unfilter(data, mask, dataset, chunk_bytes, cwhat);
      if (data.size() != chunk_bytes)
        damaged(fmt::format("{}: a chunk holds {} bytes, not {}", what, data.size(), chunk_bytes));
      place_chunk(data, at, dataset, dst);
    };
    if (dataset.layout_version == 4) {
      if (expected_chunks != 1)
        damaged(fmt::format("{}: a single-chunk index for {} chunks", what, expected_chunks));
      load(dataset.data_address, dataset.single_chunk_filtered ? dataset.single_chunk_size : chunk_bytes,
           dataset.single_chunk_mask, std::vector<std::uint64_t>(rank, 0));
      return;
    }
    std::set<std::uint64_t> visited;
    std::set<std::vector<std::uint64_t>> seen;
    walk_chunk_btree(dataset, dataset.data_address, -1, visited, seen, load, what);
    if (seen.size() != expected_chunks)
      throw ValueError(fmt::format("{}: {} stores {} of its {} chunks (unwritten chunks hold a fill value xgrad does "
                                   "not read)",
                                   context, what, seen.size(), expected_chunks));
  }

  template <class Load>
  void walk_chunk_btree(const Object& dataset, std::uint64_t address, int level, std::set<std::uint64_t>& visited,
                        std::set<std::vector<std::uint64_t>>& seen, Load& load, const std::string& what) {
    const std::size_t n = dataset.chunk_dims.size() + 1;  // offsets incl. the element dimension
    const std::uint64_t key = 4 + 4 + 8 * n;
    Node node = btree_node(address, 1, key, level, visited);
    Cursor c(node.bytes, context, fmt::format("the chunk B-tree node at address {} of {}", address, what));
    c.seek(node.keys_at);
    for (unsigned i = 0; i < node.entries; ++i) {
      const std::uint32_t stored = c.u32();
      const std::uint32_t mask = c.u32();
      std::vector<std::uint64_t> at(n);
      for (auto& v : at) v = c.u64();
      at.pop_back();
      const std::uint64_t child = addr(c);
      if (node.level > 0) {
        walk_chunk_btree(dataset, child, static_cast<int>(node.level) - 1, visited, seen, load, what);
      } else {
        if (!seen.insert(at).second) damaged(fmt::format("{}: two chunks at the same offsets", what));
        if (dataset.space.dims.empty()) at.clear();
        load(child, stored, mask, at);
      }
    }
  }
};

File::File(const std::string& path, std::string context) : impl_(std::make_unique<Impl>(path, std::move(context))) {
  impl_->open_superblock();
}
File::~File() = default;

std::uint64_t File::size() const { return impl_->file_size; }
const Object& File::root() { return impl_->object(impl_->root_address); }
const Object& File::object(std::uint64_t address) { return impl_->object(address); }
void File::charge(std::uint64_t bytes, const std::string& what) { impl_->charge(bytes, what); }
std::uint64_t File::budget_left() const { return impl_->budget; }

bool File::has_attribute(const Object& object, const std::string& name, const std::string& where) const {
  if (object.attributes.count(name)) return true;
  if (object.dense_attributes)
    impl_->unsupported(fmt::format("the attributes of {} are in dense (fractal heap) storage; xgrad reads attributes "
                                   "stored in the object header (h5py's default libver writes them there)",
                                   where));
  return false;
}

std::optional<std::uint64_t> File::find(const Object& group, const std::string& path, const std::string& what) {
  const Object* at = &group;
  std::size_t start = 0, components = 0;
  if (!path.empty() && path[0] == '/') at = &root();
  std::uint64_t address = at->address;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    const std::string part = path.substr(start, end - start);
    start = end + 1;
    if (part.empty() || part == ".") continue;
    if (++components > kMaxPathComponents) impl_->damaged(fmt::format("{}: the path has too many components", what));
    if (at->kind != ObjectKind::Group) return std::nullopt;
    if (auto it = at->unreadable_links.find(part); it != at->unreadable_links.end())
      impl_->unsupported(fmt::format("{}: '{}' is {}, which xgrad does not follow", what, part, it->second));
    auto it = at->links.find(part);
    if (it == at->links.end()) {
      if (at->dense_links)
        impl_->unsupported(fmt::format("{}: the group holding '{}' keeps its links in dense (fractal heap) storage "
                                       "(a libver='latest' group with many members); re-save with h5py's default "
                                       "libver",
                                       what, part));
      return std::nullopt;
    }
    address = it->second;
    at = &object(address);
  }
  return address;
}

std::vector<std::string> File::read_strings(const Attribute& a, const std::string& what) {
  std::vector<std::string> out;
  const std::uint64_t n = a.space.count;
  if (a.type.type_class == TypeClass::String) {
    const std::uint64_t size = a.type.size;
    if (size == 0 || size > kMaxNameBytes)
      throw ValueError(fmt::format("{}: {} has strings of {} bytes", impl_->context, what, size));
    out.reserve(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n; ++i) {
      std::string_view s(a.data.data() + i * size, static_cast<std::size_t>(size));
      if (a.type.string_padding == 2) {
        s = s.substr(0, s.find_last_not_of(' ') + 1);
      } else {
        s = s.substr(0, s.find('\0'));
      }
      out.emplace_back(s);
    }
    return out;
  }
  if (a.type.type_class == TypeClass::VarLen && a.type.vlen_string) {
    const std::uint64_t element = 4 + impl_->offset_size + 4;
    for (std::uint64_t i = 0; i < n; ++i) {
      Cursor c(std::string_view(a.data).substr(i * element, element), impl_->context, what);
      const std::uint32_t length = c.u32();
      const std::uint64_t collection = impl_->addr(c);
      const std::uint32_t index = c.u32();
      if (length == 0) {
        out.emplace_back();
        continue;
      }
      if (length > kMaxNameBytes)
        throw ValueError(fmt::format("{}: {} has a string of {} bytes", impl_->context, what, length));
      impl_->charge(length, what);
      const auto [address, size] = impl_->heap_object(collection, index, what);
      if (length > size)
        impl_->damaged(fmt::format("{}: a string of {} bytes in a {}-byte global heap object", what, length, size));
      const std::string s = impl_->read(address, length, what);
      out.emplace_back(s.substr(0, s.find('\0')));
    }
    return out;
  }
  throw ValueError(fmt::format("{}: {} is not a list of strings", impl_->context, what));
}

void File::read_data(const Object& dataset, void* dst, std::uint64_t bytes, const std::string& what) {
  char* out = static_cast<char*>(dst);
  if (bytes == 0) return;
  if (dataset.external)
    throw ValueError(fmt::format("{}: dataset {} keeps its data in external files, which xgrad does not open",
                                 impl_->context, what));
  if (!dataset.filters.empty() && dataset.layout_class != 2)
    impl_->damaged(fmt::format("dataset {} has filters but is not chunked", what));
  switch (dataset.layout_class) {
    case 0:
      if (dataset.compact_data.size() != bytes)
        impl_->damaged(
            fmt::format("dataset {} holds {} compact bytes for {}", what, dataset.compact_data.size(), bytes));
      std::memcpy(out, dataset.compact_data.data(), bytes);
      return;
    case 1: {
      if (!dataset.data_defined)
        throw ValueError(fmt::format("{}: dataset {} has no data stored", impl_->context, what));
      if (dataset.data_size < bytes)
        impl_->damaged(fmt::format("dataset {} stores {} bytes for {}", what, dataset.data_size, bytes));
      const std::uint64_t offset = impl_->locate(dataset.data_address, bytes, "dataset " + what);
      impl_->input.read_at(offset, out, static_cast<std::size_t>(bytes));
      return;
    }
    case 2:
      std::memset(out, 0, bytes);
      impl_->read_chunked(dataset, out, "dataset " + what);
      return;
    default:
      impl_->unsupported(fmt::format("dataset {} has a virtual storage layout", what));
  }
}

}  // namespace xgrad::hdf5
