// Convolutions and their VJPs.
//
// A convolution y = conv(x, w) is bilinear, so its whole derivative tower lives
// in three ops that are each other's VJPs:
//   conv(x, w)            -> y        VJP: (input_vjp(g, w), kernel_vjp(x, g))
//   input_vjp(g, w)       -> dx       VJP: (conv(h, w), kernel_vjp(h, g))
//   kernel_vjp(x, g)      -> dw       VJP: (input_vjp(g, h), conv(x, h))
// (from <h, A_w^T g> = <A_w h, g> and <H, kernel_vjp(x, g)> = <conv(x, H), g>).
// Patch extraction is linear; it and its adjoint are each other's VJPs.
//
// Without create_graph (recording off during backward) a local conv's gradients
// need not be differentiable: one fused kernel pass then gives dx, dw (and the
// bias gradient of the biased form) from one read of each position's cotangent.
#include "autograd/conv.hpp"

#include <memory>

#include <string>

#include <fmt/format.h>

#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "autograd/pool_selection.hpp"
#include "autograd/relu_mask.hpp"
#include "autograd/tangents.hpp"
#include "core/error.hpp"
#include "core/kernels/conv/conv.hpp"
#include "core/kernels/pool.hpp"

namespace xgrad {

namespace {

using kernels::ConvContraction;
using kernels::ConvGeometry;
using kernels::ConvWeights;
using ConvPtr = std::shared_ptr<const ConvContraction>;
using GeometryPtr = std::shared_ptr<const ConvGeometry>;

const char* op_name(const ConvContraction& c) {
  return c.weights == ConvWeights::Local ? "conv_general_dilated_local" : "conv_general_dilated";
}

// The bias shape of a contraction: (F) shared, (O..., F) local.
Shape bias_shape_of(const ConvContraction& c) {
  if (c.weights == ConvWeights::Shared) return {c.features};
  const Shape out = c.output_shape();
  return Shape(out.begin() + 1, out.end());
}

Tensor conv_op(const ConvPtr& c, const Tensor& x, const Tensor& w);
Tensor input_vjp_op(const ConvPtr& c, const Tensor& g, const Tensor& w);
Tensor kernel_vjp_op(const ConvPtr& c, const Tensor& x, const Tensor& g);

// The bias gradient: g summed over the batch (local bias (O..., F)), and over the
// positions too (shared bias (F)).
Tensor bias_grad(const ConvContraction& c, const Tensor& g) {
  if (c.weights == ConvWeights::Local) return sum(g, {0});
  Axes axes;
  for (std::int64_t axis = 0; axis + 1 < g.dim(); ++axis) axes.push_back(axis);
  return sum(g, axes);
}

// The gradients of conv(x, w) (+ b when `b` is defined) for cotangent g.
Grads conv_grads(const ConvPtr& c, const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& g) {
  const bool want_dx = x.requires_grad(), want_dw = w.requires_grad(), want_db = b.defined() && b.requires_grad();
  // The fused kernels are not differentiable: not under create_graph, nor inside a
  // jvp scope, where the gradients' tangents are wanted (forward-over-reverse).
  const bool fused = !GradMode::is_enabled() && !forward_ad::propagating();
  if (fused && c->weights == ConvWeights::Local) {
    auto fused = kernels::conv_local_vjp_fused(x, w, g, *c, want_dx, want_dw, want_db);
    Grads grads{fused.dx, fused.dkernel};
    if (b.defined()) grads.push_back(fused.dbias);
    return grads;
  }
  // Shared: the kernel-VJP pass also sums the bias gradient.
  if (fused && c->weights == ConvWeights::Shared && want_dw && want_db)
    if (auto fused = kernels::conv_shared_param_vjp_fused(x, g, *c))
      return {want_dx ? input_vjp_op(c, g, w) : Tensor(), fused->dkernel, fused->dbias};
  Grads grads{want_dx ? input_vjp_op(c, g, w) : Tensor(), want_dw ? kernel_vjp_op(c, x, g) : Tensor()};
  if (b.defined()) grads.push_back(want_db ? bias_grad(*c, g) : Tensor());
  return grads;
}

// conv is bilinear: d conv(x, w) = conv(dx, w) + conv(x, dw).
Tensor conv_jvp(const ConvPtr& c, const Tensor& x, const Tensor& w, const Grads& t) {
  return tangents::plus(t[0].defined() ? conv_op(c, t[0], w) : Tensor(),
                        t[1].defined() ? conv_op(c, x, t[1]) : Tensor());
}

Tensor conv_op(const ConvPtr& c, const Tensor& x, const Tensor& w) {
  return record(op_name(*c), kernels::conv_forward(x, w, *c), {x, w},
                [c, x, w](const Tensor& g, const Tensor&) -> Grads { return conv_grads(c, x, w, Tensor(), g); },
                Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) { return conv_jvp(c, x, w, t); });
}

// Conv plus a bias broadcast over the batch: (O..., F) for the local conv; (F), also
// broadcast over the positions, for the shared one.
Tensor conv_bias_op(const ConvPtr& c, const Tensor& x, const Tensor& w, const Tensor& b) {
  Tensor y = c->weights == ConvWeights::Local ? kernels::conv_local_forward_biased(x, w, b, *c)
                                              : kernels::conv_shared_forward_biased(x, w, b, *c);
  return record(op_name(*c), std::move(y), {x, w, b},
                [c, x, w, b](const Tensor& g, const Tensor&) -> Grads { return conv_grads(c, x, w, b, g); },
                Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {
                  return tangents::plus(conv_jvp(c, x, w, t), t[2]);  // the bias tangent broadcasts like the bias
                });
}

// The tape name of the conv + max pool (+ relu) op.
const char* max_pool_op_name(const ConvContraction& c, bool relu) {
  if (c.weights == ConvWeights::Local)
    return relu ? "conv_general_dilated_local+max_pool+relu" : "conv_general_dilated_local+max_pool";
  return relu ? "conv_general_dilated+max_pool+relu" : "conv_general_dilated+max_pool";
}

// conv_bias_op followed by a max pool over disjoint windows of the conv output (and,
// with `relu`, a relu), from one kernel pass; undefined where the fast kernels do not
// serve it.
Tensor conv_bias_max_pool_op(const ConvPtr& c, const Tensor& x, const Tensor& w, const Tensor& b,
                             const Shape& window, bool relu) {
  auto pooled = kernels::conv_forward_biased_max_pool(x, w, b, *c, window[0], window[1], relu);
  if (!pooled) return Tensor();
  const auto geometry = std::make_shared<const kernels::PoolGeometry>(
      kernels::pool_geometry(c->output_shape(), window, window, PadPairs(window.size(), {0, 0})));
  const Tensor indices = pooled->second;
  return record(
      max_pool_op_name(*c, relu), std::move(pooled->first), {x, w, b},
      [c, x, w, b, indices, geometry, window, relu](const Tensor& g, const Tensor& out) -> Grads {
        // Not differentiated further: the gradients from the pooled cotangent (masked
        // by relu's out > 0 on the way), without the conv-sized cotangent (the same
        // bits as below). Local weights: every wanted gradient, position by position;
        // shared: the kernel and bias gradients of an image input, a block of samples
        // at a time.
        const Tensor relu_out = relu ? out : Tensor();
        if (!GradMode::is_enabled() && !forward_ad::propagating()) {
          if (c->weights == ConvWeights::Local) {
            if (auto grads = kernels::conv_local_vjp_max_pooled(x, w, g, indices, relu_out, window, *c,
                                                                x.requires_grad(), w.requires_grad(),
                                                                b.requires_grad()))
              return {grads->dx, grads->dkernel, grads->dbias};
          } else if (!x.requires_grad() && w.requires_grad() && b.requires_grad()) {
            if (auto grads = kernels::conv_shared_param_vjp_max_pooled(x, g, indices, relu_out, window, *c))
              return {Tensor(), grads->dkernel, grads->dbias};
          }
        }
        return conv_grads(c, x, w, b, scatter_to(relu ? relu_mask(g, out) : g, indices, geometry));
      },
      relu ? Saves::InputsAndOutput : Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor& out) {
        // The conv's tangent (the bias's broadcast over the batch and positions), read
        // at the selected elements: max_pool's JVP; then relu's mask.
        Tensor conv_tangent = conv_jvp(c, x, w, t);
        if (t[2].defined())
          conv_tangent = conv_tangent.defined() ? add(conv_tangent, t[2]) : broadcast_to(t[2], c->output_shape());
        if (!conv_tangent.defined()) return Tensor();
        const Tensor pooled_tangent = gather_at(conv_tangent, indices, geometry);
        return relu ? relu_mask(pooled_tangent, out) : pooled_tangent;
      });
}

