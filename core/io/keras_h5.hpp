// Keras 2 HDF5 weight files, read through libhdf5 (Debian's libhdf5-dev).
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
// dtypes are kept: IEEE float16/32/64, signed int32/int64 and h5py's bool (an enum
// FALSE = 0, TRUE = 1 over int8). Any other type is a DTypeError naming the dataset.
// Every size is checked against the file before anything is allocated; a damaged or
// hostile file (truncated, a listed weight missing, impossible dims) gives IOError or
// ValueError naming the file and the dataset. While a file is read, libhdf5's own
// error printing and its loading of filter plugins are off (both restored
// afterwards), and calls are serialised (Debian's libhdf5 is not thread-safe).
//
// Trust: the reader checks every size it hands to libhdf5, but libhdf5 parses the
// file's object headers itself, and Debian 12's libhdf5 1.10.8 has memory-safety bugs
// on crafted headers (tests/fuzz/README.md, fuzz_keras_h5). Open .h5 files from
// trusted sources only.
//
// Built only when libhdf5 is found (meson -Dhdf5=auto, the default); otherwise
// load_keras_h5 throws NotImplementedError. core/io_config.hpp (generated; included
// by xgrad.hpp) defines XGRAD_HAVE_HDF5 when the reader is built.
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
