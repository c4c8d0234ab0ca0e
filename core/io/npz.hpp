// NumPy .npz archives: named tensors in a zip file, as numpy.savez / numpy.load use them.
//
// Each tensor is an entry "<key>.npy" in .npy format (see core/io/npy.hpp for dtypes,
// bfloat16 included). Loading returns keys without the ".npy" suffix, as numpy.load
// does; entry names are only keys and never touch the filesystem. Archives may be
// stored or deflated (numpy.savez_compressed); every entry's CRC is verified.
// Unlike numpy.savez, save_npz writes to exactly `path` (no ".npz" is appended).
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "core/tensor.hpp"

namespace xgrad {

// The tensors of the archive at `path` by key; IOError naming the file for anything malformed (duplicate keys too).
std::map<std::string, Tensor> load_npz(const std::string& path);
// Atomic: a crash while saving leaves the previous file (if any) intact.
void save_npz(const std::string& path, const std::map<std::string, Tensor>& arrays, bool compress = false);

// In-memory form; `what` names the source in error messages.
std::map<std::string, Tensor> parse_npz(std::string_view bytes, const std::string& what = "npz");

}  // namespace xgrad
