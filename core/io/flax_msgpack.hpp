// Flax checkpoints in msgpack (flax.serialization.to_bytes / msgpack_serialize of a
// params tree), e.g. {"params": {"ConvLocal_0": {"kernel": array, "bias": array}}}.
//
// Loading flattens nested maps to dotted keys ("params.ConvLocal_0.kernel"); lists
// count as maps with keys "0", "1", ... (as Flax's state dicts store them). Leaves:
//   ext 1 (ndarray): a nested msgpack [shape, dtype name, row-major bytes]
//   ext 3 (numpy scalar): the same with shape []                 -> a 0-d tensor
//   {"__msgpack_chunked_array__": true, "shape": {...}, "chunks": {...}}
//       (Flax splits arrays over 2**30 bytes into 1-D chunks)     -> one tensor
//   msgpack bool / int / float                                    -> 0-d bool / int64 / float64
// Dtype names: bool, int32, int64, float16, bfloat16, float32, float64; any other,
// ext 2 (native complex), strings, nil and unknown ext types are IOErrors naming the
// key. Nesting is bounded (kFlaxMaxDepth) and every size is checked against the
// bytes present before anything is allocated.
//
// Saving writes the nested form that flax.serialization.msgpack_restore reads:
// dotted keys become nested maps, tensors ndarray ext values (bfloat16 under Flax's
// name "bfloat16"), and arrays over `max_chunk_bytes` Flax's chunked form.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "core/tensor.hpp"

namespace xgrad {

inline constexpr int kFlaxMaxDepth = 64;  // deepest map nesting parse_flax_msgpack accepts
inline constexpr std::uint64_t kFlaxMaxChunkBytes = std::uint64_t{1} << 30;  // flax.serialization.MAX_CHUNK_SIZE

// The leaves of the checkpoint at `path`, by dotted key. IOError for an unreadable
// or malformed file, an unsupported leaf or nesting deeper than kFlaxMaxDepth.
std::map<std::string, Tensor> load_flax_msgpack(const std::string& path);
// Atomic: a crash while saving leaves the previous file (if any) intact. A key that
// is both a leaf and a prefix of another ("a" and "a.b"), or has an empty part
// ("a..b"), is a ValueError.
void save_flax_msgpack(const std::string& path, const std::map<std::string, Tensor>& tensors);

// In-memory forms; `what` names the source in error messages.
std::map<std::string, Tensor> parse_flax_msgpack(std::string_view bytes, const std::string& what = "msgpack");
// The bytes save_flax_msgpack writes: nested maps, arrays over max_chunk_bytes
// split into chunks as Flax does. ValueError for keys as save_flax_msgpack.
std::string serialize_flax_msgpack(const std::map<std::string, Tensor>& tensors,
                                   std::uint64_t max_chunk_bytes = kFlaxMaxChunkBytes);

}  // namespace xgrad
