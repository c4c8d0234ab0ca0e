// Pooling as modules, for nn::Sequential (Keras's MaxPooling2D / AveragePooling2D,
// torch.nn.MaxPool2d): each calls the function of layers/pooling.hpp (Flax's
// nn.max_pool, nn.avg_pool, nn.min_pool, which Flax modules call inline) with the
// options given here; no parameters.
//
//   nn::Sequential net{std::make_shared<nn::Conv>(nn::ConvOptions{.features = 16, .kernel_size = {3, 3}}),
//                      std::make_shared<nn::MaxPool>(nn::PoolOptions{.window_shape = {2, 2}, .strides = {2, 2}})};
//
// A Sequential runs a Conv or ConvLocal followed by a MaxPool with strides equal to its
// window and no padding (and a ReLU before or after the pool) as one pass where the
// fast kernels serve them (layers/sequential.cpp).
#pragma once

#include <string>
#include <utility>

#include "core/padding.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

// Designated initializers name the fields in this order: window_shape, strides,
// padding, count_include_pad.
struct PoolOptions {
  Shape window_shape;            // one extent per spatial dim
  Shape strides = {};            // empty: 1 along every spatial dim (as nn::max_pool)
  Padding padding = "VALID";     // "VALID", "SAME", "SAME_LOWER", ints or (lo, hi) pairs
  bool count_include_pad = true;  // AvgPool only: divide by the window size, or by its non-padding elements
};

// What MaxPool, MinPool and AvgPool share: their options and description.
class PoolModule : public Module {
 public:
  std::string describe() const override;  // "MaxPool, window_shape=[2, 2], strides=[2, 2], padding='VALID'"
  // The options it was built with.
  const PoolOptions& options() const { return options_; }

 protected:
  // Stores the options; the input is checked at each call, as the function checks it.
  PoolModule(const char* name, PoolOptions options) : name_(name), options_(std::move(options)) {}

 private:
  const char* name_;
  PoolOptions options_;
};

// nn::max_pool(x, window_shape, strides, padding).
class MaxPool : public PoolModule {
 public:
  // Stores the options (see PoolModule).
  explicit MaxPool(PoolOptions options) : PoolModule("MaxPool", std::move(options)) {}

 protected:
  // The pooled x (errors as nn::max_pool's).
  Tensor forward(const Tensor& x) override;
};

// nn::min_pool(x, window_shape, strides, padding).
class MinPool : public PoolModule {
 public:
  // Stores the options (see PoolModule).
  explicit MinPool(PoolOptions options) : PoolModule("MinPool", std::move(options)) {}

 protected:
  // The pooled x (errors as nn::min_pool's).
  Tensor forward(const Tensor& x) override;
};

// nn::avg_pool(x, window_shape, strides, padding, count_include_pad).
class AvgPool : public PoolModule {
 public:
  // Stores the options (see PoolModule).
  explicit AvgPool(PoolOptions options) : PoolModule("AvgPool", std::move(options)) {}

 protected:
  // The pooled x (errors as nn::avg_pool's).
  Tensor forward(const Tensor& x) override;
};

}  // namespace xgrad::nn
