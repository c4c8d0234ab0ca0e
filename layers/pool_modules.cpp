#include "layers/pool_modules.hpp"

#include <fmt/format.h>

#include "layers/pooling.hpp"

namespace xgrad::nn {

namespace {

std::string describe_pool(const char* name, const PoolOptions& o) {
  return fmt::format("{}, window_shape={}, strides={}, padding={}", name, shape_str(o.window_shape),
                     o.strides.empty() ? "1" : shape_str(o.strides), o.padding.to_string());
}

}  // namespace

std::string MaxPool::describe() const { return describe_pool("MaxPool", options_); }
Tensor MaxPool::forward(const Tensor& x) {
  return max_pool(x, options_.window_shape, options_.strides, options_.padding);
}

std::string MinPool::describe() const { return describe_pool("MinPool", options_); }
Tensor MinPool::forward(const Tensor& x) {
  return min_pool(x, options_.window_shape, options_.strides, options_.padding);
}

std::string AvgPool::describe() const { return describe_pool("AvgPool", options_); }
Tensor AvgPool::forward(const Tensor& x) {
  return avg_pool(x, options_.window_shape, options_.strides, options_.padding, options_.count_include_pad);
}

}  // namespace xgrad::nn