Tensor input_vjp_op(const ConvPtr& c, const Tensor& g, const Tensor& w) {
  return record("conv_input_vjp", kernels::conv_input_vjp(g, w, *c), {g, w},
                [c, g, w](const Tensor& h, const Tensor&) -> Grads {
                  return {g.requires_grad() ? conv_op(c, h, w) : Tensor(),
                          w.requires_grad() ? kernel_vjp_op(c, h, g) : Tensor()};
                }, Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {  // bilinear in (g, w)
                  return tangents::plus(t[0].defined() ? input_vjp_op(c, t[0], w) : Tensor(),
                                        t[1].defined() ? input_vjp_op(c, g, t[1]) : Tensor());
                });
}

Tensor kernel_vjp_op(const ConvPtr& c, const Tensor& x, const Tensor& g) {
  return record("conv_kernel_vjp", kernels::conv_kernel_vjp(x, g, *c), {x, g},
                [c, x, g](const Tensor& h, const Tensor&) -> Grads {
                  return {x.requires_grad() ? input_vjp_op(c, g, h) : Tensor(),
                          g.requires_grad() ? conv_op(c, x, h) : Tensor()};
                }, Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {  // bilinear in (x, g)
                  return tangents::plus(t[0].defined() ? kernel_vjp_op(c, t[0], g) : Tensor(),
                                        t[1].defined() ? kernel_vjp_op(c, x, t[1]) : Tensor());
                });
}

