// load_keras_h5 on libhdf5's C API (1.10, Debian 12). Every handle is closed by
// RAII; every size is checked against the file before a buffer is allocated.
#include "core/io/keras_h5.hpp"

#include <hdf5.h>

#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/half.hpp"
#include "core/io/file_io.hpp"

namespace xgrad {

namespace {

// libhdf5's process-wide settings while a file is read, restored afterwards:
// - its error stack printing (to stderr on every failed call by default; a hostile
//   file would flood it) is off;
// - dynamically loaded filter plugins are off, so a file cannot make the library
//   load and run a shared object of its choosing from the plugin path. Keras never
//   writes plugin filters (deflate and the other built-in filters still work).
class Hdf5ReaderSettings {
 public:
  Hdf5ReaderSettings() {
    H5Eget_auto2(H5E_DEFAULT, &function_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    H5PLget_loading_state(&plugins_);
    H5PLset_loading_state(0);
  }
  ~Hdf5ReaderSettings() {
    H5PLset_loading_state(plugins_);
    H5Eset_auto2(H5E_DEFAULT, function_, data_);
  }
  Hdf5ReaderSettings(const Hdf5ReaderSettings&) = delete;
  Hdf5ReaderSettings& operator=(const Hdf5ReaderSettings&) = delete;

 private:
  H5E_auto2_t function_ = nullptr;
  void* data_ = nullptr;
  unsigned int plugins_ = 0;
};

// Debian's libhdf5 is the serial build, which is not thread-safe: one reader at a time.
std::mutex& hdf5_mutex() {
  static std::mutex mutex;
  return mutex;
}

// An HDF5 identifier closed by `close` (H5Fclose, H5Oclose, ...) when it goes.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, -1)), close_(other.close_) {}
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// Bounds on what a list-of-names attribute may hold (Keras keeps each chunk under
// 64 KiB; these are far above that and far below a harmful allocation).
constexpr hssize_t kMaxNames = 1 << 20;
constexpr std::size_t kMaxNameBytes = 1 << 16;
constexpr std::size_t kMaxAttributeBytes = std::size_t{64} << 20;
// The largest logical size a chunked (possibly compressed) dataset may claim per
// byte of file: deflate peaks near 1032:1.
constexpr std::uint64_t kMaxCompressionRatio = 2048;
constexpr int kMaxChunkedNames = 1 << 16;

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  std::map<std::string, Tensor> load() {
    file_size_ = InputFile(path_).size();  // IOError for a missing or unreadable file
    if (H5Fis_hdf5(path_.c_str()) <= 0)
      throw IOError(fmt::format("load_keras_h5: {} is not an HDF5 file (no HDF5 signature; truncated or another "
                                "format?)",
                                path_));
    Handle file(H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    if (!file.ok())
      throw IOError(fmt::format("load_keras_h5: cannot open {} as HDF5 (damaged or truncated file)", path_));

    Handle root = open_object(file.get(), "/", H5I_GROUP, "the root group");
    std::string where = "/";
    std::optional<Handle> model_weights;
    hid_t weights_group = root.get();
    if (!has_names(weights_group, "layer_names")) {
      if (H5Lexists(root.get(), "model_weights", H5P_DEFAULT) <= 0)
        throw ValueError(fmt::format("load_keras_h5: {} is not a Keras 2 weights file: neither its root nor a "
                                     "'model_weights' group has a 'layer_names' attribute",
                                     path_));
      model_weights.emplace(open_object(root.get(), "model_weights", H5I_GROUP, "group 'model_weights'"));
      weights_group = model_weights->get();
      where = "/model_weights/";
      if (!has_names(weights_group, "layer_names"))
        throw ValueError(fmt::format("load_keras_h5: {}: group 'model_weights' has no 'layer_names' attribute", path_));
    }

    std::map<std::string, Tensor> out;
    std::vector<std::string> layers = read_names(weights_group, "layer_names", where);
    if (H5Lexists(weights_group, "top_level_model_weights", H5P_DEFAULT) > 0)
      layers.emplace_back("top_level_model_weights");
    std::set<std::string> seen_layers;
    for (const std::string& layer : layers) {
      if (!seen_layers.insert(layer).second)
        throw ValueError(fmt::format("load_keras_h5: {}: layer '{}' is listed twice in {}layer_names", path_, layer,
                                     where));
      const std::string layer_path = where + layer;
      Handle group = open_object(weights_group, layer, H5I_GROUP, fmt::format("layer group '{}'", layer_path));
      for (const std::string& weight : read_names(group.get(), "weight_names", layer_path + "/")) {
        const std::string key = keras_h5_key(layer, weight);
        const std::string dataset_path = layer_path + "/" + weight;
        if (out.count(key))
          throw ValueError(fmt::format("load_keras_h5: {}: weight '{}' of layer '{}' gives the key '{}' a second time",
                                       path_, weight, layer, key));
        out.emplace(key, read_dataset(group.get(), weight, dataset_path));
      }
    }
    return out;
  }

 private:
  Handle open_object(hid_t location, const std::string& name, H5I_type_t expected, const std::string& what) {
    if (name.empty() || name.find('\0') != std::string::npos)
      throw ValueError(fmt::format("load_keras_h5: {}: {} has an empty or invalid name", path_, what));
    Handle object(H5Oopen(location, name.c_str(), H5P_DEFAULT), H5Oclose);
    if (!object.ok())
      throw ValueError(fmt::format("load_keras_h5: {}: {} is listed but missing from the file", path_, what));
    if (H5Iget_type(object.get()) != expected)
      throw ValueError(fmt::format("load_keras_h5: {}: {} is not {}", path_, what,
                                   expected == H5I_GROUP ? "a group" : "a dataset"));
    return object;
  }

  static bool has_attribute(hid_t object, const std::string& name) { return H5Aexists(object, name.c_str()) > 0; }

  static bool has_names(hid_t object, const std::string& name) {
    return has_attribute(object, name) || has_attribute(object, name + "0");
  }

  // load_attributes_from_hdf5_group: `name`, or else `name0`, `name1`, ... in order.
  std::vector<std::string> read_names(hid_t object, const std::string& name, const std::string& where) {
    if (has_attribute(object, name)) return read_string_attribute(object, name, where);
    std::vector<std::string> names;
    for (int chunk = 0; chunk < kMaxChunkedNames; ++chunk) {
      const std::string chunk_name = name + std::to_string(chunk);
      if (!has_attribute(object, chunk_name)) return names;
      for (auto& n : read_string_attribute(object, chunk_name, where)) names.push_back(std::move(n));
      if (static_cast<hssize_t>(names.size()) > kMaxNames)
        throw ValueError(fmt::format("load_keras_h5: {}: attribute {} of {} lists more than {} names", path_, name,
                                     where, kMaxNames));
    }
    throw ValueError(fmt::format("load_keras_h5: {}: attribute {} of {} has more than {} chunks", path_, name, where,
                                 kMaxChunkedNames));
  }

  // A 1-d attribute of fixed-length strings (numpy bytes, as h5py writes Keras's
  // lists). An empty attribute of any type (h5py writes
  // np.asarray([]), float64, for a layer without weights) is an empty list.
  std::vector<std::string> read_string_attribute(hid_t object, const std::string& name, const std::string& where) {
    const std::string what = fmt::format("attribute '{}' of {}", name, where);
    Handle attribute(H5Aopen(object, name.c_str(), H5P_DEFAULT), H5Aclose);
    if (!attribute.ok()) throw IOError(fmt::format("load_keras_h5: {}: cannot open {}", path_, what));
    Handle space(H5Aget_space(attribute.get()), H5Sclose);
    Handle type(H5Aget_type(attribute.get()), H5Tclose);
    if (!space.ok() || !type.ok()) throw IOError(fmt::format("load_keras_h5: {}: cannot read {}", path_, what));
    const hssize_t count = H5Sget_simple_extent_npoints(space.get());
    if (count < 0) throw IOError(fmt::format("load_keras_h5: {}: cannot read the size of {}", path_, what));
    if (count == 0) return {};
    if (H5Sget_simple_extent_ndims(space.get()) != 1)
      throw ValueError(fmt::format("load_keras_h5: {}: {} must be a 1-d list of names", path_, what));
    if (count > kMaxNames)
      throw ValueError(fmt::format("load_keras_h5: {}: {} lists {} names, more than {}", path_, what, count,
                                   kMaxNames));
    if (H5Tget_class(type.get()) != H5T_STRING)
      throw ValueError(fmt::format("load_keras_h5: {}: {} is not a list of strings", path_, what));
    const auto n = static_cast<std::size_t>(count);
    std::vector<std::string> names;
    names.reserve(n);
    // Keras writes numpy bytes arrays, which h5py stores as fixed-length strings.
    // Variable-length strings live in the global heap, whose claimed sizes libhdf5
    // 1.10 allocates before checking them against the file (a 14 KiB file made it
    // allocate and fill 4 GiB); they are not Keras's layout, so they are refused.
    if (H5Tis_variable_str(type.get()) != 0)
      throw ValueError(fmt::format("load_keras_h5: {}: {} holds variable-length strings; Keras 2 writes fixed-length "
                                   "ones (numpy bytes)",
                                   path_, what));
    const std::size_t size = H5Tget_size(type.get());
    if (size == 0 || size > kMaxNameBytes || n * size > kMaxAttributeBytes)
      throw ValueError(fmt::format("load_keras_h5: {}: {} has strings of {} bytes", path_, what, size));
    Handle memory(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(memory.get(), size);
    H5Tset_strpad(memory.get(), H5T_STR_NULLPAD);
    H5Tset_cset(memory.get(), H5Tget_cset(type.get()));
    std::vector<char> buffer(n * size);
    if (H5Aread(attribute.get(), memory.get(), buffer.data()) < 0)
      throw IOError(fmt::format("load_keras_h5: {}: cannot read {}", path_, what));
    for (std::size_t i = 0; i < n; ++i) {
      const char* s = buffer.data() + i * size;
      names.emplace_back(s, strnlen(s, size));
    }
    return names;
  }

  // The xgrad dtype of an HDF5 dataset type and the memory type HDF5 converts it to
  // (float16 is read as float and rounded back, exactly).
  struct Layout {
    DType dtype;
    hid_t memory_type;
  };

  Layout layout_of(hid_t type, const std::string& what) {
    const H5T_class_t type_class = H5Tget_class(type);
    const std::size_t size = H5Tget_size(type);
    if (type_class == H5T_FLOAT) {
      if (size == 2) return {DType::Float16, H5T_NATIVE_FLOAT};
      if (size == 4) return {DType::Float32, H5T_NATIVE_FLOAT};
      if (size == 8) return {DType::Float64, H5T_NATIVE_DOUBLE};
    } else if (type_class == H5T_INTEGER && H5Tget_sign(type) == H5T_SGN_2) {
      if (size == 4) return {DType::Int32, H5T_NATIVE_INT32};
      if (size == 8) return {DType::Int64, H5T_NATIVE_INT64};
    } else if (type_class == H5T_ENUM && size == 1 && H5Tget_nmembers(type) == 2) {
      // h5py's bool: enum {FALSE = 0, TRUE = 1} over int8.
      signed char false_value = -1, true_value = -1;
      if (H5Tenum_valueof(type, "FALSE", &false_value) >= 0 && H5Tenum_valueof(type, "TRUE", &true_value) >= 0 &&
          false_value == 0 && true_value == 1)
        return {DType::Bool, H5T_NATIVE_SCHAR};
    }
    const char* names[] = {"integer", "float", "time", "string", "bitfield", "opaque", "compound", "reference",
                           "enum",    "vlen",  "array"};
    const std::string class_name = type_class >= 0 && type_class < static_cast<int>(std::size(names))
                                       ? names[type_class]
                                       : "unknown";
    const bool is_unsigned = type_class == H5T_INTEGER && H5Tget_sign(type) == H5T_SGN_NONE;
    throw DTypeError(fmt::format("load_keras_h5: {}: dataset {} has HDF5 type {}{} of {} bytes; xgrad reads float16, "
                                 "float32, float64, int32, int64 and h5py's bool",
                                 path_, what, is_unsigned ? "unsigned " : "", class_name, size));
  }

  Tensor read_dataset(hid_t group, const std::string& name, const std::string& what) {
    Handle dataset = open_object(group, name, H5I_DATASET, fmt::format("dataset {}", what));
    Handle type(H5Dget_type(dataset.get()), H5Tclose);
    Handle space(H5Dget_space(dataset.get()), H5Sclose);
    if (!type.ok() || !space.ok())
      throw IOError(fmt::format("load_keras_h5: {}: cannot read the type or shape of dataset {}", path_, what));
    const Layout layout = layout_of(type.get(), what);

    const H5S_class_t space_class = H5Sget_simple_extent_type(space.get());
    if (space_class != H5S_SIMPLE && space_class != H5S_SCALAR)
      throw ValueError(fmt::format("load_keras_h5: {}: dataset {} has no shape (null dataspace)", path_, what));
    const int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0 || rank > H5S_MAX_RANK)
      throw ValueError(fmt::format("load_keras_h5: {}: dataset {} has an invalid rank", path_, what));
    std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
    if (rank > 0 && H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0)
      throw IOError(fmt::format("load_keras_h5: {}: cannot read the shape of dataset {}", path_, what));
    Shape shape;
    std::uint64_t count = 1;
    for (hsize_t d : dims) {
      if (d > static_cast<hsize_t>(std::numeric_limits<std::int64_t>::max()) ||
          __builtin_mul_overflow(count, static_cast<std::uint64_t>(d), &count))
        throw ValueError(fmt::format("load_keras_h5: {}: dataset {} claims an impossible shape", path_, what));
      shape.push_back(static_cast<std::int64_t>(d));
    }
    const std::uint64_t element = H5Tget_size(type.get());
    std::uint64_t bytes = 0;
    if (__builtin_mul_overflow(count, element, &bytes))
      throw ValueError(fmt::format("load_keras_h5: {}: dataset {} claims an impossible size", path_, what));
    check_stored_size(dataset.get(), bytes, shape, what);

    Tensor out = empty(shape, layout.dtype);
    if (count == 0) return out;
    herr_t status = 0;
    if (layout.dtype == DType::Float16) {
      std::vector<float> buffer(static_cast<std::size_t>(count));
      status = H5Dread(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data());
      half* dst = out.data<half>();
      for (std::size_t i = 0; i < buffer.size(); ++i) dst[i] = half(buffer[i]);
    } else if (layout.dtype == DType::Bool) {
      std::vector<signed char> buffer(static_cast<std::size_t>(count));
      Handle memory(H5Tcopy(type.get()), H5Tclose);
      status = H5Dread(dataset.get(), memory.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data());
      bool* dst = out.data<bool>();
      for (std::size_t i = 0; i < buffer.size(); ++i) {
        if (status >= 0 && buffer[i] != 0 && buffer[i] != 1)
          throw ValueError(fmt::format("load_keras_h5: {}: bool dataset {} holds the value {}", path_, what,
                                       static_cast<int>(buffer[i])));
        dst[i] = buffer[i] == 1;
      }
    } else {
      void* dst = layout.dtype == DType::Float32   ? static_cast<void*>(out.data<float>())
                  : layout.dtype == DType::Float64 ? static_cast<void*>(out.data<double>())
                  : layout.dtype == DType::Int32   ? static_cast<void*>(out.data<std::int32_t>())
                                                   : static_cast<void*>(out.data<std::int64_t>());
      status = H5Dread(dataset.get(), layout.memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst);
    }
    if (status < 0)
      throw IOError(fmt::format("load_keras_h5: {}: cannot read dataset {} (damaged or truncated file)", path_,
                                what));
    return out;
  }

  // The data a dataset claims must be in the file before a buffer of that size is
  // allocated: contiguous data lies within the file; chunked data may be compressed,
  // but not beyond any real codec's ratio.
  void check_stored_size(hid_t dataset, std::uint64_t bytes, const Shape& shape, const std::string& what) {
    if (bytes == 0) return;
    Handle plist(H5Dget_create_plist(dataset), H5Pclose);
    if (!plist.ok())
      throw IOError(fmt::format("load_keras_h5: {}: cannot read the layout of dataset {}", path_, what));
    const H5D_layout_t layout = H5Pget_layout(plist.get());
    if (H5Pget_external_count(plist.get()) != 0)
      throw ValueError(fmt::format("load_keras_h5: {}: dataset {} keeps its data in external files, which xgrad "
                                   "does not open",
                                   path_, what));
    const std::string claim = fmt::format("dataset {} of shape {} ({} bytes)", what, shape_str(shape), bytes);
    if (layout == H5D_CONTIGUOUS) {
      const haddr_t offset = H5Dget_offset(dataset);
      if (offset == HADDR_UNDEF)
        throw ValueError(fmt::format("load_keras_h5: {}: {} has no data stored", path_, claim));
      if (offset > file_size_ || bytes > file_size_ - offset)
        throw IOError(fmt::format("load_keras_h5: {}: {} at offset {} runs past the end of the {}-byte file "
                                  "(truncated?)",
                                  path_, claim, offset, file_size_));
    } else if (layout == H5D_CHUNKED) {
      if (bytes / kMaxCompressionRatio > file_size_)
        throw ValueError(fmt::format("load_keras_h5: {}: {} is larger than a {}-byte file can hold", path_, claim,
                                     file_size_));
    } else if (layout == H5D_COMPACT) {
      if (bytes > file_size_)
        throw IOError(fmt::format("load_keras_h5: {}: {} is larger than the {}-byte file", path_, claim, file_size_));
    } else {
      throw ValueError(fmt::format("load_keras_h5: {}: {} has a storage layout xgrad does not read (virtual or "
                                   "external)",
                                   path_, claim));
    }
  }

  std::string path_;
  std::uint64_t file_size_ = 0;
};

}  // namespace

std::map<std::string, Tensor> load_keras_h5(const std::string& path) {
  const std::lock_guard lock(hdf5_mutex());
  const Hdf5ReaderSettings settings;
  return Reader(path).load();
}

}  // namespace xgrad
