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

struct NormStats;  // layers/norm_stats.hpp (internal)

// Designated initializers name the fields in this order: num_groups, group_size, epsilon, dtype,
//   param_dtype, use_bias, use_scale, bias_init, scale_init, use_fast_variance.
struct GroupNormOptions {
  std::optional<std::int64_t> num_groups = 32;  // exactly one of num_groups and group_size
  std::optional<std::int64_t> group_size = std::nullopt;  // channels per group; also set num_groups = std::nullopt
  double epsilon = 1e-6;  // added to the variance before the inverse square root
  std::optional<DType> dtype = std::nullopt;  // computation dtype; empty: promoted from the input and the parameters
  DType param_dtype = DType::Float32;  // dtype of scale and bias
  bool use_bias = true;  // learn a bias per channel, initialised by bias_init
  bool use_scale = true;  // learn a scale per channel, initialised by scale_init
  Initializer bias_init = initializers::zeros();  // initializer of "bias"
  Initializer scale_init = initializers::ones();  // initializer of "scale"
  bool use_fast_variance = true;  // var = max(E[x²] − E[x]², 0), else E[(x − E[x])²]
};

// Parameters: scale and bias [channels].
class GroupNorm : public Module {
 public:
  // ValueError unless exactly one of num_groups and group_size is set.
  explicit GroupNorm(GroupNormOptions options = {});
  std::string describe() const override;  // "GroupNorm, num_groups=32" or "GroupNorm, group_size=4"
  // The options it was built with.
  const GroupNormOptions& options() const { return options_; }
  // Per example: scale = Σ g_b · x̂_b and bias = Σ g_b over the axes between batch and
  // channels, x̂ the input normalised per example and group (recomputed from the input).
  std::optional<StateDict> per_example_param_grads(const Tensor& input, const Tensor& output,
                                                   const Tensor& output_grad) const override;

 protected:
  // x of shape (batch, ..., channels) normalised per example and group, then scaled and shifted per channel.
  // ShapeError for rank < 2; ValueError if the groups do not divide the channels.
  Tensor forward(const Tensor& x) override;

 private:
  // Each example's group mean and variance, repeated over its group's channels:
  // (batch, 1, ..., channels). Checks the input's rank and the grouping.
  NormStats group_stats(const Tensor& x) const;

  GroupNormOptions options_;
};

}  // namespace xgrad::nn
