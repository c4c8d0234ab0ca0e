// The networks the benchmarks share (each has a libtorch twin in models_torch_twin.cpp).
#pragma once

#include <memory>

#include "xgrad.hpp"

namespace xgrad::bench {

// The layers as modules, as a user writes them (Keras/PyTorch style): a Sequential then
// runs a Conv, its ReLU and its MaxPool as one pass (nn::MaxPoolFusion), as it does for
// users; libtorch's eager twin runs the three ops.
inline std::shared_ptr<nn::Module> relu_layer() { return std::make_shared<nn::ReLU>(); }

inline std::shared_ptr<nn::Module> pool2() {
  return std::make_shared<nn::MaxPool>(nn::PoolOptions{.window_shape = {2, 2}, .strides = {2, 2}});
}

// conv3x3(1→16) relu maxpool2 → conv3x3(16→32) relu maxpool2 → dense(800→10), VALID.
inline std::shared_ptr<nn::Module> make_cnn() {
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv>(nn::ConvOptions{.features = 16, .kernel_size = {3, 3}, .padding = "VALID"}),
      relu_layer(), pool2(),
      std::make_shared<nn::Conv>(nn::ConvOptions{.features = 32, .kernel_size = {3, 3}, .padding = "VALID"}),
      relu_layer(), pool2(), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Dense>(nn::DenseOptions{.features = 10})});
}

}  // namespace xgrad::bench
