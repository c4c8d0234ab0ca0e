#include "layers/pool_modules.hpp"

#include <fmt/format.h>

#include "layers/pooling.hpp"

namespace xgrad::nn {

std::string PoolModule::describe() const {
  return fmt::format("{}, window_shape={}, strides={}, padding={}", name_, shape_str(options_.window_shape),
                     options_.strides.empty() ? "1" : shape_str(options_.strides), options_.padding.to_string());
}

Tensor MaxPool::forward(const Tensor& x) {
  return max_pool(x, options().window_shape, options().strides, options().padding);
}

Tensor MinPool::forward(const Tensor& x) {
  return min_pool(x, options().window_shape, options().strides, options().padding);
}

Tensor AvgPool::forward(const Tensor& x) {
  return avg_pool(x, options().window_shape, options().strides, options().padding, options().count_include_pad);
}

}  // namespace xgrad::nn
