// safetensors files (huggingface/safetensors): named tensors behind a JSON header.
//
// Layout: an 8-byte little-endian header length N; N bytes of UTF-8 JSON
//   {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"<key>": "<string>", ...}}
// (space-padded); then the data buffer, whose offsets the header gives relative to
// its start. Dtypes: BOOL, I32, I64, F16, BF16, F32, F64 (any other is an IOError
// naming the tensor). Reading validates, before allocating, everything the Rust
// reference checks: N at most 100,000,000 and within the file, the JSON, each shape
// and its byte count (overflow-checked), offsets that tile the buffer from 0 to its
// end without gaps or overlaps. Writing follows the reference writer: tensors sorted
// by descending dtype width then name, the header padded with spaces to 8 bytes.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "core/tensor.hpp"

namespace xgrad {

// The tensors of the file at `path`, by name. IOError for an unreadable or malformed
// file (header, offsets, unknown dtype), naming the file and tensor.
std::map<std::string, Tensor> load_safetensors(const std::string& path);
// The `__metadata__` string map of a file (empty when it has none).
std::map<std::string, std::string> load_safetensors_metadata(const std::string& path);
// Atomic: a crash while saving leaves the previous file (if any) intact.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// In-memory forms; `what` names the source in error messages.
std::map<std::string, Tensor> parse_safetensors(std::string_view bytes, const std::string& what = "safetensors",
                                                std::map<std::string, std::string>* metadata = nullptr);
// The bytes save_safetensors writes.
std::string serialize_safetensors(const std::map<std::string, Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

}  // namespace xgrad
