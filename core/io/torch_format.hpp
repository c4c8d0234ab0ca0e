// PyTorch state dicts: `torch.save(model.state_dict(), path)` in the zip format of
// torch >= 1.6 (`<archive>/data.pkl`, `<archive>/data/<key>` storages, `<archive>/version`).
//
// load_torch runs a restricted unpickler (core/io/torch_unpickler.hpp): it accepts
// only what a state dict of tensors needs and never calls anything from the file; any
// other global or opcode is an IOError naming it. Views (storage offsets, strides,
// non-contiguous tensors) and storages shared between tensors are copied out into
// dense tensors. Keys are the state dict's keys ("features.0.weight"); a nested dict
// ({"model": state_dict, "epoch": 3}) flattens to dotted keys ("model.features.0.weight",
// and "epoch" as a 0-d int64). Layouts stay as stored: PyTorch's Conv2d weight is
// (O, I, kH, kW) and Linear's (out, in), where Flax's Conv kernel is (kH, kW, I, O) and
// Dense's (in, out). A big-endian or unknown byteorder record is an IOError.
//
// save_torch writes what `torch.load(path, weights_only=True)` opens: an OrderedDict
// of tensors, one storage record per tensor, 64-byte aligned as torch writes them.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "core/tensor.hpp"

namespace xgrad {

// The tensors of the state dict at `path`, by key. IOError for an unreadable or
// malformed file or a pickle outside the accepted set, DTypeError for an unsupported
// storage type, ValueError for inconsistent shapes or strides.
std::map<std::string, Tensor> load_torch(const std::string& path);
// Atomic: a crash while saving leaves the previous file (if any) intact.
void save_torch(const std::string& path, const std::map<std::string, Tensor>& tensors);

// In-memory forms; `what` names the source in error messages.
std::map<std::string, Tensor> parse_torch(std::string_view bytes, const std::string& what = "torch checkpoint");
std::string serialize_torch(const std::map<std::string, Tensor>& tensors);  // the bytes save_torch writes

// Whether zip entry names look like a PyTorch checkpoint (one `<archive>/data.pkl`).
bool is_torch_zip(std::string_view zip_bytes, const std::string& what);
// Whether the bytes start like torch.save's legacy (torch < 1.6) format, which xgrad does not read.
bool is_legacy_torch(std::string_view bytes);

}  // namespace xgrad
