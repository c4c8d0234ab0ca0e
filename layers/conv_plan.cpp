#include "layers/conv_plan.hpp"

#include <algorithm>
#include <cctype>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autograd/conv.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "core/kernels/conv/conv.hpp"
#include "core/kernels/conv/conv_geometry.hpp"
#include "layers/dtypes.hpp"

namespace xgrad::nn {

namespace {

// Flax's maybe_broadcast: None -> 1, an int -> (x,) * n, a sequence as is (its
// length is checked by lax, later).
std::vector<std::int64_t> broadcast_per_dim(const std::vector<std::int64_t>& v, std::size_t n) {
  if (v.empty()) return std::vector<std::int64_t>(n, 1);
  if (v.size() == 1) return std::vector<std::int64_t>(n, v.front());
  return v;
}

std::string tuple_str(const Shape& s) {
  return s.size() == 1 ? fmt::format("({},)", s[0]) : fmt::format("({})", fmt::join(s, ", "));
}

}  // namespace

std::pair<Shape, Shape> check_kernel_and_split_batch(const Shape& input_shape, const Shape& kernel_size,
                                                     std::int64_t features, const char* who) {
  const Shape& k = kernel_size;
  const std::size_t n = k.size();
  if (n == 0)
    throw ValueError(fmt::format("{}: kernel_size is empty (a 0-d convolution); give one size per spatial dim, "
                                 "e.g. {{3, 3}}, or one int for a 1-d kernel",
                                 who));
  for (auto d : k)
    if (d <= 0) throw ValueError(fmt::format("{}: kernel_size {} must be positive", who, shape_str(k)));
  if (features < 0) throw ValueError(fmt::format("{}: features must be >= 0, got {}", who, features));

  const auto ndim = static_cast<std::int64_t>(input_shape.size());
  const std::int64_t num_batch = ndim - static_cast<std::int64_t>(n + 1);
  if (num_batch < 0)
    throw ShapeError(fmt::format("{}: input of shape {} has rank {}, but kernel_size {} makes a {}-d convolution, "
                                 "which needs (batch..., {} spatial dims, features): rank >= {}",
                                 who, shape_str(input_shape), ndim, shape_str(k), n, n, n + 1));
  Shape batch_shape(input_shape.begin(), input_shape.begin() + num_batch);
  Shape flat_input_shape{numel(batch_shape)};
  flat_input_shape.insert(flat_input_shape.end(), input_shape.begin() + num_batch, input_shape.end());
  return {std::move(batch_shape), std::move(flat_input_shape)};
}

namespace {

std::string upper_case(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

const char* accepted_padding_forms(ConvLayerKind kind) {
  return kind == ConvLayerKind::Conv
             ? "'SAME', 'VALID', 'SAME_LOWER' (any case), 'CIRCULAR', 'REFLECT', 'CAUSAL' (upper case; CAUSAL for "
               "1-d kernels only), an int p (p on both sides of every spatial dim), or one int or (lo, hi) pair per "
               "spatial dim"
             : "'SAME', 'VALID', 'CIRCULAR' (upper case), 'SAME_LOWER' or lower-case 'same' / 'valid' (a plain "
               "convolution's padding, strides 1 only), an int p (p on both sides of every spatial dim), or one int "
               "or (lo, hi) pair per spatial dim";
}

}  // namespace

void check_conv_layer_options(const char* who, ConvLayerKind kind, std::int64_t features, const Shape& kernel_size,
                              const std::vector<std::pair<const char*, std::vector<std::int64_t>>>& per_dim,
                              const Padding& padding) {
  if (features <= 0) throw ValueError(fmt::format("{}: features must be positive, got {}", who, features));
  const std::size_t n = kernel_size.size();
  if (n == 0)
    throw ValueError(fmt::format("{}: kernel_size is empty; give one size per spatial dim, e.g. {{3, 3}}, or one "
                                 "int for a 1-d kernel",
                                 who));
  for (auto k : kernel_size)
    if (k <= 0) throw ValueError(fmt::format("{}: kernel_size {} must be positive", who, shape_str(kernel_size)));
  for (const auto& [name, values] : per_dim) {
    if (values.size() > 1 && values.size() != n)
      throw ValueError(fmt::format("{}: {} [{}] has {} entries but kernel_size {} makes a {}-d convolution; give one "
                                   "int for every spatial dim or one per dim",
                                   who, name, fmt::join(values, ", "), values.size(), shape_str(kernel_size), n));
    for (auto v : values)
      if (v <= 0) throw ValueError(fmt::format("{}: {} [{}] must be positive", who, name, fmt::join(values, ", ")));
  }
  if (padding.is_string()) {
    const std::string& p = padding.name();
    const std::string upper = upper_case(p);
    const bool lax_form = upper == "SAME" || upper == "VALID" || upper == "SAME_LOWER";
    const bool flax_form = kind == ConvLayerKind::Conv ? p == "CIRCULAR" || p == "REFLECT" || p == "CAUSAL"
                                                       : p == "CIRCULAR";
    if (!lax_form && !flax_form)
      throw ValueError(fmt::format("{}: padding '{}' is not one of the accepted forms: {}", who, p,
                                   accepted_padding_forms(kind)));
    if (p == "CAUSAL" && n != 1)
      throw ValueError(fmt::format("{}: CAUSAL padding is only implemented for 1-d convolutions, but kernel_size {} "
                                   "makes a {}-d convolution; use 'SAME' or explicit (lo, hi) pairs",
                                   who, shape_str(kernel_size), n));
  } else {
    try {
      canonicalize_padding(padding, static_cast<int>(n));
    } catch (const ValueError& e) {
      throw ValueError(fmt::format("{}: {} Accepted forms: {}", who, e.what(), accepted_padding_forms(kind)));
    }
  }
}

ConvPlan plan_conv(const Shape& input_shape, const ConvSpec& spec, const std::optional<Shape>& mask_shape,
                   std::string_view name) {
  ConvPlan plan;
  plan.spec = spec;
  plan.name = name.empty() ? (spec.shared_weights ? "Conv" : "ConvLocal") : std::string(name);
  plan.input_shape = input_shape;
  const char* who = plan.name.c_str();

  // 1-2. Kernel size (its length is the conv rank n), features, batch axes.
  const Shape& k = spec.kernel_size;
  const std::size_t n = k.size();
  std::tie(plan.batch_shape, plan.flat_input_shape) = check_kernel_and_split_batch(input_shape, k, spec.features, who);

  // 3. Strides and dilations.
  plan.strides = broadcast_per_dim(spec.strides, n);
  plan.input_dilation = broadcast_per_dim(spec.input_dilation, n);
  plan.kernel_dilation = broadcast_per_dim(spec.kernel_dilation, n);

  // 4. Padding.
  try {
    plan.padding = canonicalize_padding(spec.padding, static_cast<int>(n));
  } catch (const ValueError& e) {
    throw ValueError(fmt::format("{}: {}", who, e.what()));
  }

  // 5. Flax-side pre-padding (case-sensitive names); the lax padding becomes 'VALID'.
  plan.prepad_pads.assign(n, {0, 0});
  plan.lax_padding = plan.padding;
  if (plan.padding.is_string()) {
    const std::string& p = plan.padding.name();
    if (p == "CIRCULAR" || p == "REFLECT") {
      plan.prepad = p == "CIRCULAR" ? Prepad::Wrap : Prepad::Reflect;
      plan.lax_padding = "VALID";
      // A kernel_dilation of the wrong length is reported by the lax checks (step 7).
      if (plan.kernel_dilation.size() == n) {
        for (std::size_t j = 0; j < n; ++j) {
          const std::int64_t extent =
              checked_add(checked_mul(k[j] - 1, plan.kernel_dilation[j], who, "the dilated kernel"), 1, who,
                          "the dilated kernel");
          plan.prepad_pads[j] = {(extent - 1) / 2, extent / 2};
          if (plan.flat_input_shape[j + 1] == 0 && extent > 1)
            throw ValueError(fmt::format("{}: {} padding cannot pad the empty spatial dim {} of input {}", who, p, j,
                                         shape_str(input_shape)));
        }
      }
    } else if (p == "CAUSAL") {
      if (n != 1)
        throw ValueError(fmt::format("{}: Causal padding is only implemented for 1D convolutions. (kernel_size {} "
                                     "makes a {}-d convolution; use 'SAME' or explicit (lo, hi) pairs)",
                                     who, shape_str(k), n));
      plan.prepad = Prepad::Causal;
      plan.lax_padding = "VALID";
      if (plan.kernel_dilation.size() == 1)
        plan.prepad_pads[0] = {checked_mul(plan.kernel_dilation[0], k[0] - 1, who, "the causal padding"), 0};
    }
  }
  plan.prepadded_shape = plan.flat_input_shape;
  for (std::size_t j = 0; j < n; ++j) {
    std::int64_t& size = plan.prepadded_shape[j + 1];
    size = checked_add(checked_add(size, plan.prepad_pads[j].first, who, "the pre-padded input"),
                       plan.prepad_pads[j].second, who, "the pre-padded input");
  }

  // 6. Feature groups (upstream ConvLocal rejects G != 1; xgrad defines it, docs/convlocal.md §11).
  const std::int64_t C = input_shape.back(), F = spec.features, G = spec.feature_group_count;
  if (G < 1) throw ValueError(fmt::format("{}: feature_group_count must be >= 1, got {}", who, G));
  if (C % G != 0 || F % G != 0)
    throw ValueError(fmt::format("{}: feature_group_count {} must divide both the input features {} and features {}",
                                 who, G, C, F));

  // 7. The lax shape checks (Flax's eval_shape), which also give the output size.
  const auto geometry = kernels::make_conv_geometry(plan.prepadded_shape, k, plan.strides, plan.lax_padding,
                                                    plan.input_dilation, plan.kernel_dilation, who);
  plan.lax_pads = geometry.pads;
  plan.out_spatial = geometry.out_spatial;
  plan.geometry = std::make_shared<const kernels::ConvGeometry>(geometry);

  // 8. Parameter shapes and the mask.
  if (spec.shared_weights) {
    plan.kernel_shape = k;
    plan.kernel_shape.insert(plan.kernel_shape.end(), {C / G, F});
    plan.bias_shape = {F};
  } else {
    plan.kernel_shape = plan.out_spatial;
    plan.kernel_shape.insert(plan.kernel_shape.end(), {checked_mul(numel(k), C / G, who, "the patch size"), F});
    plan.bias_shape = plan.out_spatial;
    plan.bias_shape.push_back(F);
  }
  if (mask_shape && *mask_shape != plan.kernel_shape)
    throw ValueError(fmt::format("{}: Mask needs to have the same shape as weights. Shapes are: {}, {}", who,
                                 tuple_str(*mask_shape), tuple_str(plan.kernel_shape)));
  plan.output_shape = plan.batch_shape;
  plan.output_shape.insert(plan.output_shape.end(), plan.out_spatial.begin(), plan.out_spatial.end());
  plan.output_shape.push_back(F);
  // Each shape the plan hands out must be one a tensor can have, in any dtype.
  for (const auto& [what, shape] : {std::pair{"kernel", &plan.kernel_shape}, std::pair{"bias", &plan.bias_shape},
                                    std::pair{"output", &plan.output_shape},
                                    std::pair{"pre-padded input", &plan.prepadded_shape}})
    checked_numel(*shape, sizeof(double), fmt::format("{} {}", who, what).c_str());
  return plan;
}

namespace {

// The lax contraction of `plan` (its geometry resolved once in plan_conv).
kernels::ConvContraction contraction_of(const ConvPlan& plan, Precision precision) {
  kernels::ConvContraction contraction;
  contraction.geometry = *plan.geometry;
  contraction.weights = plan.spec.shared_weights ? kernels::ConvWeights::Shared : kernels::ConvWeights::Local;
  contraction.groups = plan.spec.feature_group_count;
  contraction.features = plan.spec.features;
  contraction.precision = precision;
  return contraction;
}

}  // namespace

Tensor conv_apply(const ConvPlan& plan, const Tensor& inputs, const Tensor& kernel, const std::optional<Tensor>& bias,
                  const std::optional<Tensor>& mask, std::optional<DType> dtype, Precision precision) {
  const char* who = plan.name.c_str();
  if (inputs.shape() != plan.input_shape)
    throw ShapeError(fmt::format("{}: input has shape {} but the layer was planned for {}{}; plan it again for this "
                                 "input",
                                 who, shape_str(inputs.shape()), shape_str(plan.input_shape),
                                 plan.spec.shared_weights ? "" : " (a ConvLocal kernel depends on the input size)"));
  if (kernel.shape() != plan.kernel_shape)
    throw ShapeError(fmt::format("{}: kernel has shape {} but must be {}", who, shape_str(kernel.shape()),
                                 shape_str(plan.kernel_shape)));
  if (bias && bias->shape() != plan.bias_shape)
    throw ShapeError(fmt::format("{}: bias has shape {} but must be {}", who, shape_str(bias->shape()),
                                 shape_str(plan.bias_shape)));
  if (mask && mask->shape() != plan.kernel_shape)
    throw ValueError(fmt::format("{}: Mask needs to have the same shape as weights. Shapes are: {}, {}", who,
                                 tuple_str(mask->shape()), tuple_str(plan.kernel_shape)));

  Tensor x = reshape(inputs, plan.flat_input_shape);
  if (plan.prepad != Prepad::None) {
    PadPairs pads{{0, 0}};
    pads.insert(pads.end(), plan.prepad_pads.begin(), plan.prepad_pads.end());
    pads.emplace_back(0, 0);
    const PadMode mode = plan.prepad == Prepad::Wrap      ? PadMode::Wrap
                         : plan.prepad == Prepad::Reflect ? PadMode::Reflect
                                                          : PadMode::Constant;
    x = pad(x, pads, mode);
  }
  Tensor k = mask ? mul(kernel, *mask) : kernel;
  auto promoted = promote_dtype({x, k, bias ? *bias : Tensor()}, dtype);
  x = promoted[0];
  k = promoted[1];

  // The lax op on the geometry resolved by plan_conv (one op with the bias, so the
  // fast kernels add it in the forward and return its gradient in their backward pass).
  const Tensor y = conv_general_dilated_resolved(contraction_of(plan, precision), x, k, promoted[2]);
  return reshape(y, plan.output_shape);
}

Tensor conv_max_pool_apply(const ConvPlan& plan, const Tensor& inputs, const Tensor& kernel, const Tensor& bias,
                           const Shape& window, std::optional<DType> dtype, Precision precision, bool relu) {
  const DType f32 = DType::Float32;
  if (plan.prepad != Prepad::None || inputs.shape() != plan.flat_input_shape ||
      inputs.shape() != plan.input_shape || kernel.shape() != plan.kernel_shape || bias.shape() != plan.bias_shape ||
      inputs.dtype() != f32 || kernel.dtype() != f32 || bias.dtype() != f32 || (dtype && *dtype != f32))
    return Tensor();
  return conv_general_dilated_max_pool_resolved(contraction_of(plan, precision), inputs, kernel, bias, window, relu);
}

}  // namespace xgrad::nn
