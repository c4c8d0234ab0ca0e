// Model checkpoints keyed by dotted paths ("encoder.conv1.kernel"): xgrad's own .npz
// (numpy.load opens it) and the formats of other frameworks, recognised on load by
// their first bytes. Saving is atomic (temporary file, fsync, rename): a crash never
// leaves a half-written checkpoint under the final name.
#pragma once

#include <map>
#include <string>

#include "layers/module.hpp"

namespace xgrad::nn {

// The checkpoint file formats save() writes and load() recognises.
enum class CheckpointFormat {
  Npz,          // numpy .npz (core/io/npz.hpp), the default
  Safetensors,  // core/io/safetensors.hpp
  FlaxMsgpack,  // flax.serialization msgpack, nested maps (core/io/flax_msgpack.hpp)
  Torch,        // torch.save zip with a state-dict pickle (core/io/torch_format.hpp)
  KerasH5,      // Keras 2 HDF5 weights, read only (core/io/keras_h5.hpp)
};

// How save() writes: the format and, for npz, compression.
struct SaveOptions {
  CheckpointFormat format = CheckpointFormat::Npz;  // KerasH5 cannot be written (ValueError)
  bool compress = false;  // npz only: deflate the entries
};

// Parameters and buffers of `model` (state_dict()) to `path`.
void save(const Module& model, const std::string& path, bool compress = false);
void save(const Module& model, const std::string& path, const SaveOptions& options);  // in options.format

// How load() matches the file's keys to the model's.
struct LoadOptions {
  bool strict = true;  // missing and unexpected keys are errors
  // Removed from the front of every key that has it ("params." for a Flax checkpoint).
  std::string strip_prefix{};
  // Old key (after strip_prefix) -> new key. Naming a key the file lacks is a ValueError.
  std::map<std::string, std::string> rename{};
};

// Reads `path` into `model` with load_state_dict(strict): on any error (missing,
// unexpected, wrong shape or dtype, unreadable file) the model is unchanged. The
// model's lazy parameters must exist: call init(sample_input) first.
//
// The format comes from the file's first bytes: a zip archive is a PyTorch checkpoint
// when it holds "<name>/data.pkl" and an .npz otherwise; an 8-byte length followed by
// '{' is safetensors; a msgpack map is a Flax checkpoint; the HDF5 signature is Keras 2
// weights (load_keras_h5: keys "<layer>.<weight>"). Tensors are loaded as stored (no
// layout changes: PyTorch's (out, in) Linear weight stays so).
void load(Module& model, const std::string& path, bool strict = true);
void load(Module& model, const std::string& path, const LoadOptions& options);  // with strip_prefix and rename

// What load() would read from `path`, after strip_prefix and rename.
std::map<std::string, Tensor> load_checkpoint_tensors(const std::string& path, const LoadOptions& options = {});
// The format load() recognises in `path`; an IOError when it is none of them.
CheckpointFormat detect_checkpoint_format(const std::string& path);

}  // namespace xgrad::nn
