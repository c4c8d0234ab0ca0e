#include "core/io/torch_format.hpp"

#include <list>

#include "core/error.hpp"
#include "core/io/file_io.hpp"
#include "core/io/tensor_bytes.hpp"
#include "core/io/torch_unpickler.hpp"
#include "core/io/zip.hpp"

namespace xgrad {

namespace {

constexpr std::string_view kPickleName = "/data.pkl";
constexpr const char* kArchive = "archive";  // torch's own name when it has no file name to use
constexpr std::size_t kRecordAlign = 64;      // torch aligns its records to 64 bytes

// "<archive>" when exactly one entry is "<archive>/data.pkl" with no further '/'.
std::string archive_prefix(const std::vector<std::string>& names) {
  std::string prefix;
  int found = 0;
  for (const std::string& n : names) {
    if (!n.ends_with(kPickleName)) continue;
    const std::string dir = n.substr(0, n.size() - kPickleName.size());
    if (dir.empty() || dir.find('/') != std::string::npos) continue;
    prefix = dir;
    ++found;
  }
  return found == 1 ? prefix : std::string();
}

}  // namespace

bool is_legacy_torch(std::string_view bytes) {
  // Before 1.6 torch.save pickled a magic number first: LONG1 0x1950a86a20f9469cfc6c.
  constexpr std::string_view kLegacyMagic{"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 14};
  return bytes.starts_with(kLegacyMagic);
}

bool is_torch_zip(std::string_view zip_bytes, const std::string& what) {
  return !archive_prefix(zip_entry_names(zip_bytes, what)).empty();
}

std::map<std::string, Tensor> parse_torch(std::string_view bytes, const std::string& what) {
  if (is_legacy_torch(bytes))
    throw IOError("unsupported PyTorch checkpoint " + what +
                  ": the legacy format of torch < 1.6; re-save it with torch.save under torch >= 1.6 (the zip format)");
  std::list<std::string> inflated;
  const auto entries = read_zip_entries(bytes, what, inflated);
  std::vector<std::string> names;
  for (const auto& [name, contents] : entries) names.push_back(name);
  const std::string prefix = archive_prefix(names);
  if (prefix.empty())
    throw IOError("not a PyTorch checkpoint: " + what + " is a zip archive without exactly one <name>/data.pkl");
  if (const auto order = entries.find(prefix + "/byteorder"); order != entries.end() && order->second != "little")
    throw IOError("unsupported PyTorch checkpoint " + what + ": byteorder " + quoted_name(order->second) +
                  " (xgrad reads little-endian checkpoints)");
  const auto storage = [&](const std::string& key) -> std::string_view {
    const auto found = entries.find(prefix + "/data/" + key);
    if (found == entries.end())
      throw IOError("bad PyTorch checkpoint " + what + ": storage " + quoted_name(key) + " has no record " +
                    quoted_name(prefix + "/data/" + key));
    return found->second;
  };
  // Views may legitimately repeat a storage (a tensor and its transpose); anything past
  // a few times the archive's size is a file built to exhaust memory.
  const std::uint64_t budget = 4 * static_cast<std::uint64_t>(bytes.size()) + (std::uint64_t{16} << 20);
  return torch_detail::unpickle_state_dict(entries.at(prefix + kPickleName.data()), storage, budget, what);
}

std::map<std::string, Tensor> load_torch(const std::string& path) { return parse_torch(read_file(path), path); }

namespace {

const char* storage_class(DType dtype) {
  switch (dtype) {
    case DType::Bool: return "BoolStorage";
    case DType::Int32: return "IntStorage";
    case DType::Int64: return "LongStorage";
    case DType::Float16: return "HalfStorage";
    case DType::BFloat16: return "BFloat16Storage";
    case DType::Float32: return "FloatStorage";
    case DType::Float64: return "DoubleStorage";
  }
  throw DTypeError("save_torch: unknown dtype");
}

// Pickle protocol 2, the opcodes torch.save itself emits (see the unpickler).
class PickleWriter {
 public:
  std::string out;
  void op(char c) { out += c; }
  void proto() { out += "\x80\x02"; }
  void global(const std::string& module, const std::string& name) { out += "c" + module + "\n" + name + "\n"; }
  void text(const std::string& s) {
    op('X');
    le(s.size(), 4);
    out += s;
  }
  void integer(std::int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      le(static_cast<std::uint64_t>(v), 1);
    } else if (v >= 0 && v < 65536) {
      op('M');
      le(static_cast<std::uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      le(static_cast<std::uint64_t>(static_cast<std::uint32_t>(static_cast<std::int32_t>(v))), 4);
    } else {
      out += "\x8a\x08";  // LONG1 of 8 bytes, two's complement
      le(static_cast<std::uint64_t>(v), 8);
    }
  }
  void int_tuple(const Shape& values) {
    op('(');
    for (std::int64_t v : values) integer(v);
    op('t');
  }

 private:
  void le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
  }
};

std::string pickle_state_dict(const std::map<std::string, Tensor>& tensors) {
  PickleWriter w;
  w.proto();
  w.global("collections", "OrderedDict");
  w.op(')');
  w.op('R');
  w.op('(');
  std::size_t index = 0;
  for (const auto& [key, t] : tensors) {
    w.text(key);
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks)
    w.global("torch._utils", "_rebuild_tensor_v2");
    w.op('(');
    w.op('(');  // persistent id ('storage', torch.<Type>Storage, key, location, numel)
    w.text("storage");
    w.global("torch", storage_class(t.dtype()));
    w.text(std::to_string(index++));
    w.text("cpu");
    w.integer(t.numel());
    w.op('t');
    w.op('Q');
    w.integer(0);
    w.int_tuple(t.shape());
    Shape stride(t.shape().size());
    std::int64_t s = 1;
    for (std::size_t k = stride.size(); k-- > 0;) {
      stride[k] = s;
      s *= std::max<std::int64_t>(t.shape()[k], 1);
    }
    w.int_tuple(stride);
    w.op('\x89');  // requires_grad=False
    w.global("collections", "OrderedDict");
    w.op(')');
    w.op('R');
    w.op('t');
    w.op('R');
  }
  w.op('u');
  w.op('.');
  return std::move(w.out);
}

void write_archive(const std::map<std::string, Tensor>& tensors, const ZipWriter::Sink& sink, const std::string& what) {
  for (const auto& [key, t] : tensors)
    if (!t.defined()) throw ValueError("save_torch: tensor " + quoted_name(key) + " is undefined");
  const std::string archive = kArchive;
  ZipWriter zip(sink, what);
  // torch's reader takes the archive name from the first record, so data.pkl leads.
  zip.add(archive + "/data.pkl", pickle_state_dict(tensors), false);
  zip.add(archive + "/byteorder", "little", false);
  std::size_t index = 0;
  for (const auto& [key, t] : tensors) {
    std::string bytes;
    io_detail::append_little_endian(bytes, t);
    zip.add(archive + "/data/" + std::to_string(index++), bytes, false, kRecordAlign);
  }
  zip.add(archive + "/version", "3\n", false);
  zip.finish();
}

}  // namespace

std::string serialize_torch(const std::map<std::string, Tensor>& tensors) {
  std::string out;
  write_archive(tensors, [&](std::string_view b) { out += b; }, "torch checkpoint");
  return out;
}

void save_torch(const std::string& path, const std::map<std::string, Tensor>& tensors) {
  for (const auto& [key, t] : tensors)
    if (!t.defined()) throw ValueError("save_torch: tensor " + quoted_name(key) + " is undefined");
  AtomicFileWriter file(path);
  write_archive(tensors, [&](std::string_view b) { file.write(b); }, path);
  file.commit();
}

}  // namespace xgrad
