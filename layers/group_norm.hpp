// GroupNorm (flax.linen.GroupNorm): the channels (last axis) split into groups;
// each example's group is normalised over every non-batch axis. The first axis is
// the batch axis.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "layers/initializers.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

// Designated initializers name the fields in this order: num_groups, group_size, epsilon, dtype,
//   param_dtype, use_bias, use_scale, bias_init, scale_init, use_fast_variance.
struct GroupNormOptions {
  std::optional<std::int64_t> num_groups = 32;  // exactly one of num_groups and group_size
  std::optional<std::int64_t> group_size = std::nullopt;
  double epsilon = 1e-6;
  std::optional<DType> dtype = std::nullopt;
  DType param_dtype = DType::Float32;
  bool use_bias = true;
  bool use_scale = true;
  Initializer bias_init = initializers::zeros();
  Initializer scale_init = initializers::ones();
  bool use_fast_variance = true;
};

// Parameters: scale and bias [channels].
class GroupNorm : public Module {
 public:
  explicit GroupNorm(GroupNormOptions options = {});
  std::string describe() const override;  // "GroupNorm, num_groups=32" or "GroupNorm, group_size=4"
  const GroupNormOptions& options() const { return options_; }

 protected:
  Tensor forward(const Tensor& x) override;

 private:
  GroupNormOptions options_;
};

}  // namespace xgrad::nn
