// Flatten: merges axes start_axis..end_axis into one (torch.nn.Flatten; Flax
// writes x.reshape((x.shape[0], -1)) inline). The default keeps the batch axis.
#pragma once

#include <cstdint>
#include <string>

#include "layers/module.hpp"

namespace xgrad::nn {

// Designated initializers name the fields in this order: start_axis, end_axis.
struct FlattenOptions {
  std::int64_t start_axis = 1;  // the first axis merged; negative counts from the end
  std::int64_t end_axis = -1;   // the last axis merged (inclusive); negative counts from the end
};

// Merges a range of axes into one (see the top of this file); no parameters.
class Flatten : public Module {
 public:
  // Stores the axes; they are checked against the input at each call.
  explicit Flatten(FlattenOptions options = {}) : options_(options) {}
  std::string describe() const override { return "Flatten"; }

 protected:
  // x reshaped with axes start_axis..end_axis merged; ShapeError for an axis out of range or start after end.
  Tensor forward(const Tensor& x) override;

 private:
  FlattenOptions options_;
};

}  // namespace xgrad::nn