Tensor patches_adjoint_op(const GeometryPtr& geometry, const Tensor& patches);

Tensor patches_op(const GeometryPtr& geometry, const Tensor& x) {
  return record("conv_general_dilated_patches", kernels::conv_patches(x, *geometry), {x},
                [geometry](const Tensor& g, const Tensor&) -> Grads { return {patches_adjoint_op(geometry, g)}; },
                Saves::Nothing,
                [&](const Grads&, const Grads& t, const Tensor&) { return patches_op(geometry, t[0]); });
}

Tensor patches_adjoint_op(const GeometryPtr& geometry, const Tensor& patches) {
  return record("conv_patches_adjoint", kernels::conv_patches_adjoint(patches, *geometry), {patches},
                [geometry](const Tensor& g, const Tensor&) -> Grads { return {patches_op(geometry, g)}; },
                Saves::Nothing,
                [&](const Grads&, const Grads& t, const Tensor&) { return patches_adjoint_op(geometry, t[0]); });
}

// ---- argument checks (before any computation)

void check_floating(const Tensor& t, const char* what, const char* op) {
  if (!t.defined()) throw ValueError(fmt::format("{}: {} is undefined", op, what));
  if (!is_floating(t.dtype()))
    throw DTypeError(fmt::format("{}: {} {} has dtype {}; convolutions need a floating dtype (cast it first)", op,
                                 what, shape_str(t.shape()), dtype_name(t.dtype())));
}

void check_same_dtype(const Tensor& lhs, const Tensor& rhs, const char* op) {
  check_floating(lhs, "lhs", op);
  check_floating(rhs, "rhs", op);
  if (lhs.dtype() != rhs.dtype())
    throw DTypeError(fmt::format("{}: lhs {} is {} but rhs {} is {}; both must have the same dtype (cast one, or "
                                 "let the layer promote them)",
                                 op, shape_str(lhs.shape()), dtype_name(lhs.dtype()), shape_str(rhs.shape()),
                                 dtype_name(rhs.dtype())));
}

void check_groups(std::int64_t groups, std::int64_t channels, std::int64_t features, const char* op) {
  if (groups < 1) throw ValueError(fmt::format("{}: feature_group_count must be >= 1, got {}", op, groups));
  if (channels % groups != 0)
    throw ValueError(fmt::format("{}: feature_group_count {} must divide the input feature dimension {}", op, groups,
                                 channels));
  if (features % groups != 0)
    throw ValueError(fmt::format("{}: feature_group_count {} must divide the output feature dimension {}", op, groups,
                                 features));
}

void check_rhs_shape(const Tensor& rhs, const ConvContraction& c, const char* layout, const char* op) {
  if (rhs.shape() != c.kernel_shape())
    throw ShapeError(fmt::format("{}: rhs has shape {} but an input of shape {} needs a kernel of shape {} ({})", op,
                                 shape_str(rhs.shape()), shape_str(c.input_shape()), shape_str(c.kernel_shape()),
                                 layout));
}

}  // namespace

