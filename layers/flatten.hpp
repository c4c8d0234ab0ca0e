// Flatten: merges axes start_axis..end_axis into one (torch.nn.Flatten; Flax
// writes x.reshape((x.shape[0], -1)) inline). The default keeps the batch axis.
#pragma once

#include <cstdint>
#include <string>

#include "layers/module.hpp"

namespace xgrad::nn {

// Designated initializers name the fields in this order: start_axis, end_axis.
struct FlattenOptions {
  std::int64_t start_axis = 1;
  std::int64_t end_axis = -1;
};

class Flatten : public Module {
 public:
  explicit Flatten(FlattenOptions options = {}) : options_(options) {}
  std::string describe() const override { return "Flatten"; }

 protected:
  Tensor forward(const Tensor& x) override;

 private:
  FlattenOptions options_;
};

}  // namespace xgrad::nn
