#include "layers/checkpoint.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"
#include "core/io/file_io.hpp"
#include "core/io/flax_msgpack.hpp"
#include "core/io/npz.hpp"
#include "core/io/keras_h5.hpp"
#include "core/io/safetensors.hpp"
#include "core/io/torch_format.hpp"
#include "core/io/zip.hpp"

namespace xgrad::nn {

namespace {

constexpr std::string_view kHdf5Magic{"\x89HDF\r\n\x1a\n", 8};

bool is_zip(std::string_view head) { return head.starts_with("PK\x03\x04") || head.starts_with("PK\x05\x06"); }

// safetensors: a little-endian header length that fits the file, then the JSON object.
bool is_safetensors(std::string_view head, std::uint64_t file_size) {
  if (head.size() < 9 || head[8] != '{') return false;
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(static_cast<unsigned char>(head[i])) << (8 * i);
  return n >= 2 && n <= file_size - 8;
}

// A msgpack map (fixmap, map 16, map 32): what flax.serialization writes for a params tree.
bool is_msgpack_map(std::string_view head) {
  if (head.empty()) return false;
  const auto b = static_cast<unsigned char>(head[0]);
  return (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf;
}

CheckpointFormat detect(std::string_view bytes, const std::string& path) {
  const std::string_view head = bytes.substr(0, 16);
  if (is_zip(head)) return is_torch_zip(bytes, path) ? CheckpointFormat::Torch : CheckpointFormat::Npz;
  if (is_legacy_torch(head)) return CheckpointFormat::Torch;  // parse_torch explains what to do
  if (head.starts_with(kHdf5Magic)) return CheckpointFormat::KerasH5;
  if (is_safetensors(head, bytes.size())) return CheckpointFormat::Safetensors;
  if (is_msgpack_map(head)) return CheckpointFormat::FlaxMsgpack;
  throw IOError("load " + path +
                ": unrecognised checkpoint format (xgrad reads .npz, PyTorch zip checkpoints, safetensors, Flax "
                "msgpack and Keras HDF5)");
}

std::map<std::string, Tensor> read(std::string_view bytes, const std::string& path, CheckpointFormat format) {
  switch (format) {
    case CheckpointFormat::Npz: return parse_npz(bytes, path);
    case CheckpointFormat::Safetensors: return parse_safetensors(bytes, path);
    case CheckpointFormat::FlaxMsgpack: return parse_flax_msgpack(bytes, path);
    case CheckpointFormat::Torch: return parse_torch(bytes, path);
    case CheckpointFormat::KerasH5: return load_keras_h5(path);  // reads the file by position itself
  }
  throw ValueError("load: unknown checkpoint format");
}

std::map<std::string, Tensor> rekey(std::map<std::string, Tensor> entries, const LoadOptions& options,
                                    const std::string& path) {
  std::map<std::string, Tensor> stripped;
  for (auto& [key, t] : entries) {
    const bool has = !options.strip_prefix.empty() && key.starts_with(options.strip_prefix);
    const std::string k = has ? key.substr(options.strip_prefix.size()) : key;
    if (!stripped.emplace(k, std::move(t)).second)
      throw ValueError(fmt::format("load {}: stripping prefix '{}' makes two keys '{}'", path, options.strip_prefix, k));
  }
  for (const auto& [from, to] : options.rename)
    if (!stripped.count(from))
      throw ValueError(fmt::format("load {}: rename '{}' -> '{}': the file has no key '{}'", path, from, to, from));
  std::map<std::string, Tensor> out;
  for (auto& [key, t] : stripped) {
    const auto r = options.rename.find(key);
    const std::string& k = r == options.rename.end() ? key : r->second;
    if (!out.emplace(k, std::move(t)).second)
      throw ValueError(fmt::format("load {}: renaming gives two keys '{}'", path, k));
  }
  return out;
}

}  // namespace

void save(const Module& model, const std::string& path, bool compress) {
  save_npz(path, model.state_dict(), compress);
}

void save(const Module& model, const std::string& path, const SaveOptions& options) {
  const StateDict state = model.state_dict();
  switch (options.format) {
    case CheckpointFormat::Npz: return save_npz(path, state, options.compress);
    case CheckpointFormat::Safetensors: return save_safetensors(path, state);
    case CheckpointFormat::FlaxMsgpack: return save_flax_msgpack(path, state);
    case CheckpointFormat::Torch: return save_torch(path, state);
    case CheckpointFormat::KerasH5:
      throw ValueError("save " + path + ": xgrad reads Keras HDF5 weights but does not write them (use safetensors, "
                       "msgpack, torch or npz)");
  }
  throw ValueError("save: unknown checkpoint format");
}

CheckpointFormat detect_checkpoint_format(const std::string& path) {
  return detect(read_file(path), path);
}

std::map<std::string, Tensor> load_checkpoint_tensors(const std::string& path, const LoadOptions& options) {
  const std::string bytes = read_file(path);
  return rekey(read(bytes, path, detect(bytes, path)), options, path);
}

void load(Module& model, const std::string& path, const LoadOptions& options) {
  const auto entries = load_checkpoint_tensors(path, options);
  if (model.state_dict().empty() && !entries.empty())
    throw ValueError(fmt::format("load {}: the model has no parameters yet (they are created at the first call); "
                                 "call init(sample_input) before loading",
                                 path));
  model.load_state_dict(StateDict(entries.begin(), entries.end()), options.strict);
}

void load(Module& model, const std::string& path, bool strict) {
  LoadOptions options;
  options.strict = strict;
  load(model, path, options);
}

}  // namespace xgrad::nn
