// Keras 2 HDF5 weight files, read by xgrad's own bounds-checked HDF5 reader (no libhdf5).
//
//   auto weights = xgrad::load_keras_h5("w.h5");      // model.save_weights("w.h5")
//   auto same    = xgrad::load_keras_h5("m.h5");      // model.save("m.h5"): weights under model_weights
//   Tensor k = weights.at("locally_connected2d.kernel");
//
// The layout is Keras 2's (tf_keras/saving/legacy/hdf5_format.py,
// save_weights_to_hdf5_group): the weights group (the root of a save_weights file,
// `model_weights` in a whole-model file) has an attribute `layer_names` listing the
// layers in model order; each layer is a subgroup whose attribute `weight_names` lists
// its weights, each a dataset at that (relative) path, e.g. "conv1/kernel:0" under
// group "conv1". An attribute too large for an HDF5 object header is split into
// `layer_names0`, `layer_names1`, ... (`weight_names0`, ...), read in order, as
// load_attributes_from_hdf5_group does. A `top_level_model_weights` group, if it
// lists weights, is read as one more layer of that name.
//
// Keys are "<layer name>.<weight name>", where the weight name loses its ":<n>"
// suffix and its leading "<layer name>/", and its remaining '/' become '.':
// layer "dense" with weight "dense/kernel:0" gives "dense.kernel"; layer "encoder"
// with "encoder/dense/bias:0" gives "encoder.dense.bias"; layer "lc" with
// "kernel:0" gives "lc.kernel". Two weights that map to one key are a ValueError.
//
// dtypes are kept: IEEE float16/32/64, signed int32/int64 (either byte order) and
// h5py's bool (an enum FALSE = 0, TRUE = 1 over int8). Any other type is a DTypeError
// naming the dataset. The names attributes may hold fixed-length strings (numpy bytes,
// what Keras writes) or variable-length ones (h5py's str).
//
// The HDF5 subset read (core/io/hdf5_reader.hpp, not installed) is what h5py writes:
// superblocks v0-v3, object headers v1/v2, symbol-table and compact-link groups,
// compact attributes, contiguous / compact / chunked datasets (v1 B-tree, or one chunk)
// with deflate, shuffle and fletcher32. Dense (fractal heap) groups and attributes and
// libver='latest' multi-chunk indexes are IOErrors naming the feature ("unsupported
// HDF5 feature: ..."); re-saving with h5py's default libver avoids them.
//
// Hostile files: every address, length and count is checked against the file before
// use, B-trees and continuation chains cannot loop, and the bytes decoded from one file
// stay below 2048 times its size (deflate's ratio peaks near 1032:1). A damaged or
// hostile file gives an IOError ("damaged HDF5 file: ...") or a ValueError naming the
// file and the dataset, never a crash or a huge allocation (tests/fuzz/fuzz_keras_h5,
// in scripts/fuzz's default run). Thread-safe: each call reads its own file handle.
#pragma once

#include <map>
#include <string>

#include "core/tensor.hpp"

namespace xgrad {

// The weights of the Keras 2 HDF5 file at `path`, by "<layer>.<weight>" key (rules
// above). IOError or ValueError for a malformed file, DTypeError for an unsupported
// type, NotImplementedError when built without libhdf5.
std::map<std::string, Tensor> load_keras_h5(const std::string& path);

// The key rule above, on its own: keras_h5_key("dense", "dense/kernel:0") == "dense.kernel".
std::string keras_h5_key(const std::string& layer_name, const std::string& weight_name);

}  // namespace xgrad
