#include "layers/conv_local_transpose.hpp"

#include <algorithm>
#include <limits>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autograd/conv.hpp"
#include "autograd/fractionally_strided_conv.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "core/kernels/conv/conv.hpp"
#include "core/kernels/conv/conv_geometry.hpp"
#include "layers/conv_plan.hpp"
#include "layers/dtypes.hpp"

namespace xgrad {

namespace {

// strides / dilations per spatial dim: as detail::per_spatial_dim, and one entry is
// used for every dim.
std::vector<std::int64_t> per_dim(const std::vector<std::int64_t>& v, std::size_t n, const char* what,
                                  const char* who) {
  if (v.size() != 1) return detail::per_spatial_dim(v, n, what, who);
  detail::per_spatial_dim(v, 1, what, who);  // positive
  return std::vector<std::int64_t>(n, v.front());
}

// The ConvLocal that a ConvLocalTranspose with these arguments transposes, planned on
// the transposed output (N, T..., F), and that output's spatial size T.
struct TransposedLocal {
  nn::ConvPlan local;
  Shape out_spatial;  // T
};

// flat_input (N, M..., C); `padding` canonical (a string or one pair per dim).
TransposedLocal plan_transposed_local(const Shape& flat_input, const Shape& k, const std::vector<std::int64_t>& s,
                                      const std::vector<std::int64_t>& d, const Padding& padding,
                                      std::int64_t features, const std::optional<Shape>& mask_shape,
                                      const char* who) {
  const std::size_t n = k.size();
  TransposedLocal t;
  std::vector<std::pair<int, int>> local_pads;
  const std::vector<std::pair<int, int>> pairs = padding.is_string() ? std::vector<std::pair<int, int>>{}
                                                                     : padding.pairs();
  for (std::size_t j = 0; j < n; ++j) {
    const std::int64_t M = flat_input[j + 1];
    const std::int64_t K = checked_add(checked_mul(k[j] - 1, d[j], who, "the dilated kernel"), 1, who,
                                       "the dilated kernel");
    const std::int64_t Ms = checked_mul(M, s[j], who, "the output size");
    std::int64_t T = Ms;
    if (!padding.is_string()) {
      const auto [lo, hi] = pairs[j];
      T = Ms - s[j] + 2 + lo + hi - K;
      local_pads.emplace_back(static_cast<int>(K - 1 - lo), static_cast<int>(K - 1 - hi));
    } else if (padding.name() == "VALID") {
      T = Ms + std::max<std::int64_t>(K - s[j], 0);
    }
    if (T < 0)
      throw ValueError(fmt::format("{}: padding {} makes spatial dim {} of the output negative ({}) for input {}, "
                                   "kernel_size {}, strides [{}], kernel_dilation [{}]",
                                   who, padding.to_string(), j, T, shape_str(flat_input), shape_str(k),
                                   fmt::join(s, ", "), fmt::join(d, ", ")));
    t.out_spatial.push_back(T);
  }
  nn::ConvSpec spec;
  spec.features = flat_input.back();
  spec.kernel_size = k;
  spec.strides = s;
  spec.padding = padding.is_string() ? padding : Padding(local_pads);
  spec.kernel_dilation = d;
  spec.shared_weights = false;
  Shape local_input{flat_input.front()};
  local_input.insert(local_input.end(), t.out_spatial.begin(), t.out_spatial.end());
  local_input.push_back(features);
  t.local = nn::plan_conv(local_input, spec, mask_shape, who);
  const Shape M(flat_input.begin() + 1, flat_input.end() - 1);
  if (t.local.out_spatial != M)
    throw ValueError(fmt::format("{}: padding {} has no ConvLocal transpose for input {}: the ConvLocal on the output "
                                 "{} has {} positions, not the input's {}",
                                 who, padding.to_string(), shape_str(flat_input), shape_str(local_input),
                                 shape_str(t.local.out_spatial), shape_str(M)));
  return t;
}

// The input-VJP of the planned ConvLocal at cotangent x: (N, T~..., F) on the
// pre-padded input, folded back onto (N, T..., F) when the ConvLocal wraps its input
// (out[u] = sum of y[q] over (q - lo) mod T = u, the adjoint of the periodic pad).
Tensor transposed_local(const nn::ConvPlan& local, const Tensor& x, const Tensor& kernel, Precision precision) {
  kernels::ConvContraction c;
  c.geometry = *local.geometry;
  c.weights = kernels::ConvWeights::Local;
  c.groups = 1;
  c.features = local.spec.features;
  c.precision = precision;
  Tensor y = conv_input_vjp_resolved(c, x, kernel);
  if (local.prepad != nn::Prepad::Wrap) return y;
  for (std::size_t j = 0; j < local.prepad_pads.size(); ++j) {
    const auto [lo, hi] = local.prepad_pads[j];
    if (lo == 0 && hi == 0) continue;
    const auto axis = static_cast<std::int64_t>(j + 1);
    const std::int64_t T = local.flat_input_shape[j + 1], P = y.size(axis);
    const std::int64_t front = ((-lo) % T + T) % T, back = ((-(P + front)) % T + T) % T;
    std::vector<std::pair<std::int64_t, std::int64_t>> pads(static_cast<std::size_t>(y.dim()), {0, 0});
    pads[j + 1] = {front, back};
    y = pad(y, pads);
    Shape split = y.shape();
    split[j + 1] = T;
    split.insert(split.begin() + axis, (P + front + back) / T);
    y = sum(reshape(y, split), {axis});
  }
  return y;
}

void check_operands(const Tensor& lhs, const Tensor& rhs, const char* who) {
  if (!lhs.defined() || !rhs.defined()) throw ValueError(fmt::format("{}: lhs and rhs must be defined", who));
  for (const auto& [what, t] : {std::pair{"lhs", &lhs}, std::pair{"rhs", &rhs}})
    if (!is_floating(t->dtype()))
      throw DTypeError(fmt::format("{}: {} {} has dtype {}; convolutions need a floating dtype", who, what,
                                   shape_str(t->shape()), dtype_name(t->dtype())));
  if (lhs.dtype() != rhs.dtype())
    throw DTypeError(fmt::format("{}: lhs {} is {} but rhs {} is {}; both must have the same dtype", who,
                                 shape_str(lhs.shape()), dtype_name(lhs.dtype()), shape_str(rhs.shape()),
                                 dtype_name(rhs.dtype())));
}

}  // namespace

Tensor conv_local_transpose(const Tensor& lhs, const Tensor& rhs, const std::vector<std::int64_t>& filter_shape,
                            const std::vector<std::int64_t>& strides, const Padding& padding,
                            const std::vector<std::int64_t>& rhs_dilation, Precision precision) {
  const char* who = "conv_local_transpose";
  check_operands(lhs, rhs, who);
  const std::size_t n = filter_shape.size();
  if (n == 0) throw ValueError(fmt::format("{}: filter_shape is empty; give one size per spatial dim", who));
  for (auto k : filter_shape)
    if (k <= 0) throw ValueError(fmt::format("{}: filter_shape {} must be positive", who, shape_str(filter_shape)));
  if (lhs.dim() != static_cast<std::int64_t>(n) + 2 || rhs.dim() != static_cast<std::int64_t>(n) + 2)
    throw ShapeError(fmt::format("{}: lhs {} must be (N, M..., C) and rhs {} (M..., S*F, C) with {} spatial dims "
                                 "(filter_shape {})",
                                 who, shape_str(lhs.shape()), shape_str(rhs.shape()), n, shape_str(filter_shape)));
  const std::int64_t S = numel(filter_shape), rows = rhs.shape()[n];
  if (rows % S != 0)
    throw ShapeError(fmt::format("{}: rhs {} must be (M..., S*F, C); its axis {} ({}) is not a multiple of S = {} "
                                 "(filter_shape {})",
                                 who, shape_str(rhs.shape()), n, rows, S, shape_str(filter_shape)));
  if (padding.is_string() && padding.name() != "SAME" && padding.name() != "VALID")
    throw ValueError(fmt::format("{}: Unrecognized padding type: expected 'SAME', 'VALID' or (low, high) pairs, got "
                                 "'{}'",
                                 who, padding.name()));
  if (padding.is_int())
    throw ValueError(fmt::format("{}: padding must be 'SAME', 'VALID' or one (low, high) pair per spatial dim, got {}",
                                 who, padding.to_string()));
  if (padding.is_sequence() && padding.entries().size() != n)
    throw ValueError(fmt::format("{}: padding {} must have one (low, high) pair per spatial dim ({})", who,
                                 padding.to_string(), n));
  const auto s = per_dim(strides, n, "strides", who);
  const auto d = per_dim(rhs_dilation, n, "rhs_dilation", who);
  const TransposedLocal t = plan_transposed_local(lhs.shape(), filter_shape, s, d, padding, rows / S, std::nullopt, who);
  return transposed_local(t.local, lhs, rhs, precision);
}

namespace nn {

ConvLocalTranspose::ConvLocalTranspose(ConvLocalTransposeOptions options) : options_(std::move(options)) {
  const char* who = "ConvLocalTranspose";
  check_conv_layer_options(who, ConvLayerKind::ConvTranspose, options_.features,
                           {options_.kernel_size.begin(), options_.kernel_size.end()},
                           {{"strides", options_.strides.values}, {"kernel_dilation", options_.kernel_dilation.values}},
                           options_.padding);
  const auto& p = options_.padding;
  if (p.is_string() && p.name() != "SAME" && p.name() != "VALID" && p.name() != "CIRCULAR")
    throw ValueError(fmt::format("{}: padding '{}' is not one of the accepted forms: 'SAME', 'VALID', 'CIRCULAR' "
                                 "(upper case), an int p (p on both sides of every spatial dim), or one int or "
                                 "(lo, hi) pair per spatial dim",
                                 who, p.name()));
  bind_dtype_options(options_.dtype, options_.param_dtype);
}

std::string ConvLocalTranspose::describe() const {
  return fmt::format("ConvLocalTranspose, features={}, kernel_size=[{}]", options_.features,
                     fmt::join(options_.kernel_size, ", "));
}

Tensor ConvLocalTranspose::forward(const Tensor& x) {
  const char* who = "ConvLocalTranspose";
  const Shape k(options_.kernel_size.begin(), options_.kernel_size.end());
  const std::size_t n = k.size();
  const auto [batch_shape, flat_input] = check_kernel_and_split_batch(x.shape(), k, options_.features, who);
  const auto s = per_dim(options_.strides.values, n, "strides", who);
  const auto d = per_dim(options_.kernel_dilation.values, n, "kernel_dilation", who);
  Padding padding;
  try {
    padding = canonicalize_padding(options_.padding, static_cast<int>(n));
  } catch (const ValueError& e) {
    throw ValueError(fmt::format("{}: {}", who, e.what()));
  }
  const std::optional<Shape> mask_shape =
      options_.mask ? std::optional<Shape>(options_.mask->shape()) : std::nullopt;
  const TransposedLocal t = plan_transposed_local(flat_input, k, s, d, padding, options_.features, mask_shape, who);

  const Tensor kernel = param("kernel", t.local.kernel_shape, options_.kernel_init, options_.param_dtype,
                              "input spatial size changed?");
  Shape bias_shape = t.out_spatial;
  bias_shape.push_back(options_.features);
  std::optional<Tensor> bias;
  if (options_.use_bias)
    bias = param("bias", bias_shape, options_.bias_init, options_.param_dtype, "input spatial size changed?");

  const Tensor masked = options_.mask ? mul(kernel, *options_.mask) : kernel;
  const auto promoted = promote_dtype({reshape(x, flat_input), masked, bias ? *bias : Tensor()}, options_.dtype);
  Tensor y = transposed_local(t.local, promoted[0], promoted[1], options_.precision);
  if (promoted[2].defined()) y = add(y, promoted[2]);
  Shape out_shape = batch_shape;
  out_shape.insert(out_shape.end(), bias_shape.begin(), bias_shape.end());
  return reshape(y, out_shape);
}

std::optional<StateDict> ConvLocalTranspose::per_example_param_grads(const Tensor& x, const Tensor&,
                                                                     const Tensor& g) const {
  const char* who = "ConvLocalTranspose";
  if (!is_floating(g.dtype()) || itemsize(g.dtype()) < 4 || x.numel() == 0 || g.numel() == 0) return std::nullopt;
  const Shape k(options_.kernel_size.begin(), options_.kernel_size.end());
  const std::size_t n = k.size();
  const auto [batch_shape, flat_input] = check_kernel_and_split_batch(x.shape(), k, options_.features, who);
  if (batch_shape.empty()) return std::nullopt;  // axis 0 is spatial: there are no examples
  const auto s = per_dim(options_.strides.values, n, "strides", who);
  const auto d = per_dim(options_.kernel_dilation.values, n, "kernel_dilation", who);
  const Padding padding = canonicalize_padding(options_.padding, static_cast<int>(n));
  const TransposedLocal t = plan_transposed_local(flat_input, k, s, d, padding, options_.features, std::nullopt, who);
  const nn::ConvPlan& local = t.local;
  // g on the ConvLocal's (pre-padded) input: CIRCULAR wraps it as the ConvLocal wraps its input.
  Shape flat_output = local.flat_input_shape;  // (N, T..., F)
  Tensor lhs = reshape(g, flat_output);
  if (local.prepad == Prepad::Wrap) {
    PadPairs pads{{0, 0}};
    pads.insert(pads.end(), local.prepad_pads.begin(), local.prepad_pads.end());
    pads.emplace_back(0, 0);
    lhs = pad(lhs, pads, PadMode::Wrap);
  } else if (local.prepad != Prepad::None) {
    return std::nullopt;
  }
  // (B, M..., F·S): patch entry f·S + r, the row order of the kernel's (S·F) axis.
  const Tensor patches = conv_general_dilated_patches(lhs, local.spec.kernel_size, local.strides, local.lax_padding,
                                                      local.input_dilation, local.kernel_dilation);
  const Tensor kernel = find_parameter("kernel");
  Tensor grads = unsqueeze(patches, -1) * unsqueeze(cast(reshape(x, flat_input), g.dtype()), -2);  // (N, M..., S·F, C)
  if (options_.mask) grads = grads * cast(*options_.mask, g.dtype());
  // Several batch axes: example b owns the N / B rows of its leading index; sum them.
  const std::int64_t batch = x.size(0);
  const auto per_example = [&](const Tensor& t) {
    if (batch_shape.size() == 1) return t;
    Shape grouped = t.shape();
    grouped[0] = batch;
    grouped.insert(grouped.begin() + 1, -1);
    return sum(reshape(t, grouped), {1});
  };
  StateDict out;
  out["kernel"] = cast(per_example(grads), kernel.dtype());
  if (options_.use_bias) out["bias"] = cast(per_example(reshape(g, flat_output)), find_parameter("bias").dtype());
  return out;
}

}  // namespace nn

}  // namespace xgrad
