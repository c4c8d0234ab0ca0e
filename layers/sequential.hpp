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

class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential(std::initializer_list<std::shared_ptr<Module>> layers);

  Sequential& add(std::shared_ptr<Module> layer);  // named layers_<index>
  Sequential& add(const std::string& name, std::shared_ptr<Module> layer);

  std::size_t size() const { return layers_.size(); }
  Module& operator[](std::size_t index) const { return *layers_.at(index); }

 protected:
  Tensor forward(const Tensor& input) override;

 private:
  std::vector<std::shared_ptr<Module>> layers_;
};

// A parameter-free module wrapping a function, so activations, pooling or
// reshapes can sit in a Sequential. `name` is what describe() reports.
class Lambda : public Module {
 public:
  Lambda(std::string name, std::function<Tensor(const Tensor&)> function)
      : name_(std::move(name)), function_(std::move(function)) {}
  std::string describe() const override { return name_; }

 protected:
  Tensor forward(const Tensor& input) override { return function_(input); }

 private:
  std::string name_;
  std::function<Tensor(const Tensor&)> function_;
};

}  // namespace xgrad::nn
