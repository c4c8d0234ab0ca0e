// load_keras_h5 in a build without libhdf5 (meson -Dhdf5=disabled, or libhdf5-dev
// absent): a typed error that says how to get the reader.
#include <fmt/format.h>

#include "core/error.hpp"
#include "core/io/keras_h5.hpp"

namespace xgrad {

std::map<std::string, Tensor> load_keras_h5(const std::string& path) {
  throw NotImplementedError(fmt::format("load_keras_h5: cannot read {}: this xgrad was built without libhdf5 "
                                        "(install libhdf5-dev and rebuild with meson -Dhdf5=enabled)",
                                        path));
}

}  // namespace xgrad