Tensor conv_general_dilated_patches(const Tensor& lhs, const std::vector<std::int64_t>& filter_shape,
                                    const std::vector<std::int64_t>& window_strides, const Padding& padding,
                                    const std::vector<std::int64_t>& lhs_dilation,
                                    const std::vector<std::int64_t>& rhs_dilation, Precision) {
  const char* op = "conv_general_dilated_patches";
  check_floating(lhs, "lhs", op);
  auto geometry = std::make_shared<const ConvGeometry>(
      kernels::make_conv_geometry(lhs.shape(), filter_shape, window_strides, padding, lhs_dilation, rhs_dilation, op));
  return patches_op(geometry, lhs);
}

namespace {

ConvPtr local_contraction(const Tensor& lhs, const Tensor& rhs, const std::vector<std::int64_t>& window_strides,
                          const Padding& padding, const std::vector<std::int64_t>& filter_shape,
                          const std::vector<std::int64_t>& lhs_dilation, const std::vector<std::int64_t>& rhs_dilation,
                          std::int64_t feature_group_count, Precision precision, const char* op) {
  check_same_dtype(lhs, rhs, op);
  ConvContraction c;
  c.geometry =
      kernels::make_conv_geometry(lhs.shape(), filter_shape, window_strides, padding, lhs_dilation, rhs_dilation, op);
  c.weights = ConvWeights::Local;
  c.groups = feature_group_count;
  c.features = rhs.dim() > 0 ? rhs.shape().back() : 0;
  c.precision = precision;
  check_groups(c.groups, c.geometry.channels, c.features, op);
  check_rhs_shape(rhs, c, "out_spatial..., prod(filter_shape) * C / feature_group_count, features", op);
  return std::make_shared<const ConvContraction>(std::move(c));
}

}  // namespace

Tensor conv_general_dilated_local(const Tensor& lhs, const Tensor& rhs,
                                  const std::vector<std::int64_t>& window_strides, const Padding& padding,
                                  const std::vector<std::int64_t>& filter_shape,
                                  const std::vector<std::int64_t>& lhs_dilation,
                                  const std::vector<std::int64_t>& rhs_dilation, std::int64_t feature_group_count,
                                  Precision precision) {
  const char* op = "conv_general_dilated_local";
  return conv_op(local_contraction(lhs, rhs, window_strides, padding, filter_shape, lhs_dilation, rhs_dilation,
                                   feature_group_count, precision, op),
                 lhs, rhs);
}

namespace {

// A conv bias must be floating, of lhs's dtype and of shape `expected` (`what` says
// what that shape is).
void check_bias(const Tensor& bias, const Tensor& lhs, const Shape& expected, const std::string& what,
                const char* op) {
  check_floating(bias, "bias", op);
  if (bias.dtype() != lhs.dtype())
    throw DTypeError(fmt::format("{}: bias {} is {} but lhs is {}; both must have the same dtype", op,
                                 shape_str(bias.shape()), dtype_name(bias.dtype()), dtype_name(lhs.dtype())));
  if (bias.shape() != expected)
    throw ShapeError(fmt::format("{}: bias has shape {} but must be {} ({})", op, shape_str(bias.shape()),
                                 shape_str(expected), what));
}

}  // namespace

Tensor conv_general_dilated_local_bias(const Tensor& lhs, const Tensor& rhs, const Tensor& bias,
                                       const std::vector<std::int64_t>& window_strides, const Padding& padding,
                                       const std::vector<std::int64_t>& filter_shape,
                                       const std::vector<std::int64_t>& lhs_dilation,
                                       const std::vector<std::int64_t>& rhs_dilation, std::int64_t feature_group_count,
                                       Precision precision) {
  const char* op = "conv_general_dilated_local";
  const ConvPtr c = local_contraction(lhs, rhs, window_strides, padding, filter_shape, lhs_dilation, rhs_dilation,
                                      feature_group_count, precision, op);
  const Shape out = c->output_shape(), bias_shape(out.begin() + 1, out.end());
  check_bias(bias, lhs, bias_shape, fmt::format("the output {} without the batch", shape_str(out)), op);
  return conv_bias_op(c, lhs, rhs, bias);
}

