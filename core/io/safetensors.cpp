#include "core/io/safetensors.hpp"

#include <algorithm>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.hpp"
#include "core/io/file_io.hpp"
#include "core/io/tensor_bytes.hpp"
#include "core/io/zip.hpp"

namespace xgrad {

namespace {

using nlohmann::json;

constexpr std::uint64_t kLengthBytes = 8;
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;  // the reference reader's limit
constexpr std::size_t kMaxDims = 64;
constexpr int kMaxJsonDepth = 3;  // {name: {"shape": [d, ...]}}
constexpr const char* kMetadataKey = "__metadata__";

struct DTypeCode {
  const char* code;
  DType dtype;
};
// Widest first: the order the reference writer lays tensors out in.
constexpr DTypeCode kCodes[] = {{"I64", DType::Int64},   {"F64", DType::Float64}, {"F32", DType::Float32},
                                {"I32", DType::Int32},   {"BF16", DType::BFloat16}, {"F16", DType::Float16},
                                {"BOOL", DType::Bool}};

const char* code_of(DType dtype) {
  for (const DTypeCode& c : kCodes)
    if (c.dtype == dtype) return c.code;
  throw DTypeError("safetensors: unknown dtype");
}

int rank_of(DType dtype) {
  for (int i = 0; i < static_cast<int>(std::size(kCodes)); ++i)
    if (kCodes[i].dtype == dtype) return i;
  return 0;
}

struct Entry {
  std::string name;
  DType dtype = DType::Float32;
  Shape shape;
  std::uint64_t begin = 0, end = 0;
};

struct Header {
  std::uint64_t data_start = 0;  // file offset of the data buffer
  std::vector<Entry> entries;
  std::map<std::string, std::string> metadata;
};

[[noreturn]] void bad(const std::string& what, const std::string& problem) {
  throw IOError("bad safetensors file " + what + ": " + problem);
}

std::uint64_t read_length(std::string_view first8) {
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(static_cast<unsigned char>(first8[i])) << (8 * i);
  return n;
}

std::uint64_t header_length(std::string_view first8, std::uint64_t file_size, const std::string& what) {
  if (file_size < kLengthBytes)
    bad(what, "the file has " + std::to_string(file_size) + " bytes, fewer than the 8-byte header length");
  const std::uint64_t n = read_length(first8);
  if (n > kMaxHeaderBytes)
    bad(what, "the header claims " + std::to_string(n) + " bytes, more than the format's limit of " +
                  std::to_string(kMaxHeaderBytes));
  if (n > file_size - kLengthBytes)
    bad(what, "the header claims " + std::to_string(n) + " bytes, the file has " +
                  std::to_string(file_size - kLengthBytes) + " after the length field");
  return n;
}

std::uint64_t unsigned_field(const json& v, const std::string& what, const std::string& label) {
  if (!v.is_number_unsigned()) bad(what, label + " must be a non-negative integer, got " + v.dump());
  return v.get<std::uint64_t>();
}

Entry decode_entry(const std::string& name, const json& info, const std::string& what) {
  const std::string label = "tensor " + quoted_name(name);
  if (!info.is_object()) bad(what, label + " is not an object");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!info.contains(field)) bad(what, label + " has no \"" + field + "\"");
  Entry e;
  e.name = name;
  const json& dtype = info["dtype"];
  if (!dtype.is_string()) bad(what, label + ": dtype must be a string");
  const std::string code = dtype.get<std::string>();
  const auto known = std::find_if(std::begin(kCodes), std::end(kCodes), [&](const DTypeCode& c) { return code == c.code; });
  if (known == std::end(kCodes))
    throw IOError("unsupported dtype " + quoted_name(code) + " of " + label + " in " + what +
                  ": xgrad reads BOOL, I32, I64, F16, BF16, F32, F64");
  e.dtype = known->dtype;
  const json& shape = info["shape"];
  if (!shape.is_array()) bad(what, label + ": shape must be an array");
  if (shape.size() > kMaxDims)
    bad(what, label + " has " + std::to_string(shape.size()) + " dimensions, more than " + std::to_string(kMaxDims));
  const std::uint64_t limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  for (const json& d : shape) {
    const std::uint64_t v = unsigned_field(d, what, label + ": each dimension");
    if (v > limit) bad(what, label + ": dimension " + std::to_string(v) + " is too large");
    e.shape.push_back(static_cast<std::int64_t>(v));
  }
  const json& offsets = info["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2) bad(what, label + ": data_offsets must be [begin, end]");
  e.begin = unsigned_field(offsets[0], what, label + ": data_offsets");
  e.end = unsigned_field(offsets[1], what, label + ": data_offsets");
  std::uint64_t bytes = 0;
  if (!io_detail::checked_nbytes(e.shape, itemsize(e.dtype), limit, bytes))
    bad(what, label + ": shape " + shape_str(e.shape) + " is too large");
  if (e.end < e.begin || e.end - e.begin != bytes)
    bad(what, label + ": " + std::string(dtype_name(e.dtype)) + " " + shape_str(e.shape) + " needs " +
                  std::to_string(bytes) + " bytes, data_offsets [" + std::to_string(e.begin) + ", " +
                  std::to_string(e.end) + "] give " +
                  (e.end < e.begin ? std::string("a negative range") : std::to_string(e.end - e.begin)));
  return e;
}

Header decode_header(std::string_view text, std::uint64_t data_bytes, const std::string& what) {
  if (text.empty() || text.front() != '{') bad(what, "the header must be a JSON object starting with '{'");
  json root;
  try {
    root = json::parse(text, [&](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth) bad(what, "the header nests deeper than a safetensors header can");
      return true;
    });
  } catch (const json::exception& e) {
    bad(what, std::string("the header is not valid JSON (") + e.what() + ")");
  }
  if (!root.is_object()) bad(what, "the header is not a JSON object");
  Header h;
  for (const auto& [name, info] : root.items()) {
    if (name == kMetadataKey) {
      if (info.is_null()) continue;
      if (!info.is_object()) bad(what, "__metadata__ must map strings to strings");
      for (const auto& [k, v] : info.items()) {
        if (!v.is_string()) bad(what, "__metadata__ value of " + quoted_name(k) + " is not a string");
        h.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    h.entries.push_back(decode_entry(name, info, what));
  }
  // The ranges must tile [0, data_bytes): sorted by begin, each starts where the previous ended.
  std::vector<const Entry*> order;
  for (const Entry& e : h.entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  std::uint64_t at = 0;
  for (const Entry* e : order) {
    if (e->begin != at)
      bad(what, "tensor " + quoted_name(e->name) + " starts at byte " + std::to_string(e->begin) + " of the data, " +
                    (e->begin < at ? "inside the previous tensor (overlap)" : "leaving a gap after byte " + std::to_string(at)));
    at = e->end;
  }
  if (at != data_bytes)
    bad(what, "the tensors cover " + std::to_string(at) + " bytes of data, the file holds " +
                  std::to_string(data_bytes));
  return h;
}

// Reads the header through `read(offset, dst, n)`, then each tensor.
std::map<std::string, Tensor> load_with(std::uint64_t file_size,
                                        const std::function<void(std::uint64_t, char*, std::size_t)>& read,
                                        const std::string& what, std::map<std::string, std::string>* metadata) {
  std::string first8(std::min<std::uint64_t>(file_size, kLengthBytes), '\0');
  read(0, first8.data(), first8.size());
  const std::uint64_t n = header_length(first8, file_size, what);
  std::string text(n, '\0');
  read(kLengthBytes, text.data(), n);
  const std::uint64_t data_start = kLengthBytes + n;
  Header h = decode_header(text, file_size - data_start, what);
  std::map<std::string, Tensor> out;
  for (const Entry& e : h.entries) {
    Tensor t = empty(e.shape, e.dtype);
    char* p = io_detail::tensor_bytes(t);
    const std::uint64_t bytes = e.end - e.begin;
    if (bytes > 0) read(data_start + e.begin, p, bytes);
    if (e.dtype == DType::Bool)
      for (std::uint64_t i = 0; i < bytes; ++i) p[i] = p[i] != 0;
    if constexpr (!io_detail::kNativeLittle) io_detail::swap_element_bytes(p, bytes, itemsize(e.dtype));
    out.emplace(e.name, t);
  }
  if (metadata) *metadata = std::move(h.metadata);
  return out;
}

}  // namespace

std::map<std::string, Tensor> parse_safetensors(std::string_view bytes, const std::string& what,
                                                std::map<std::string, std::string>* metadata) {
  return load_with(
      bytes.size(), [&](std::uint64_t at, char* dst, std::size_t n) { std::memcpy(dst, bytes.data() + at, n); }, what,
      metadata);
}

std::map<std::string, Tensor> load_safetensors(const std::string& path) {
  InputFile file(path);
  return load_with(
      file.size(), [&](std::uint64_t at, char* dst, std::size_t n) { file.read_at(at, dst, n); }, path, nullptr);
}

std::map<std::string, std::string> load_safetensors_metadata(const std::string& path) {
  InputFile file(path);
  std::string first8(std::min<std::uint64_t>(file.size(), kLengthBytes), '\0');
  file.read_at(0, first8.data(), first8.size());
  const std::uint64_t n = header_length(first8, file.size(), path);
  std::string text(n, '\0');
  file.read_at(kLengthBytes, text.data(), n);
  return decode_header(text, file.size() - kLengthBytes - n, path).metadata;
}

namespace {

std::string header_of(const std::map<std::string, Tensor>& tensors, const std::map<std::string, std::string>& metadata,
                      std::vector<std::pair<const std::string*, const Tensor*>>& order) {
  for (const auto& [name, t] : tensors) {
    if (!t.defined()) throw ValueError("save_safetensors: tensor " + quoted_name(name) + " is undefined");
    if (name == kMetadataKey) throw ValueError("save_safetensors: \"__metadata__\" is reserved and cannot name a tensor");
    order.emplace_back(&name, &t);
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return rank_of(a.second->dtype()) < rank_of(b.second->dtype());
  });
  // nlohmann's ordered_json keeps the insertion order, as the reference writer does.
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  if (!metadata.empty()) root[kMetadataKey] = metadata;
  std::uint64_t at = 0;
  for (const auto& [name, t] : order) {
    const std::uint64_t bytes = io_detail::tensor_nbytes(*t);
    root[*name] = {{"dtype", code_of(t->dtype())}, {"shape", t->shape()}, {"data_offsets", {at, at + bytes}}};
    at += bytes;
  }
  std::string text;
  try {
    text = root.dump();
  } catch (const nlohmann::json::exception& e) {
    throw ValueError(std::string("save_safetensors: a name or metadata string is not valid UTF-8 (") + e.what() + ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((static_cast<std::uint64_t>(text.size()) >> (8 * i)) & 0xff);
  return out + text;
}

}  // namespace

std::string serialize_safetensors(const std::map<std::string, Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<const std::string*, const Tensor*>> order;
  std::string out = header_of(tensors, metadata, order);
  for (const auto& [name, t] : order) io_detail::append_little_endian(out, *t);
  return out;
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<const std::string*, const Tensor*>> order;
  const std::string header = header_of(tensors, metadata, order);
  AtomicFileWriter file(path);
  file.write(header);
  for (const auto& [name, t] : order) {
    if constexpr (io_detail::kNativeLittle) {
      file.write({io_detail::tensor_bytes(*t), io_detail::tensor_nbytes(*t)});
    } else {
      std::string bytes;
      io_detail::append_little_endian(bytes, *t);
      file.write(bytes);
    }
  }
  file.commit();
}

}  // namespace xgrad
