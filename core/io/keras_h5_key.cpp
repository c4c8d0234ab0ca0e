// The key rule of load_keras_h5 (core/io/keras_h5.hpp), built with or without libhdf5.
#include "core/io/keras_h5.hpp"

namespace xgrad {

std::string keras_h5_key(const std::string& layer_name, const std::string& weight_name) {
  std::string name = weight_name;
  // ":<digits>" at the end: TensorFlow's output index.
  const auto colon = name.rfind(':');
  if (colon != std::string::npos && colon + 1 < name.size() &&
      name.find_first_not_of("0123456789", colon + 1) == std::string::npos)
    name.erase(colon);
  const std::string prefix = layer_name + "/";
  if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0) name.erase(0, prefix.size());
  for (char& c : name)
    if (c == '/') c = '.';
  return layer_name + "." + name;
}

}  // namespace xgrad
