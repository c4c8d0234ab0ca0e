#include "layers/conv_transpose.hpp"

#include <algorithm>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autograd/fractionally_strided_conv.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "core/kernels/conv/conv_geometry.hpp"
#include "layers/conv_plan.hpp"
#include "layers/dtypes.hpp"

namespace xgrad {

namespace nn {

namespace {

bool all_ones(const std::vector<std::int64_t>& v) {
  return std::all_of(v.begin(), v.end(), [](auto d) { return d == 1; });
}

// Everything ConvTranspose.__call__ resolves for one input shape, before any
// parameter exists.
struct ConvTransposePlan {
  Shape batch_shape;                  // the leading batch axes (empty when there are none)
  Shape flat_input_shape;             // (N, M..., C)
  std::vector<std::int64_t> strides, kernel_dilation;
  Padding lax_padding;                // resolved for conv_general_dilated
  Shape kernel_shape;
  bool circular = false;
  PadPairs wrap_pads;                 // CIRCULAR: zero pads that make each dim an odd number of periods
  Shape periods;                      // CIRCULAR: M * s per spatial dim
  Shape output_shape;                 // batch_shape + (O..., F)
};

std::string tuple_str(const Shape& s) {
  return s.size() == 1 ? fmt::format("({},)", s[0]) : fmt::format("({})", fmt::join(s, ", "));
}

// Flax's maybe_broadcast: one entry is an int for every dim.
std::vector<std::int64_t> broadcast(const IntOrInts& v, std::size_t n) {
  return v.values.size() == 1 ? std::vector<std::int64_t>(n, v.values.front()) : v.values;
}

// In flax.linen.ConvTranspose.__call__'s order: kernel size, batch axes, strides
// and dilation, kernel shape, mask, padding; then the lax checks that size the output.
ConvTransposePlan plan_conv_transpose(const Shape& input_shape, const ConvTransposeOptions& o,
                                      const std::optional<Shape>& mask_shape) {
  const char* who = "ConvTranspose";
  const Shape k(o.kernel_size.begin(), o.kernel_size.end());
  const std::size_t n = k.size();
  ConvTransposePlan plan;
  std::tie(plan.batch_shape, plan.flat_input_shape) = check_kernel_and_split_batch(input_shape, k, o.features, who);

  plan.strides = detail::per_spatial_dim(broadcast(o.strides, n), n, "strides", who);
  plan.kernel_dilation = detail::per_spatial_dim(broadcast(o.kernel_dilation, n), n, "kernel_dilation", who);

  const std::int64_t C = input_shape.back(), F = o.features;
  const Shape in_out = o.transpose_kernel ? Shape{F, C} : Shape{C, F};
  plan.kernel_shape = k;
  plan.kernel_shape.insert(plan.kernel_shape.end(), in_out.begin(), in_out.end());
  if (mask_shape && *mask_shape != plan.kernel_shape)
    throw ValueError(fmt::format("{}: Mask needs to have the same shape as weights. Shapes are: {}, {}", who,
                                 tuple_str(*mask_shape), tuple_str(plan.kernel_shape)));

  Padding padding;
  try {
    padding = canonicalize_padding(o.padding, static_cast<int>(n));
  } catch (const ValueError& e) {
    throw ValueError(fmt::format("{}: {}", who, e.what()));
  }
  plan.circular = padding.is_string() && padding.name() == "CIRCULAR";  // case-sensitive, as Flax
  if (plan.circular) padding = "VALID";
  plan.lax_padding = detail::transposed_padding(padding, k, plan.strides, plan.kernel_dilation, who);
  const auto geometry = kernels::make_conv_geometry(plan.flat_input_shape, k, {}, plan.lax_padding, plan.strides,
                                                    plan.kernel_dilation, who);
  Shape out_spatial = geometry.out_spatial;

  if (plan.circular) {
    // Flax pads the VALID result with zeros to an odd number of periods P = M * s,
    // centred with the odd unit in front (behind with transpose_kernel), then sums
    // the periods. With transpose_kernel this is the exact transpose of a CIRCULAR
    // Conv at stride 2 (any kernel), but not for every (K, s): at stride 1 with an
    // even kernel it is that transpose rolled by one. Flax's offsets, kept as they are.
    for (std::size_t j = 0; j < n; ++j) {
      const std::int64_t P = geometry.in_spatial[j] * plan.strides[j];
      if (P == 0)
        throw ValueError(fmt::format("{}: CIRCULAR padding cannot wrap the empty spatial dim {} of input {}", who, j,
                                     shape_str(input_shape)));
      const std::int64_t diff = ((P - out_spatial[j]) % (2 * P) + 2 * P) % (2 * P);  // Python's -(O - P) % 2P
      const std::int64_t front = o.transpose_kernel ? diff / 2 : (diff + 1) / 2;
      plan.wrap_pads.emplace_back(front, diff - front);
      plan.periods.push_back(P);
      out_spatial[j] = P;
    }
  }
  plan.output_shape = plan.batch_shape;
  plan.output_shape.insert(plan.output_shape.end(), out_spatial.begin(), out_spatial.end());
  plan.output_shape.push_back(F);
  return plan;
}

// y (N, O..., F) padded by `pads` and folded to (N, P..., F) by summing the periods.
Tensor wrap_sum(Tensor y, const PadPairs& pads, const Shape& periods) {
  PadPairs all{{0, 0}};
  all.insert(all.end(), pads.begin(), pads.end());
  all.emplace_back(0, 0);
  y = pad(y, all);
  for (std::size_t j = 0; j < periods.size(); ++j) {
    const auto axis = static_cast<std::int64_t>(j + 1);
    Shape split = y.shape();
    split[j + 1] = periods[j];
    split.insert(split.begin() + axis, y.size(axis) / periods[j]);  // explicit: y may be empty
    y = sum(reshape(y, split), {axis});
  }
  return y;
}

}  // namespace

ConvTranspose::ConvTranspose(ConvTransposeOptions options) : options_(std::move(options)) {
  const char* who = "ConvTranspose";
  check_conv_layer_options(who, ConvLayerKind::ConvTranspose, options_.features,
                           {options_.kernel_size.begin(), options_.kernel_size.end()},
                           {{"strides", options_.strides.values}, {"kernel_dilation", options_.kernel_dilation.values}},
                           options_.padding);
  const auto& p = options_.padding;
  if (p.is_string() && p.name() != "SAME" && p.name() != "VALID" && p.name() != "CIRCULAR" &&
      !all_ones(options_.strides.values))
    throw ValueError(fmt::format("{}: padding '{}' is a plain convolution's padding, which lax allows only with "
                                 "strides 1 (got strides [{}]); write 'SAME' or 'VALID' for the transposed "
                                 "convolution's padding",
                                 who, p.name(), fmt::join(options_.strides.values, ", ")));
  bind_dtype_options(options_.dtype, options_.param_dtype);
}

std::string ConvTranspose::describe() const {
  return fmt::format("ConvTranspose, features={}, kernel_size=[{}]", options_.features,
                     fmt::join(options_.kernel_size, ", "));
}

Tensor ConvTranspose::forward(const Tensor& x) {
  const std::optional<Shape> mask_shape =
      options_.mask ? std::optional<Shape>(options_.mask->shape()) : std::nullopt;
  const ConvTransposePlan plan = plan_conv_transpose(x.shape(), options_, mask_shape);
  const Tensor kernel = param("kernel", plan.kernel_shape, options_.kernel_init, options_.param_dtype,
                              "input channels changed?");
  std::optional<Tensor> bias;
  if (options_.use_bias) bias = param("bias", {options_.features}, options_.bias_init, options_.param_dtype);

  const Tensor masked = options_.mask ? mul(kernel, *options_.mask) : kernel;
  const auto promoted = promote_dtype({reshape(x, plan.flat_input_shape), masked, bias ? *bias : Tensor()},
                                      options_.dtype);
  Tensor y = detail::fractionally_strided_conv(promoted[0], promoted[1], plan.strides, plan.lax_padding,
                                               plan.kernel_dilation, options_.transpose_kernel, options_.precision,
                                               "ConvTranspose");
  if (plan.circular) y = wrap_sum(y, plan.wrap_pads, plan.periods);
  if (promoted[2].defined()) y = add(y, promoted[2]);
  return reshape(y, plan.output_shape);
}

std::optional<StateDict> ConvTranspose::per_example_param_grads(const Tensor& x, const Tensor&, const Tensor& g) const {
  if (options_.mask || !is_floating(g.dtype()) || itemsize(g.dtype()) < 4 || x.numel() == 0 || g.numel() == 0)
    return std::nullopt;
  const ConvTransposePlan plan = plan_conv_transpose(x.shape(), options_, std::nullopt);
  if (plan.circular || plan.batch_shape.size() != 1) return std::nullopt;
  const Tensor kernel = find_parameter("kernel");
  const Tensor lhs = cast(reshape(x, plan.flat_input_shape), g.dtype());
  const detail::FractionalConv c = detail::fractional_conv(lhs.shape(), cast(kernel, g.dtype()), plan.strides, plan.lax_padding,
                                           plan.kernel_dilation, options_.transpose_kernel, "ConvTranspose");
  // y = Aᵀ x with A z = conv(z, K'), so ⟨g, y⟩ = ⟨conv(g, K'), x⟩ and example b's K' gradient
  // is Σ over x's positions of patch(g_b)ᵀ x_b: one batched product, as Conv's rule.
  const Shape window(c.kernel.shape().begin(), c.kernel.shape().end() - 2);
  const std::int64_t batch = x.size(0), features = c.kernel.shape().end()[-2], channels = lhs.shape().back();
  const std::int64_t taps = numel(window);
  const Tensor patches = conv_general_dilated_patches(g, window, plan.strides, c.padding, {}, plan.kernel_dilation);
  const Tensor rows = reshape(patches, {batch, -1, features * taps});  // patch entry f·S + r
  const Tensor per_patch =
      reshape(matmul(swapaxes(rows, 1, 2), reshape(lhs, {batch, -1, channels})), {batch, features, taps, channels});
  Shape per_example_shape{batch};
  per_example_shape.insert(per_example_shape.end(), window.begin(), window.end());
  per_example_shape.push_back(features);
  per_example_shape.push_back(channels);
  Tensor grads = reshape(transpose(per_patch, {0, 2, 1, 3}), per_example_shape);  // (B, window..., F, C) = K' layout
  if (!options_.transpose_kernel) {  // K' = K flipped with its feature axes swapped: undo both
    grads = swapaxes(grads, -2, -1);
    for (std::int64_t axis = 1; axis <= static_cast<std::int64_t>(window.size()); ++axis)
      grads = slice(grads, axis, std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min(), -1);
  }
  StateDict out;
  out["kernel"] = cast(grads, kernel.dtype());
  if (options_.use_bias) {
    Axes positions;
    for (std::int64_t a = 1; a + 1 < g.dim(); ++a) positions.push_back(a);
    out["bias"] = cast(positions.empty() ? g : sum(g, positions), find_parameter("bias").dtype());
  }
  return out;
}

}  // namespace nn

}  // namespace xgrad
