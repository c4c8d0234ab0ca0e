#include "layers/group_norm.hpp"

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "layers/norm_stats.hpp"

namespace xgrad::nn {

GroupNorm::GroupNorm(GroupNormOptions options) : options_(std::move(options)) {
  if (options_.num_groups.has_value() == options_.group_size.has_value())
    throw ValueError(
        "Either `num_groups` or `group_size` should be specified. If `group_size` is to be specified, pass "
        "`.num_groups = std::nullopt` to override the default `num_groups` value of 32.");
  bind_dtype_options(options_.dtype, options_.param_dtype);
}

std::string GroupNorm::describe() const {
  return options_.num_groups ? fmt::format("GroupNorm, num_groups={}", *options_.num_groups)
                             : fmt::format("GroupNorm, group_size={}", *options_.group_size);
}

NormStats GroupNorm::group_stats(const Tensor& x) const {
  if (x.dim() < 2)
    throw ShapeError(fmt::format("input {} needs a batch axis and a channel axis", shape_str(x.shape())));
  const std::int64_t channels = x.size(-1);
  std::int64_t groups = 0;
  if (options_.group_size) {
    if (*options_.group_size <= 0 || channels % *options_.group_size != 0)
      throw ValueError(fmt::format("Number of channels ({}) is not multiple of the group size ({}).", channels,
                                   *options_.group_size));
    groups = channels / *options_.group_size;
  } else {
    groups = *options_.num_groups;
  }
  if (groups <= 0 || channels % groups != 0)
    throw ValueError(
        fmt::format("Number of groups ({}) does not divide the number of channels ({}).", groups, channels));

  // Statistics on [batch, ..., groups, group_size] over every axis but batch and
  // groups, repeated back to the channels.
  Shape grouped = x.shape();
  grouped.back() = groups;
  grouped.push_back(channels / groups);
  std::vector<std::int64_t> axes;
  for (std::int64_t a = 1; a < x.dim() - 1; ++a) axes.push_back(a);
  axes.push_back(x.dim());
  const NormStats grouped_stats =
      compute_stats(reshape(x, grouped), axes, options_.dtype, true, options_.use_fast_variance);
  Shape stats_grouped(static_cast<std::size_t>(x.dim()) + 1, 1);
  stats_grouped.front() = x.size(0);
  stats_grouped[static_cast<std::size_t>(x.dim()) - 1] = groups;
  stats_grouped.back() = channels / groups;
  Shape stats_shape(static_cast<std::size_t>(x.dim()), 1);
  stats_shape.front() = x.size(0);
  stats_shape.back() = channels;
  auto repeat = [&](const Tensor& t) { return reshape(broadcast_to(t, stats_grouped), stats_shape); };
  return NormStats{repeat(grouped_stats.mean), repeat(grouped_stats.var)};
}

Tensor GroupNorm::forward(const Tensor& x) {
  const NormStats stats = group_stats(x);
  const std::int64_t channels = x.size(-1);
  const std::vector<std::int64_t> features{x.dim() - 1};
  const Tensor scale =
      options_.use_scale ? param("scale", {channels}, options_.scale_init, options_.param_dtype) : Tensor();
  const Tensor bias = options_.use_bias ? param("bias", {channels}, options_.bias_init, options_.param_dtype) : Tensor();
  return normalize(x, stats, scale, bias, broadcast_feature_shape(x.shape(), features), options_.epsilon,
                   options_.dtype);
}

std::optional<StateDict> GroupNorm::per_example_param_grads(const Tensor& x, const Tensor&, const Tensor& g) const {
  if (!options_.use_scale && !options_.use_bias) return std::nullopt;
  // The axes between the batch and the channels: summed within each example.
  Axes summed;
  for (std::int64_t a = 1; a + 1 < x.dim(); ++a) summed.push_back(a);
  const auto sum_per_example = [&](const Tensor& t) { return summed.empty() ? t : sum(t, summed); };
  StateDict out;
  if (options_.use_scale) {
    const std::vector<std::int64_t> features{x.dim() - 1};
    const Tensor normalized = cast(normalize(x, group_stats(x), Tensor(), Tensor(),
                                             broadcast_feature_shape(x.shape(), features), options_.epsilon,
                                             options_.dtype),
                                   g.dtype());
    out["scale"] = cast(sum_per_example(g * normalized), find_parameter("scale").dtype());
  }
  if (options_.use_bias) out["bias"] = cast(sum_per_example(g), find_parameter("bias").dtype());
  return out;
}

}  // namespace xgrad::nn
