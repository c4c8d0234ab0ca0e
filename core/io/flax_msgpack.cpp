#include "core/io/flax_msgpack.hpp"

// msgpack-c++ is header-only; xgrad uses its v3 parser and packer without Boost.
#define MSGPACK_NO_BOOST 1
#define MSGPACK_DEFAULT_API_VERSION 3
#include <msgpack.hpp>

#include <algorithm>
#include <limits>
#include <vector>

#include "core/error.hpp"
#include "core/io/file_io.hpp"
#include "core/io/tensor_bytes.hpp"
#include "core/io/zip.hpp"

namespace xgrad {

namespace {

// Flax's extension type codes (flax.serialization._MsgpackExtType).
constexpr std::int8_t kExtNdarray = 1, kExtNativeComplex = 2, kExtNumpyScalar = 3;
constexpr std::string_view kChunkedMarker = "__msgpack_chunked_array__";
constexpr std::size_t kMaxDims = 64;
constexpr DType kDTypes[] = {DType::Bool,     DType::Int32,   DType::Int64,  DType::Float16,
                             DType::BFloat16, DType::Float32, DType::Float64};

// A parsed msgpack value. Strings, binaries and extension payloads are views into the input.
struct MsgNode {
  enum class Kind { Nil, Bool, UInt, Int, Float32, Float64, Str, Bin, Ext, Array, Map } kind = Kind::Nil;
  bool boolean = false;
  std::uint64_t uint = 0;
  std::int64_t sint = 0;
  double real = 0;
  std::string_view bytes;
  std::int8_t ext_type = 0;
  std::vector<MsgNode> children;  // array items; for a map, key and value alternating
};

// Builds Nodes from msgpack-c++'s parse events. Children are appended as they arrive
// (never reserved from a claimed count), so memory follows the bytes actually present.
class TreeBuilder : public msgpack::null_visitor {
 public:
  TreeBuilder(const std::string& what, int max_depth) : what_(what), max_depth_(max_depth) {}
  MsgNode root;
  bool truncated = false;

  bool visit_nil() { next(); return true; }
  bool visit_boolean(bool v) { MsgNode& n = next(); n.kind = MsgNode::Kind::Bool; n.boolean = v; return true; }
  bool visit_positive_integer(std::uint64_t v) { MsgNode& n = next(); n.kind = MsgNode::Kind::UInt; n.uint = v; return true; }
  bool visit_negative_integer(std::int64_t v) { MsgNode& n = next(); n.kind = MsgNode::Kind::Int; n.sint = v; return true; }
  bool visit_float32(float v) { MsgNode& n = next(); n.kind = MsgNode::Kind::Float32; n.real = v; return true; }
  bool visit_float64(double v) { MsgNode& n = next(); n.kind = MsgNode::Kind::Float64; n.real = v; return true; }
  bool visit_str(const char* p, std::uint32_t size) { return bytes(MsgNode::Kind::Str, p, size); }
  bool visit_bin(const char* p, std::uint32_t size) { return bytes(MsgNode::Kind::Bin, p, size); }
  bool visit_ext(const char* p, std::uint32_t size) {
    if (size == 0) throw IOError("bad msgpack in " + what_ + ": an extension value without a type");
    MsgNode& n = next();
    n.kind = MsgNode::Kind::Ext;
    n.ext_type = static_cast<std::int8_t>(p[0]);
    n.bytes = std::string_view(p + 1, size - 1);
    return true;
  }
  bool start_array(std::uint32_t) { return open(MsgNode::Kind::Array); }
  bool end_array() { stack_.pop_back(); return true; }
  bool start_map(std::uint32_t) { return open(MsgNode::Kind::Map); }
  bool end_map() { stack_.pop_back(); return true; }
  void parse_error(std::size_t, std::size_t) {}
  void insufficient_bytes(std::size_t, std::size_t) { truncated = true; }

 private:
  const std::string& what_;
  int max_depth_;
  bool has_root_ = false;
  std::vector<MsgNode*> stack_;