namespace {

ConvPtr shared_contraction(const Tensor& lhs, const Tensor& rhs, const std::vector<std::int64_t>& window_strides,
                           const Padding& padding, const std::vector<std::int64_t>& lhs_dilation,
                           const std::vector<std::int64_t>& rhs_dilation, std::int64_t feature_group_count,
                           Precision precision, const char* op) {
  check_same_dtype(lhs, rhs, op);
  if (rhs.dim() != lhs.dim() || rhs.dim() < 3)
    throw ShapeError(fmt::format("{}: lhs {} (N, spatial..., C) and rhs {} (spatial..., C/G, F) must have the same "
                                 "rank, at least 3",
                                 op, shape_str(lhs.shape()), shape_str(rhs.shape())));
  const Shape window(rhs.shape().begin(), rhs.shape().end() - 2);
  ConvContraction c;
  c.geometry = kernels::make_conv_geometry(lhs.shape(), window, window_strides, padding, lhs_dilation, rhs_dilation, op);
  c.weights = ConvWeights::Shared;
  c.groups = feature_group_count;
  c.features = rhs.shape().back();
  c.precision = precision;
  check_groups(c.groups, c.geometry.channels, c.features, op);
  check_rhs_shape(rhs, c, "HWIO: spatial..., C / feature_group_count, features", op);
  return std::make_shared<const ConvContraction>(std::move(c));
}

}  // namespace

Tensor conv_general_dilated(const Tensor& lhs, const Tensor& rhs, const std::vector<std::int64_t>& window_strides,
                            const Padding& padding, const std::vector<std::int64_t>& lhs_dilation,
                            const std::vector<std::int64_t>& rhs_dilation, std::int64_t feature_group_count,
                            Precision precision) {
  return conv_op(shared_contraction(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    feature_group_count, precision, "conv_general_dilated"),
                 lhs, rhs);
}

Tensor conv_general_dilated_bias(const Tensor& lhs, const Tensor& rhs, const Tensor& bias,
                                 const std::vector<std::int64_t>& window_strides, const Padding& padding,
                                 const std::vector<std::int64_t>& lhs_dilation,
                                 const std::vector<std::int64_t>& rhs_dilation, std::int64_t feature_group_count,
                                 Precision precision) {
  const char* op = "conv_general_dilated";
  const ConvPtr c = shared_contraction(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                       feature_group_count, precision, op);
  check_bias(bias, lhs, Shape{c->features}, "the output features", op);
  return conv_bias_op(c, lhs, rhs, bias);
}

Tensor conv_general_dilated_resolved(const kernels::ConvContraction& contraction, const Tensor& lhs,
                                     const Tensor& rhs, const Tensor& bias) {
  const char* op = op_name(contraction);
  check_same_dtype(lhs, rhs, op);
  check_groups(contraction.groups, contraction.geometry.channels, contraction.features, op);
  if (lhs.shape() != contraction.input_shape())
    throw ShapeError(fmt::format("{}: lhs has shape {} but the convolution was resolved for {}", op,
                                 shape_str(lhs.shape()), shape_str(contraction.input_shape())));
  check_rhs_shape(rhs, contraction,
                  contraction.weights == ConvWeights::Local
                      ? "out_spatial..., prod(filter_shape) * C / feature_group_count, features"
                      : "HWIO: spatial..., C / feature_group_count, features",
                  op);
  const ConvPtr c = std::make_shared<const ConvContraction>(contraction);
  if (!bias.defined()) return conv_op(c, lhs, rhs);
  check_bias(bias, lhs, bias_shape_of(*c), "the resolved convolution's bias", op);
  return conv_bias_op(c, lhs, rhs, bias);
}

Tensor conv_general_dilated_max_pool_resolved(const kernels::ConvContraction& contraction, const Tensor& lhs,
                                              const Tensor& rhs, const Tensor& bias, const Shape& window, bool relu) {
  if (!bias.defined() || window.size() != 2 || contraction.geometry.rank() != 2) return Tensor();
  const char* op = op_name(contraction);
  check_same_dtype(lhs, rhs, op);
  const Shape bias_shape = bias_shape_of(contraction);
  if (lhs.shape() != contraction.input_shape() || rhs.shape() != contraction.kernel_shape() ||
      bias.shape() != bias_shape)
    throw ShapeError(fmt::format("{}: lhs {}, rhs {} and bias {} do not match the resolved convolution ({}, {}, {})",
                                 op, shape_str(lhs.shape()), shape_str(rhs.shape()), shape_str(bias.shape()),
                                 shape_str(contraction.input_shape()), shape_str(contraction.kernel_shape()),
                                 shape_str(bias_shape)));
  return conv_bias_max_pool_op(std::make_shared<const ConvContraction>(contraction), lhs, rhs, bias, window, relu);
}

