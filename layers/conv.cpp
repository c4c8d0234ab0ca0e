#include "layers/conv.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "layers/conv_plan.hpp"

namespace xgrad::nn {

ConvBase::ConvBase(ConvOptions options, bool shared_weights)
    : options_(std::move(options)), shared_weights_(shared_weights) {
  check_conv_layer_options(layer_name(), ConvLayerKind::Conv, options_.features,
                           {options_.kernel_size.begin(), options_.kernel_size.end()},
                           {{"strides", options_.strides.values},
                            {"input_dilation", options_.input_dilation.values},
                            {"kernel_dilation", options_.kernel_dilation.values}},
                           options_.padding);
  if (options_.feature_group_count < 1)
    throw ValueError(fmt::format("{}: feature_group_count must be >= 1, got {}", layer_name(), options_.feature_group_count));
  bind_dtype_options(options_.dtype, options_.param_dtype);
}

std::string ConvBase::describe() const {
  return fmt::format("{}, features={}, kernel_size=[{}]", layer_name(), options_.features,
                     fmt::join(options_.kernel_size, ", "));
}

Tensor ConvBase::forward(const Tensor& x) {
  const ConvSpec spec{.features = options_.features,
                      .kernel_size = {options_.kernel_size.begin(), options_.kernel_size.end()},
                      .strides = options_.strides.values,
                      .padding = options_.padding,
                      .input_dilation = options_.input_dilation.values,
                      .kernel_dilation = options_.kernel_dilation.values,
                      .feature_group_count = options_.feature_group_count,
                      .shared_weights = shared_weights_};
  const std::optional<Shape> mask_shape =
      options_.mask ? std::optional<Shape>(options_.mask->shape()) : std::nullopt;
  // Every upstream check runs here, before any parameter exists (docs/convlocal.md §2.4).
  const ConvPlan plan = plan_conv(x.shape(), spec, mask_shape, layer_name());
  const Tensor kernel = param("kernel", plan.kernel_shape, options_.kernel_init, options_.param_dtype,
                              shared_weights_ ? "input channels changed?" : "input spatial size changed?");
  std::optional<Tensor> bias;
  if (options_.use_bias) bias = param("bias", plan.bias_shape, options_.bias_init, options_.param_dtype);
  return conv_apply(plan, x, kernel, bias, options_.mask, options_.dtype, options_.precision);
}

}  // namespace xgrad::nn
