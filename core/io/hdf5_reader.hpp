// A self-contained, bounds-checked reader of the HDF5 subset h5py writes for Keras 2
// weights (internal to load_keras_h5; not installed). No libhdf5: every structure is
// parsed here from the HDF5 File Format Specification (version 3.0), and every
// address, length and count is checked against the file before it is used.
//
// What it reads:
//   superblock v0/v1 (h5py's default, libver 'earliest') and v2/v3 (libver 'latest');
//   object headers v1 and v2 ("OHDR", with "OCHK" continuation blocks), continuation
//   messages followed with a visited set;
//   groups as symbol tables (v1 B-tree of type 0 + local heap + "SNOD" nodes) and as
//   compact link messages (hard links);
//   compact attribute messages v1-v3 (fixed-length strings and variable-length
//   strings from the global heap "GCOL", numbers);
//   datasets: dataspace v1/v2, datatype (fixed-point, IEEE float, string, enum, vlen
//   string; other classes are described by name), layout v3/v4: compact, contiguous,
//   chunked through a v1 B-tree of type 1 (v3) or a single chunk (v4), with the deflate,
//   shuffle and fletcher32 filters.
// What it refuses with a typed error naming the feature: dense (fractal-heap) link or
// attribute storage, v4 chunk indexes other than a single chunk, other filters, shared
// (committed) datatypes, external storage, soft and external links.
//
// Bounds: metadata blocks and names are capped, and the metadata read from one file
// stays below 32 times its size (objects are parsed once and cached); the bytes it
// decodes (datasets, strings, inflated chunks) stay below kMaxExpansion times the file size;
// B-trees are walked with a visited set and strictly decreasing levels, so neither
// cycles nor shared subtrees can loop or blow up.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/io/file_io.hpp"

namespace xgrad::hdf5 {

// The datatype classes of the specification, in its numbering.
enum class TypeClass : std::uint8_t {
  FixedPoint = 0, Float = 1, Time = 2, String = 3, Bitfield = 4, Opaque = 5, Compound = 6, Reference = 7,
  Enum = 8, VarLen = 9, Array = 10,
};
const char* type_class_name(TypeClass c);

struct Datatype {
  TypeClass type_class = TypeClass::Opaque;
  std::uint32_t size = 0;       // bytes per element as stored
  bool big_endian = false;
  bool is_signed = false;       // fixed-point
  bool whole = true;            // fixed-point: no padding bits (bit offset 0, precision 8 * size)
  bool vlen_string = false;     // variable-length string (class VarLen, type 1)
  bool ieee = false;            // float: IEEE binary16/32/64 layout (sign, exponent, mantissa, bias)
  std::uint8_t string_padding = 0;  // 0 null-terminated, 1 null-padded, 2 space-padded
  // Enum: the base type (fixed-point only) and its members (name, value).
  std::shared_ptr<Datatype> base;
  std::vector<std::pair<std::string, std::int64_t>> members;
};

struct Dataspace {
  bool null = false;                 // no elements at all
  std::vector<std::uint64_t> dims;   // empty: a scalar
  std::uint64_t count = 1;           // product of dims (overflow-checked)
};

struct Attribute {
  Datatype type;
  Dataspace space;
  std::string data;  // the raw stored elements (count * size bytes, checked)
};

enum class ObjectKind { Group, Dataset, Other };

// One parsed object header.
struct Object {
  std::uint64_t address = 0;
  ObjectKind kind = ObjectKind::Other;
  std::map<std::string, Attribute> attributes;  // compact attributes
  bool dense_attributes = false;                // attribute info with a fractal heap
  // Group: its hard links, name -> object header address; unsupported link types.
  std::map<std::string, std::uint64_t> links;
  std::map<std::string, std::string> unreadable_links;  // name -> why
  bool dense_links = false;
  // Dataset.
  Datatype type;
  Dataspace space;
  bool has_type = false, has_space = false;
  bool shared_type = false;  // a shared (committed) datatype or shared dataspace message
  bool external = false;
  std::uint8_t layout_version = 0;
  int layout_class = -1;                      // 0 compact, 1 contiguous, 2 chunked, 3 virtual
  std::string compact_data;
  std::uint64_t data_address = 0, data_size = 0;  // contiguous; chunk index / single chunk address
  bool data_defined = false;
  std::vector<std::uint64_t> chunk_dims;      // chunked: per dataspace dim
  int chunk_index_type = 1;                   // v4: 1 single chunk; v3: the v1 B-tree (0 here)
  std::uint64_t single_chunk_size = 0;
  std::uint32_t single_chunk_mask = 0;
  bool single_chunk_filtered = false;
  std::vector<std::uint16_t> filters;         // pipeline, in the order applied when writing
};

class File {
 public:
  // Opens `path`; `context` ("load_keras_h5: <path>") begins every error message.
  // IOError if it is not an HDF5 file or its superblock is damaged.
  File(const std::string& path, std::string context);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  std::uint64_t size() const;
  const Object& root();
  // The object header at `address` (parsed once, then cached). IOError if damaged.
  const Object& object(std::uint64_t address);
  // The object `path` names relative to `group` ('/'-separated; a leading '/' starts
  // at the root; "." stays). std::nullopt if a component is missing. `what` names the
  // path in errors (dense or soft links on the way are typed errors).
  std::optional<std::uint64_t> find(const Object& group, const std::string& path, const std::string& what);
  // Whether `object` has attribute `name`; IOError if it cannot tell (dense storage).
  bool has_attribute(const Object& object, const std::string& name, const std::string& where) const;
  // The strings of a string attribute (fixed or variable length), one per element.
  std::vector<std::string> read_strings(const Attribute& attribute, const std::string& what);
  // The dataset's elements as stored (count * type.size bytes, file byte order),
  // written to `dst`. `bytes` is that product, already overflow-checked by the caller.
  void read_data(const Object& dataset, void* dst, std::uint64_t bytes, const std::string& what);
  // Charges `bytes` of decoded output to the file's budget; ValueError once it would
  // exceed kMaxExpansion times the file size (plus a small allowance).
  void charge(std::uint64_t bytes, const std::string& what);
  std::uint64_t budget_left() const;

  // Decoded bytes a file may yield per byte of file: deflate peaks near 1032:1.
  static constexpr std::uint64_t kMaxExpansion = 2048;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xgrad::hdf5