  MsgNode& next() {
    if (stack_.empty()) {
      has_root_ = true;
      return root;
    }
    return stack_.back()->children.emplace_back();
  }
  bool bytes(MsgNode::Kind kind, const char* p, std::uint32_t size) {
    MsgNode& n = next();
    n.kind = kind;
    n.bytes = std::string_view(p, size);
    return true;
  }
  bool open(MsgNode::Kind kind) {
    if (static_cast<int>(stack_.size()) >= max_depth_)
      throw IOError("bad msgpack in " + what_ + ": maps and lists nest deeper than " + std::to_string(max_depth_) +
                    " levels");
    MsgNode& n = next();
    n.kind = kind;
    stack_.push_back(&n);
    return true;
  }
};

MsgNode parse_tree(std::string_view bytes, const std::string& what, int max_depth) {
  TreeBuilder builder(what, max_depth);
  std::size_t offset = 0;
  bool ok = false;
  try {
    ok = msgpack::parse(bytes.data(), bytes.size(), offset, builder);
  } catch (const msgpack::unpack_error& e) {
    throw IOError("bad msgpack in " + what + ": " + e.what());
  }
  if (!ok)
    throw IOError((builder.truncated ? "truncated msgpack in " : "bad msgpack in ") + what +
                  (builder.truncated ? ": the data ends inside a value" : ": malformed data at byte " + std::to_string(offset)));
  if (offset != bytes.size())
    throw IOError("bad msgpack in " + what + ": " + std::to_string(bytes.size() - offset) +
                  " unexpected bytes after the top-level value");
  return std::move(builder.root);
}

std::string join(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

std::string label(const std::string& key, const std::string& what) {
  return "entry " + quoted_name(key) + " of " + what;
}

DType dtype_of_name(std::string_view name, const std::string& key, const std::string& what) {
  for (DType d : kDTypes)
    if (dtype_name(d) == name) return d;
  throw IOError("unsupported dtype " + quoted_name(name) + " in " + label(key, what) +
                ": xgrad reads bool, int32, int64, float16, bfloat16, float32, float64");
}

// The nested [shape, dtype name, bytes] of an ndarray or numpy-scalar extension.
Tensor decode_ndarray(std::string_view payload, const std::string& key, const std::string& what) {
  const std::string where = label(key, what);
  const MsgNode n = parse_tree(payload, where, 2);
  if (n.kind != MsgNode::Kind::Array || n.children.size() != 3)
    throw IOError("bad ndarray in " + where + ": expected [shape, dtype, bytes]");
  const MsgNode& shape_node = n.children[0];
  const MsgNode& name = n.children[1];
  const MsgNode& data = n.children[2];
  if (shape_node.kind != MsgNode::Kind::Array) throw IOError("bad ndarray in " + where + ": the shape is not a list");
  if (shape_node.children.size() > kMaxDims)
    throw IOError("bad ndarray in " + where + ": " + std::to_string(shape_node.children.size()) + " dimensions");
  Shape shape;
  for (const MsgNode& d : shape_node.children) {
    if (d.kind != MsgNode::Kind::UInt || d.uint > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      throw IOError("bad ndarray in " + where + ": a dimension is not a non-negative integer");
    shape.push_back(static_cast<std::int64_t>(d.uint));
  }
  if ((name.kind != MsgNode::Kind::Str && name.kind != MsgNode::Kind::Bin) ||
      (data.kind != MsgNode::Kind::Bin && data.kind != MsgNode::Kind::Str))
    throw IOError("bad ndarray in " + where + ": expected a dtype name and a byte string");
  const DType dtype = dtype_of_name(name.bytes, key, what);
  std::uint64_t bytes = 0;
  if (!io_detail::checked_nbytes(shape, itemsize(dtype), std::numeric_limits<std::int64_t>::max(), bytes) ||
      bytes != data.bytes.size())
    throw IOError("bad ndarray in " + where + ": " + std::string(dtype_name(dtype)) + " " + shape_str(shape) +
                  " does not match its " + std::to_string(data.bytes.size()) + " bytes of data");
  return io_detail::tensor_from_little_endian(data.bytes, shape, dtype);
}

std::string key_text(const MsgNode& k, const std::string& path, const std::string& what) {
  if (k.kind == MsgNode::Kind::Str) return std::string(k.bytes);
  if (k.kind == MsgNode::Kind::UInt) return std::to_string(k.uint);
  throw IOError("bad msgpack in " + what + ": a map key under " + quoted_name(path) + " is not a string");
}

// The values of a map keyed "0", "1", ... (Flax's tuple-as-dict) or of a list, in index order.
std::vector<const MsgNode*> indexed(const MsgNode& n, const std::string& key, const std::string& what) {
  std::vector<const MsgNode*> out;
  if (n.kind == MsgNode::Kind::Array) {
    for (const MsgNode& c : n.children) out.push_back(&c);
    return out;
  }
  if (n.kind != MsgNode::Kind::Map) throw IOError("bad chunked array in " + label(key, what) + ": expected a map");
  const std::size_t count = n.children.size() / 2;
  out.assign(count, nullptr);
  for (std::size_t i = 0; i < count; ++i) {
    const std::string k = key_text(n.children[2 * i], key, what);
    std::size_t index = 0;
    bool digits = !k.empty() && k.size() <= 18;
    for (char c : k) digits = digits && c >= '0' && c <= '9';
    if (digits) index = std::stoull(k);
    if (!digits || index >= count || out[index] || std::to_string(index) != k)
      throw IOError("bad chunked array in " + label(key, what) + ": keys must be \"0\" to \"" +
                    std::to_string(count - 1) + "\", got " + quoted_name(k));
    out[index] = &n.children[2 * i + 1];
  }
  return out;
}

const MsgNode* field(const MsgNode& map, std::string_view name) {
  for (std::size_t i = 0; i + 1 < map.children.size(); i += 2)
    if (map.children[i].kind == MsgNode::Kind::Str && map.children[i].bytes == name) return &map.children[i + 1];
  return nullptr;
}

// flax.serialization._unchunk: the 1-D chunks concatenated, reshaped to `shape`.
Tensor decode_chunked(const MsgNode& map, const std::string& key, const std::string& what) {
  const std::string where = label(key, what);
  const MsgNode* shape_node = field(map, "shape");
  const MsgNode* chunks_node = field(map, "chunks");
  if (!shape_node || !chunks_node) throw IOError("bad chunked array in " + where + ": needs \"shape\" and \"chunks\"");
  Shape shape;
  for (const MsgNode* d : indexed(*shape_node, key, what)) {
    if (d->kind != MsgNode::Kind::UInt || d->uint > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      throw IOError("bad chunked array in " + where + ": a dimension is not a non-negative integer");
    shape.push_back(static_cast<std::int64_t>(d->uint));
  }
  if (shape.size() > kMaxDims) throw IOError("bad chunked array in " + where + ": too many dimensions");
  std::vector<Tensor> chunks;
  std::uint64_t total = 0;
  for (const MsgNode* c : indexed(*chunks_node, key, what)) {
    if (c->kind != MsgNode::Kind::Ext || c->ext_type != kExtNdarray)
      throw IOError("bad chunked array in " + where + ": a chunk is not an ndarray");
    chunks.push_back(decode_ndarray(c->bytes, key, what));
    if (chunks.back().dtype() != chunks.front().dtype())
      throw IOError("bad chunked array in " + where + ": chunks of different dtypes");
    total += io_detail::tensor_nbytes(chunks.back());
  }
  if (chunks.empty()) throw IOError("bad chunked array in " + where + ": no chunks");
  const DType dtype = chunks.front().dtype();
  std::uint64_t bytes = 0;
  if (!io_detail::checked_nbytes(shape, itemsize(dtype), std::numeric_limits<std::int64_t>::max(), bytes) ||
      bytes != total)
    throw IOError("bad chunked array in " + where + ": shape " + shape_str(shape) + " does not match " +
                  std::to_string(total) + " bytes of chunks");
  Tensor out = empty(shape, dtype);
  char* p = io_detail::tensor_bytes(out);
  for (const Tensor& c : chunks) {
    const std::uint64_t n = io_detail::tensor_nbytes(c);
    if (n) std::memcpy(p, io_detail::tensor_bytes(c), n);
    p += n;
  }
  return out;
}

void flatten(const MsgNode& n, const std::string& key, const std::string& what, std::map<std::string, Tensor>& out);

void put(std::map<std::string, Tensor>& out, const std::string& key, Tensor t, const std::string& what) {
  if (!out.emplace(key, std::move(t)).second)
    throw IOError("duplicate key " + quoted_name(key) + " in " + what + " (after flattening nested maps)");
}

void flatten_children(const MsgNode& n, const std::string& key, const std::string& what,
                      std::map<std::string, Tensor>& out) {
  if (n.kind == MsgNode::Kind::Array) {
    for (std::size_t i = 0; i < n.children.size(); ++i) flatten(n.children[i], join(key, std::to_string(i)), what, out);
    return;
  }
  for (std::size_t i = 0; i + 1 < n.children.size(); i += 2)
    flatten(n.children[i + 1], join(key, key_text(n.children[i], key, what)), what, out);
}

void flatten(const MsgNode& n, const std::string& key, const std::string& what, std::map<std::string, Tensor>& out) {
  using K = MsgNode::Kind;
  switch (n.kind) {
    case K::Map:
      if (field(n, kChunkedMarker)) return put(out, key, decode_chunked(n, key, what), what);
      return flatten_children(n, key, what, out);
    case K::Array: return flatten_children(n, key, what, out);
    case K::Ext:
      if (n.ext_type == kExtNdarray || n.ext_type == kExtNumpyScalar) {
        Tensor t = decode_ndarray(n.bytes, key, what);
        if (n.ext_type == kExtNumpyScalar && t.dim() != 0)
          throw IOError("bad numpy scalar in " + label(key, what) + ": shape " + shape_str(t.shape()));
        return put(out, key, t, what);
      }
      if (n.ext_type == kExtNativeComplex)
        throw IOError("unsupported value in " + label(key, what) + ": a complex number (xgrad has no complex dtype)");
      throw IOError("unsupported value in " + label(key, what) + ": msgpack extension type " +
                    std::to_string(n.ext_type) + " (Flax writes 1, 2 and 3)");
    case K::Bool: return put(out, key, scalar(n.boolean ? 1 : 0, DType::Bool), what);
    case K::UInt: {
      if (n.uint > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        throw IOError("unsupported value in " + label(key, what) + ": the integer " + std::to_string(n.uint) +
                      " does not fit int64");
      const auto v = static_cast<std::int64_t>(n.uint);
      return put(out, key, from_data(&v, {}), what);
    }
    case K::Int: return put(out, key, from_data(&n.sint, {}), what);
    case K::Float32: return put(out, key, scalar(n.real, DType::Float32), what);
    case K::Float64: return put(out, key, scalar(n.real, DType::Float64), what);
    case K::Nil: throw IOError("unsupported value in " + label(key, what) + ": None");
    case K::Str:
    case K::Bin: throw IOError("unsupported value in " + label(key, what) + ": a string, not an array");
  }
}

}  // namespace

std::map<std::string, Tensor> parse_flax_msgpack(std::string_view bytes, const std::string& what) {
  const MsgNode root = parse_tree(bytes, what, kFlaxMaxDepth);
  if (root.kind != MsgNode::Kind::Map)
    throw IOError("bad Flax msgpack file " + what + ": the top level is not a map (Flax writes a dict of params)");
  std::map<std::string, Tensor> out;
  flatten(root, "", what, out);
  return out;
}

std::map<std::string, Tensor> load_flax_msgpack(const std::string& path) {
  return parse_flax_msgpack(read_file(path), path);
}

namespace {

struct Buffer {
  std::string bytes;
  void write(const char* p, std::size_t n) { bytes.append(p, n); }
};

[[noreturn]] void too_deep() {
  throw ValueError("save_flax_msgpack: the keys nest deeper than the " + std::to_string(kFlaxMaxDepth) +
                   " levels of maps the reader accepts");
}

// The nested tree of dotted keys.
struct SaveNode {
  const Tensor* leaf = nullptr;
  std::map<std::string, SaveNode> children;
};

SaveNode nest(const std::map<std::string, Tensor>& tensors) {
  SaveNode root;
  for (const auto& [key, t] : tensors) {
    if (!t.defined()) throw ValueError("save_flax_msgpack: tensor " + quoted_name(key) + " is undefined");
    if (std::count(key.begin(), key.end(), '.') >= kFlaxMaxDepth) too_deep();
    SaveNode* node = &root;
    std::size_t start = 0;
    while (true) {
      const std::size_t dot = key.find('.', start);
      const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (part.empty())
        throw ValueError("save_flax_msgpack: key " + quoted_name(key) + " has an empty part between dots");
      if (node->leaf)
        throw ValueError("save_flax_msgpack: key " + quoted_name(key) + " nests under another key that is a tensor");
      node = &node->children[part];
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    if (node->leaf || !node->children.empty())
      throw ValueError("save_flax_msgpack: key " + quoted_name(key) + " is both a tensor and a prefix of other keys");
    node->leaf = &t;
  }
  return root;
}

void pack_str(msgpack::packer<Buffer>& pk, std::string_view s) {
  pk.pack_str(static_cast<std::uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

// flax.serialization._ndarray_to_bytes: packb((shape, dtype name, bytes), use_bin_type=True).
std::string ndarray_payload(const Shape& shape, DType dtype, std::string_view data) {
  Buffer b;
  msgpack::packer<Buffer> pk(b);
  pk.pack_array(3);
  pk.pack_array(static_cast<std::uint32_t>(shape.size()));
  for (std::int64_t d : shape) pk.pack_uint64(static_cast<std::uint64_t>(d));
  pack_str(pk, dtype_name(dtype));
  pk.pack_bin(static_cast<std::uint32_t>(data.size()));
  pk.pack_bin_body(data.data(), static_cast<std::uint32_t>(data.size()));
  return std::move(b.bytes);
}

void pack_ndarray(msgpack::packer<Buffer>& pk, const Shape& shape, DType dtype, std::string_view data) {
  const std::string payload = ndarray_payload(shape, dtype, data);
  if (payload.size() > std::numeric_limits<std::uint32_t>::max())
    throw ValueError("save_flax_msgpack: an array chunk is too large for msgpack");
  pk.pack_ext(payload.size(), kExtNdarray);
  pk.pack_ext_body(payload.data(), static_cast<std::uint32_t>(payload.size()));
}

// `levels`: the maps around this tensor. A chunked array adds its own map and the
// "shape"/"chunks" maps inside it.
void pack_tensor(msgpack::packer<Buffer>& pk, const Tensor& t, std::uint64_t max_chunk_bytes, int levels) {
  std::string data;
  io_detail::append_little_endian(data, t);
  if (data.size() <= max_chunk_bytes) return pack_ndarray(pk, t.shape(), t.dtype(), data);
  if (levels + 2 > kFlaxMaxDepth) too_deep();
  // flax.serialization._chunk: {marker: True, shape: {"0": d0, ...}, chunks: {"0": 1-D array, ...}}.
  const std::uint64_t item = itemsize(t.dtype());
  const std::uint64_t chunk_elements = std::max<std::uint64_t>(1, max_chunk_bytes / item);
  const std::uint64_t numel = static_cast<std::uint64_t>(t.numel());
  pk.pack_map(3);
  pack_str(pk, kChunkedMarker);
  pk.pack_true();
  pack_str(pk, "shape");
  pk.pack_map(static_cast<std::uint32_t>(t.shape().size()));
  for (std::size_t i = 0; i < t.shape().size(); ++i) {
    pack_str(pk, std::to_string(i));
    pk.pack_uint64(static_cast<std::uint64_t>(t.shape()[i]));
  }
  pack_str(pk, "chunks");
  const std::uint64_t count = (numel + chunk_elements - 1) / chunk_elements;
  pk.pack_map(static_cast<std::uint32_t>(count));
  for (std::uint64_t c = 0; c < count; ++c) {
    const std::uint64_t first = c * chunk_elements, n = std::min(chunk_elements, numel - first);
    pack_str(pk, std::to_string(c));
    pack_ndarray(pk, {static_cast<std::int64_t>(n)}, t.dtype(), std::string_view(data).substr(first * item, n * item));
  }
}

void pack_node(msgpack::packer<Buffer>& pk, const SaveNode& node, std::uint64_t max_chunk_bytes, int levels) {
  if (node.leaf) return pack_tensor(pk, *node.leaf, max_chunk_bytes, levels);
  if (levels + 1 > kFlaxMaxDepth) too_deep();
  pk.pack_map(static_cast<std::uint32_t>(node.children.size()));
  for (const auto& [name, child] : node.children) {
    pack_str(pk, name);
    pack_node(pk, child, max_chunk_bytes, levels + 1);
  }
}

}  // namespace

std::string serialize_flax_msgpack(const std::map<std::string, Tensor>& tensors, std::uint64_t max_chunk_bytes) {
  if (max_chunk_bytes == 0) throw ValueError("serialize_flax_msgpack: max_chunk_bytes must be positive");
  const SaveNode root = nest(tensors);
  Buffer b;
  msgpack::packer<Buffer> pk(b);
  pack_node(pk, root, max_chunk_bytes, 0);
  return std::move(b.bytes);
}

void save_flax_msgpack(const std::string& path, const std::map<std::string, Tensor>& tensors) {
  const std::string bytes = serialize_flax_msgpack(tensors);
  AtomicFileWriter file(path);
  file.write(bytes);
  file.commit();
}

}  // namespace xgrad
