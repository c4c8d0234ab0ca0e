// A restricted unpickler for the data.pkl of a PyTorch zip checkpoint (internal to
// core/io/torch_format.cpp and its fuzz target).
//
// It runs only the opcodes a pickled state dict uses (protocols 2 to 5: containers,
// numbers, strings, the memo, GLOBAL/STACK_GLOBAL, REDUCE, BUILD, BINPERSID) and
// resolves only these globals, calling none of them: collections.OrderedDict,
// torch._utils._rebuild_tensor_v2, _rebuild_parameter, _rebuild_parameter_with_state
// and the typed storage classes torch.<Bool|Int|Long|Half|BFloat16|Float|Double>Storage
// (other torch.*Storage classes are recognised so that the error names the dtype).
// Any other global ("os.system", "builtins.eval") or opcode is an IOError naming it,
// raised when it is read, before anything else happens.
//
// A storage is a persistent id ('storage', <storage class>, key, location, numel);
// its bytes come from `storage_bytes(key)`. Each rebuilt tensor is copied out of its
// storage into a dense row-major tensor, honouring the storage offset and strides, so
// views and storages shared between tensors come out right. The total copied-out
// bytes are bounded by `copy_budget` (a stride-0 view could otherwise expand a tiny
// storage into a huge tensor), nesting depth by kMaxPickleDepth.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "core/tensor.hpp"

namespace xgrad::torch_detail {

inline constexpr int kMaxPickleDepth = 64;

using StorageBytes = std::function<std::string_view(const std::string& key)>;

// The unpickled dict flattened to dotted keys (nested dicts as "outer.inner"; lists
// and tuples by index; Python bool/int/float leaves as 0-d bool/int64/float64).
std::map<std::string, Tensor> unpickle_state_dict(std::string_view pickle, const StorageBytes& storage_bytes,
                                                  std::uint64_t copy_budget, const std::string& what);

}  // namespace xgrad::torch_detail
