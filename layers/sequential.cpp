#include "layers/sequential.hpp"

#include <fmt/format.h>

#include "core/error.hpp"

namespace xgrad::nn {

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> layers) {
  for (const auto& layer : layers) add(layer);
}

Sequential& Sequential::add(std::shared_ptr<Module> layer) {
  return add(fmt::format("layers_{}", layers_.size()), std::move(layer));
}

Sequential& Sequential::add(const std::string& name, std::shared_ptr<Module> layer) {
  if (!layer) throw ValueError(fmt::format("Sequential::add: layer '{}' is null", name));
  register_module(name, layer);
  layers_.push_back(std::move(layer));
  return *this;
}

Tensor Sequential::forward(const Tensor& input) {
  if (layers_.empty()) throw ValueError("no layers to apply");
  Tensor x = input;
  for (const auto& layer : layers_) x = (*layer)(x);
  return x;
}

}  // namespace xgrad::nn