Tensor conv_general_dilated_input_vjp(const Tensor& g, const Tensor& rhs, const Shape& lhs_shape,
                                      const std::vector<std::int64_t>& window_strides, const Padding& padding,
                                      const std::vector<std::int64_t>& lhs_dilation,
                                      const std::vector<std::int64_t>& rhs_dilation, std::int64_t feature_group_count,
                                      Precision precision) {
  const char* op = "conv_general_dilated_input_vjp";
  check_floating(g, "g", op);
  check_floating(rhs, "rhs", op);
  if (g.dtype() != rhs.dtype())
    throw DTypeError(fmt::format("{}: g {} is {} but rhs {} is {}; both must have the same dtype", op,
                                 shape_str(g.shape()), dtype_name(g.dtype()), shape_str(rhs.shape()),
                                 dtype_name(rhs.dtype())));
  if (rhs.dim() != static_cast<std::int64_t>(lhs_shape.size()) || rhs.dim() < 3)
    throw ShapeError(fmt::format("{}: lhs_shape {} (N, spatial..., C) and rhs {} (spatial..., C/G, F) must have the "
                                 "same rank, at least 3",
                                 op, shape_str(lhs_shape), shape_str(rhs.shape())));
  const Shape window(rhs.shape().begin(), rhs.shape().end() - 2);
  ConvContraction c;
  c.geometry = kernels::make_conv_geometry(lhs_shape, window, window_strides, padding, lhs_dilation, rhs_dilation, op);
  c.weights = ConvWeights::Shared;
  c.groups = feature_group_count;
  c.features = rhs.shape().back();
  c.precision = precision;
  check_groups(c.groups, c.geometry.channels, c.features, op);
  check_rhs_shape(rhs, c, "HWIO: spatial..., C / feature_group_count, features", op);
  if (g.shape() != c.output_shape())
    throw ShapeError(fmt::format("{}: g has shape {} but the convolution of an input of shape {} has output shape {}",
                                 op, shape_str(g.shape()), shape_str(lhs_shape), shape_str(c.output_shape())));
  return input_vjp_op(std::make_shared<const ConvContraction>(std::move(c)), g, rhs);
}

Tensor conv_input_vjp_resolved(const kernels::ConvContraction& contraction, const Tensor& g, const Tensor& rhs) {
  const char* op = contraction.weights == ConvWeights::Local ? "conv_general_dilated_local_input_vjp"
                                                             : "conv_general_dilated_input_vjp";
  check_floating(g, "g", op);
  check_floating(rhs, "rhs", op);
  if (g.dtype() != rhs.dtype())
    throw DTypeError(fmt::format("{}: g {} is {} but rhs {} is {}; both must have the same dtype", op,
                                 shape_str(g.shape()), dtype_name(g.dtype()), shape_str(rhs.shape()),
                                 dtype_name(rhs.dtype())));
  check_groups(contraction.groups, contraction.geometry.channels, contraction.features, op);
  check_rhs_shape(rhs, contraction,
                  contraction.weights == ConvWeights::Local
                      ? "out_spatial..., prod(filter_shape) * C / feature_group_count, features"
                      : "HWIO: spatial..., C / feature_group_count, features",
                  op);
  if (g.shape() != contraction.output_shape())
    throw ShapeError(fmt::format("{}: g has shape {} but the convolution of an input of shape {} has output shape {}",
                                 op, shape_str(g.shape()), shape_str(contraction.input_shape()),
                                 shape_str(contraction.output_shape())));
  return input_vjp_op(std::make_shared<const ConvContraction>(contraction), g, rhs);
}

Tensor conv_general_dilated_local_input_vjp(const Tensor& g, const Tensor& rhs, const Shape& lhs_shape,
                                            const std::vector<std::int64_t>& window_strides, const Padding& padding,
                                            const std::vector<std::int64_t>& filter_shape,
                                            const std::vector<std::int64_t>& lhs_dilation,
                                            const std::vector<std::int64_t>& rhs_dilation,
                                            std::int64_t feature_group_count, Precision precision) {
  const char* op = "conv_general_dilated_local_input_vjp";
  check_floating(rhs, "rhs", op);
  ConvContraction c;
  c.geometry =
      kernels::make_conv_geometry(lhs_shape, filter_shape, window_strides, padding, lhs_dilation, rhs_dilation, op);
  c.weights = ConvWeights::Local;
  c.groups = feature_group_count;
  c.features = rhs.dim() > 0 ? rhs.shape().back() : 0;
  c.precision = precision;
  return conv_input_vjp_resolved(c, g, rhs);
}

}  // namespace xgrad
