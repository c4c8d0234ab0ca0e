// Sequential: owned layers applied in order (flax.linen.Sequential). Layers added
// without a name are called layers_0, layers_1, ... as in Flax.
//
//   auto model = std::make_shared<nn::Sequential>(nn::Sequential{
//       std::make_shared<nn::Dense>(nn::DenseOptions{.features = 128}),
//       std::make_shared<nn::Lambda>("relu", [](const Tensor& x) { return nn::relu(x); }),
//       std::make_shared<nn::Dense>(nn::DenseOptions{.features = 10})});
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "layers/module.hpp"

namespace xgrad::nn {

// Applies its layers in order, each to the previous one's output (flax.linen.Sequential); the layers are its
// submodules, so their parameters appear under their names.
class Sequential : public Module {
 public:
  Sequential() = default;
  // The layers in order, named layers_0, layers_1, ...; ValueError for a null layer.
  Sequential(std::initializer_list<std::shared_ptr<Module>> layers);

  Sequential& add(std::shared_ptr<Module> layer);  // named layers_<index>
  // Appends `layer` under `name`; ValueError for a null layer or one register_module refuses.
  Sequential& add(const std::string& name, std::shared_ptr<Module> layer);

  // The number of layers.
  std::size_t size() const { return layers_.size(); }
  // The layer at `index`; std::out_of_range past the end.
  Module& operator[](std::size_t index) const { return *layers_.at(index); }

 protected:
  // The layers applied in order; ValueError when there are none.
  Tensor forward(const Tensor& input) override;

 private:
  std::vector<std::shared_ptr<Module>> layers_;
};

// A parameter-free module wrapping a function, so activations, pooling or
// reshapes can sit in a Sequential. `name` is what describe() reports.
class Lambda : public Module {
 public:
  // A module called `name` that computes function(input).
  Lambda(std::string name, std::function<Tensor(const Tensor&)> function)
      : name_(std::move(name)), function_(std::move(function)) {}
  std::string describe() const override { return name_; }

 protected:
  // function(input).
  Tensor forward(const Tensor& input) override { return function_(input); }

 private:
  std::string name_;
  std::function<Tensor(const Tensor&)> function_;
};

}  // namespace xgrad::nn
