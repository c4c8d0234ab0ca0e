// load_keras_h5 on xgrad's own HDF5 subset reader (core/io/hdf5_reader.hpp): Keras 2's
// layout on top, the bounds-checked HDF5 structures below. Every size is checked
// against the file (and the reader's decode budget) before a buffer is allocated.
#include "core/io/keras_h5.hpp"

#include <cstring>
#include <limits>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/io/hdf5_reader.hpp"
#include "core/io/tensor_bytes.hpp"

namespace xgrad {

namespace {

// Bounds on what a list-of-names attribute may hold (Keras keeps each chunk under
// 64 KiB; these are far above that and far below a harmful allocation).
constexpr std::uint64_t kMaxNames = 1 << 20;
constexpr int kMaxChunkedNames = 1 << 16;

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)), file_(path_, "load_keras_h5: " + path_) {}

  std::map<std::string, Tensor> load() {
    const hdf5::Object& root = file_.root();
    if (root.kind != hdf5::ObjectKind::Group) damaged("the root object is not a group");
    std::string where = "/";
    const hdf5::Object* weights_group = &root;
    if (!has_names(root, "layer_names", where)) {
      const auto model_weights = file_.find(root, "model_weights", "group '/model_weights'");
      if (!model_weights)
        throw ValueError(fmt::format("load_keras_h5: {} is not a Keras 2 weights file: neither its root nor a "
                                     "'model_weights' group has a 'layer_names' attribute",
                                     path_));
      weights_group = &open_object(root, "model_weights", hdf5::ObjectKind::Group, "group 'model_weights'");
      where = "/model_weights/";
      if (!has_names(*weights_group, "layer_names", where))
        throw ValueError(fmt::format("load_keras_h5: {}: group 'model_weights' has no 'layer_names' attribute", path_));
    }

    std::map<std::string, Tensor> out;
    std::vector<std::string> layers = read_names(*weights_group, "layer_names", where);
    if (file_.find(*weights_group, "top_level_model_weights", where + "top_level_model_weights"))
      layers.emplace_back("top_level_model_weights");
    std::set<std::string> seen_layers;
    for (const std::string& layer : layers) {
      if (!seen_layers.insert(layer).second)
        throw ValueError(fmt::format("load_keras_h5: {}: layer '{}' is listed twice in {}layer_names", path_, layer,
                                     where));
      const std::string layer_path = where + layer;
      const hdf5::Object& group =
          open_object(*weights_group, layer, hdf5::ObjectKind::Group, fmt::format("layer group '{}'", layer_path));
      for (const std::string& weight : read_names(group, "weight_names", layer_path + "/")) {
        const std::string key = keras_h5_key(layer, weight);
        const std::string dataset_path = layer_path + "/" + weight;
        if (out.count(key))
          throw ValueError(fmt::format("load_keras_h5: {}: weight '{}' of layer '{}' gives the key '{}' a second time",
                                       path_, weight, layer, key));
        out.emplace(key, read_dataset(group, weight, dataset_path));
      }
    }
    return out;
  }

 private:
  [[noreturn]] void damaged(const std::string& why) const {
    throw IOError(fmt::format("load_keras_h5: {}: damaged HDF5 file: {}", path_, why));
  }

  const hdf5::Object& open_object(const hdf5::Object& location, const std::string& name, hdf5::ObjectKind expected,
                                  const std::string& what) {
    if (name.empty() || name.find('\0') != std::string::npos)
      throw ValueError(fmt::format("load_keras_h5: {}: {} has an empty or invalid name", path_, what));
    const auto address = file_.find(location, name, what);
    if (!address)
      throw ValueError(fmt::format("load_keras_h5: {}: {} is listed but missing from the file", path_, what));
    const hdf5::Object& object = file_.object(*address);
    if (object.kind != expected)
      throw ValueError(fmt::format("load_keras_h5: {}: {} is not {}", path_, what,
                                   expected == hdf5::ObjectKind::Group ? "a group" : "a dataset"));
    return object;
  }

  bool has_names(const hdf5::Object& object, const std::string& name, const std::string& where) const {
    return file_.has_attribute(object, name, where) || file_.has_attribute(object, name + "0", where);
  }

  // load_attributes_from_hdf5_group: `name`, or else `name0`, `name1`, ... in order.
  std::vector<std::string> read_names(const hdf5::Object& object, const std::string& name, const std::string& where) {
    if (file_.has_attribute(object, name, where)) return read_string_attribute(object, name, where);
    std::vector<std::string> names;
    for (int chunk = 0; chunk < kMaxChunkedNames; ++chunk) {
      const std::string chunk_name = name + std::to_string(chunk);
      if (!file_.has_attribute(object, chunk_name, where)) return names;
      for (auto& n : read_string_attribute(object, chunk_name, where)) names.push_back(std::move(n));
      if (names.size() > kMaxNames)
        throw ValueError(fmt::format("load_keras_h5: {}: attribute {} of {} lists more than {} names", path_, name,
                                     where, kMaxNames));
    }
    throw ValueError(fmt::format("load_keras_h5: {}: attribute {} of {} has more than {} chunks", path_, name, where,
                                 kMaxChunkedNames));
  }

  // A 1-d attribute of strings: fixed-length (numpy bytes, as h5py writes Keras's
  // lists) or variable-length (h5py's str), decoded as Keras does. An empty
  // attribute of any type (h5py writes np.asarray([]), float64, for a layer without
  // weights) is an empty list.
  std::vector<std::string> read_string_attribute(const hdf5::Object& object, const std::string& name,
                                                 const std::string& where) {
    const std::string what = fmt::format("attribute '{}' of {}", name, where);
    const hdf5::Attribute& attribute = object.attributes.at(name);
    if (attribute.space.count == 0) return {};
    if (attribute.space.dims.size() != 1)
      throw ValueError(fmt::format("load_keras_h5: {}: {} must be a 1-d list of names", path_, what));
    if (attribute.space.count > kMaxNames)
      throw ValueError(fmt::format("load_keras_h5: {}: {} lists {} names, more than {}", path_, what,
                                   attribute.space.count, kMaxNames));
    return file_.read_strings(attribute, what);
  }

  // The xgrad dtype of an HDF5 dataset type; DTypeError naming the dataset otherwise.
  DType dtype_of(const hdf5::Datatype& type, const std::string& what) {
    using hdf5::TypeClass;
    if (type.type_class == TypeClass::Float && type.ieee) {
      if (type.size == 2) return DType::Float16;
      if (type.size == 4) return DType::Float32;
      if (type.size == 8) return DType::Float64;
    } else if (type.type_class == TypeClass::FixedPoint && type.is_signed && type.whole) {
      if (type.size == 4) return DType::Int32;
      if (type.size == 8) return DType::Int64;
    } else if (type.type_class == TypeClass::Enum && type.size == 1 && type.base && type.members.size() == 2) {
      // h5py's bool: enum {FALSE = 0, TRUE = 1} over int8.
      std::map<std::string, std::int64_t> members(type.members.begin(), type.members.end());
      if (members.count("FALSE") && members.count("TRUE") && members["FALSE"] == 0 && members["TRUE"] == 1)
        return DType::Bool;
    }
    const bool is_unsigned = type.type_class == TypeClass::FixedPoint && !type.is_signed;
    throw DTypeError(fmt::format("load_keras_h5: {}: dataset {} has HDF5 type {}{} of {} bytes; xgrad reads float16, "
                                 "float32, float64, int32, int64 and h5py's bool",
                                 path_, what, is_unsigned ? "unsigned " : "", hdf5::type_class_name(type.type_class),
                                 type.size));
  }

  Tensor read_dataset(const hdf5::Object& group, const std::string& name, const std::string& what) {
    const hdf5::Object& dataset = open_object(group, name, hdf5::ObjectKind::Dataset, fmt::format("dataset {}", what));
    if (dataset.shared_type)
      throw IOError(fmt::format("load_keras_h5: {}: unsupported HDF5 feature: dataset {} has a shared (committed) "
                                "datatype or dataspace",
                                path_, what));
    if (!dataset.has_type || !dataset.has_space)
      damaged(fmt::format("dataset {} has no datatype or no dataspace message", what));
    const DType dtype = dtype_of(dataset.type, what);
    if (dataset.space.null)
      throw ValueError(fmt::format("load_keras_h5: {}: dataset {} has no shape (null dataspace)", path_, what));
    Shape shape;
    for (std::uint64_t d : dataset.space.dims) shape.push_back(static_cast<std::int64_t>(d));
    const std::uint64_t count = dataset.space.count;
    std::uint64_t bytes = 0;
    if (__builtin_mul_overflow(count, std::uint64_t{dataset.type.size}, &bytes))
      throw ValueError(fmt::format("load_keras_h5: {}: dataset {} claims an impossible size", path_, what));
    check_stored_size(dataset, bytes, shape, what);
    file_.charge(bytes, fmt::format("dataset {} ({} bytes)", what, bytes));

    Tensor out = empty(shape, dtype);
    if (count == 0) return out;
    char* dst = io_detail::tensor_bytes(out);
    file_.read_data(dataset, dst, bytes, what);
    if (dtype == DType::Bool) {
      // Both bytes of h5py's enum must be FALSE (0) or TRUE (1); a C++ bool holds only those.
      for (std::uint64_t i = 0; i < bytes; ++i)
        if (static_cast<unsigned char>(dst[i]) > 1)
          throw ValueError(fmt::format("load_keras_h5: {}: bool dataset {} holds the value {}", path_, what,
                                       static_cast<int>(static_cast<signed char>(dst[i]))));
    } else if (dataset.type.big_endian == io_detail::kNativeLittle) {
      io_detail::swap_element_bytes(dst, bytes, dataset.type.size);
    }
    return out;
  }

  // The data a dataset claims must be in the file before a buffer of that size is
  // allocated: contiguous data lies within the file; chunked data may be compressed,
  // but not beyond any real codec's ratio.
  void check_stored_size(const hdf5::Object& dataset, std::uint64_t bytes, const Shape& shape,
                         const std::string& what) {
    if (bytes == 0) return;
    if (dataset.external)
      throw ValueError(fmt::format("load_keras_h5: {}: dataset {} keeps its data in external files, which xgrad "
                                   "does not open",
                                   path_, what));
    const std::uint64_t file_size = file_.size();
    const std::string claim = fmt::format("dataset {} of shape {} ({} bytes)", what, shape_str(shape), bytes);
    if (dataset.layout_class == 1) {
      if (!dataset.data_defined)
        throw ValueError(fmt::format("load_keras_h5: {}: {} has no data stored", path_, claim));
      if (dataset.data_address > file_size || bytes > file_size - dataset.data_address)
        throw IOError(fmt::format("load_keras_h5: {}: {} at offset {} runs past the end of the {}-byte file "
                                  "(truncated?)",
                                  path_, claim, dataset.data_address, file_size));
    } else if (dataset.layout_class == 2) {
      if (bytes / hdf5::File::kMaxExpansion > file_size || bytes > file_.budget_left())
        throw ValueError(fmt::format("load_keras_h5: {}: {} is larger than a {}-byte file can hold", path_, claim,
                                     file_size));
    } else if (dataset.layout_class == 0) {
      if (bytes != dataset.compact_data.size())
        throw IOError(fmt::format("load_keras_h5: {}: {} holds {} bytes in its header", path_, claim,
                                  dataset.compact_data.size()));
    } else {
      throw ValueError(fmt::format("load_keras_h5: {}: {} has a storage layout xgrad does not read (virtual)", path_,
                                   claim));
    }
  }

  std::string path_;
  hdf5::File file_;
};

}  // namespace

std::map<std::string, Tensor> load_keras_h5(const std::string& path) { return Reader(path).load(); }

}  // namespace xgrad
