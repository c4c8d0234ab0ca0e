#include "layers/conv.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autograd/conv.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "layers/conv_plan.hpp"

namespace xgrad::nn {

namespace {
thread_local MaxPoolFusion* t_max_pool_fusion = nullptr;  // the innermost live request on this thread
}  // namespace

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

ConvSpec ConvBase::spec() const {
  return {.features = options_.features,
          .kernel_size = {options_.kernel_size.begin(), options_.kernel_size.end()},
          .strides = options_.strides.values,
          .padding = options_.padding,
          .input_dilation = options_.input_dilation.values,
          .kernel_dilation = options_.kernel_dilation.values,
          .feature_group_count = options_.feature_group_count,
          .shared_weights = shared_weights_};
}

std::optional<StateDict> ConvBase::per_example_param_grads(const Tensor& x, const Tensor&, const Tensor& g) const {
  if (options_.mask || options_.feature_group_count != 1 || !is_floating(g.dtype()) || itemsize(g.dtype()) < 4)
    return std::nullopt;
  const ConvPlan plan = plan_conv(x.shape(), spec(), std::nullopt, layer_name());
  if (plan.prepad != Prepad::None || plan.batch_shape.size() != 1) return std::nullopt;
  const Tensor kernel = find_parameter("kernel");
  const std::int64_t batch = x.size(0), features = options_.features, channels = plan.in_features();
  const std::int64_t window = numel(Shape(plan.spec.kernel_size.begin(), plan.spec.kernel_size.end()));
  // (B, O..., C·S), patch entry c·S + r: exactly the operand the lax conv contracts.
  const Tensor patches =
      conv_general_dilated_patches(cast(x, g.dtype()), plan.spec.kernel_size, plan.strides, plan.lax_padding,
                                   plan.input_dilation, plan.kernel_dilation);
  StateDict out;
  if (shared_weights_) {
    // Σ over positions of patchᵀ g: one batched product [B, C·S, P] · [B, P, F], then
    // the patch axis (c, r) reordered to the kernel's (r..., c).
    const Tensor rows = reshape(patches, {batch, -1, channels * window});
    const Tensor grads = reshape(g, {batch, -1, features});
    Shape kernel_shape = plan.kernel_shape;
    kernel_shape.insert(kernel_shape.begin(), batch);
    const Tensor per_patch = reshape(matmul(swapaxes(rows, 1, 2), grads), {batch, channels, window, features});
    out["kernel"] = cast(reshape(transpose(per_patch, {0, 2, 1, 3}), kernel_shape), kernel.dtype());
    if (options_.use_bias) out["bias"] = cast(sum(grads, {1}), find_parameter("bias").dtype());
  } else {
    // A kernel per position: its gradient at (b, o) is the outer product patch ⊗ g.
    out["kernel"] = cast(unsqueeze(patches, -1) * unsqueeze(g, -2), kernel.dtype());
    if (options_.use_bias) out["bias"] = cast(g, find_parameter("bias").dtype());
  }
  return out;
}

Tensor ConvBase::forward(const Tensor& x) {
  const std::optional<Shape> mask_shape =
      options_.mask ? std::optional<Shape>(options_.mask->shape()) : std::nullopt;
  // Every upstream check runs here, before any parameter exists (docs/convlocal.md §2.4).
  const ConvPlan plan = plan_conv(x.shape(), spec(), mask_shape, layer_name());
  const Tensor kernel = param("kernel", plan.kernel_shape, options_.kernel_init, options_.param_dtype,
                              shared_weights_ ? "input channels changed?" : "input spatial size changed?");
  std::optional<Tensor> bias;
  if (options_.use_bias) bias = param("bias", plan.bias_shape, options_.bias_init, options_.param_dtype);
  if (MaxPoolFusion* fusion = t_max_pool_fusion; fusion && fusion->conv_ == this) {
    fusion->conv_ = nullptr;  // this call takes the request, granted or not
    if (bias && !options_.mask)
      if (Tensor y = conv_max_pool_apply(plan, x, kernel, *bias, fusion->window_, options_.dtype, options_.precision,
                                         fusion->relu_);
          y.defined()) {
        fusion->granted_ = true;
        return y;
      }
  }
  return conv_apply(plan, x, kernel, bias, options_.mask, options_.dtype, options_.precision);
}

MaxPoolFusion::MaxPoolFusion(const ConvBase& conv, Shape window, bool relu)
    : conv_(&conv), window_(std::move(window)), relu_(relu), enclosing_(t_max_pool_fusion) {
  t_max_pool_fusion = this;
}

MaxPoolFusion::~MaxPoolFusion() { t_max_pool_fusion = enclosing_; }

}  // namespace xgrad::nn
