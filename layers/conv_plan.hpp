// What flax.linen Conv / ConvLocal (`_Conv.__call__`) do, minus creating
// parameters: plan_conv resolves the attributes for one input shape in the order
// of docs/convlocal.md §2.4 and raises every upstream error before any computation;
// conv_apply runs the layer on given kernel / bias / mask tensors.
//
//   auto plan = nn::plan_conv(x.shape(), {.features = 4, .kernel_size = {3, 3},
//                                         .padding = "CIRCULAR", .shared_weights = false});
//   Tensor kernel = ...;  // plan.kernel_shape
//   Tensor y = nn::conv_apply(plan, x, kernel, bias);
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/padding.hpp"
#include "core/precision.hpp"
#include "core/tensor.hpp"

namespace xgrad::kernels {
struct ConvGeometry;  // core/kernels/conv/conv_geometry.hpp (internal)
}  // namespace xgrad::kernels

namespace xgrad::nn {

// The attributes of _Conv that shape the computation. C++ cannot tell Flax's int
// from a one-element tuple, so a one-entry strides/dilation {s} is the int s,
// broadcast to every spatial dim; {} is Flax's None (= 1). kernel_size {k} is a
// 1-d kernel, as Flax's int k.
struct ConvSpec {
  std::int64_t features = 0;                        // F: output features
  std::vector<std::int64_t> kernel_size;            // the window extent per spatial dim; its length is the rank
  std::vector<std::int64_t> strides = {1};          // window strides
  Padding padding = "SAME";                         // Flax's padding: a string, an int or (lo, hi) pairs
  std::vector<std::int64_t> input_dilation = {1};   // lhs dilation (Flax's input_dilation)
  std::vector<std::int64_t> kernel_dilation = {1};  // rhs (atrous) dilation
  std::int64_t feature_group_count = 1;  // > 1 with shared_weights = false: an xgrad extension (docs/convlocal.md §11)
  bool shared_weights = true;            // false: ConvLocal
};

// The Flax-side padding applied before the lax op (then the lax padding is 'VALID').
enum class Prepad { None, Wrap, Reflect, Causal };

// Everything _Conv.__call__ resolves for one input shape.
struct ConvPlan {
  ConvSpec spec;                      // the attributes as given
  std::string name;                   // prefixes errors: "Conv", "ConvLocal" or a module path
  Shape input_shape;                  // (batch..., M..., C) as given
  Shape batch_shape;                  // the leading batch axes (empty when there are none)
  Shape flat_input_shape;             // (N, M..., C): batch axes flattened, or a batch of 1 added
  // strides, input_dilation and kernel_dilation, each broadcast to the n spatial dims.
  std::vector<std::int64_t> strides, input_dilation, kernel_dilation;  // broadcast to the n spatial dims
  // \var input_dilation
  // The lhs dilation broadcast to the n spatial dims.
  Padding padding;                    // canonicalize_padding(spec.padding, n)
  Prepad prepad = Prepad::None;       // the padding applied before the lax op, if any
  PadPairs prepad_pads;               // per spatial dim
  Shape prepadded_shape;              // (N, M~..., C)
  Padding lax_padding;                // what the lax op receives: a string or (lo, hi) pairs
  PadPairs lax_pads;                  // the lax padding resolved (padtype_to_pads)
  std::shared_ptr<const kernels::ConvGeometry> geometry;  // the lax op's, resolved once here (conv_apply reuses it)
  Shape out_spatial;                  // O
  Shape kernel_shape;                 // (k..., C/G, F) shared; (O..., S*C/G, F) local
  Shape bias_shape;                   // (F,) shared; (O..., F) local
  Shape output_shape;                 // batch_shape + (O..., F)

  // n, the number of spatial dims.
  std::int64_t rank() const { return static_cast<std::int64_t>(spec.kernel_size.size()); }
  // C, the input's feature count.
  std::int64_t in_features() const { return input_shape.back(); }
};

// The first checks of every Flax conv layer (Conv, ConvLocal, ConvTranspose): the
// kernel size (non-empty, positive; its length n is the conv rank; ValueError), features >= 0,
// and an input of rank >= n + 1. Returns the input's batch axes (batch..., n spatial
// dims, features) and its shape with them flattened into one axis (or a batch of 1
// added where there are none). Errors are prefixed with `who`.
std::pair<Shape, Shape> check_kernel_and_split_batch(const Shape& input_shape, const Shape& kernel_size,
                                                     std::int64_t features, const char* who);

// The options check every conv layer (Conv, ConvLocal, ConvTranspose) runs in its
// constructor, so a typo fails where it is written rather than at the first call:
// features > 0; kernel_size non-empty and positive (its length n is the conv rank);
// each of `per_dim` (strides, dilations; name and values) empty, one int, or n
// entries, all positive; `padding` a string the layer accepts (the error lists
// every accepted form), an int, or n ints / (lo, hi) pairs. Throws ValueError
// prefixed with `who`.
enum class ConvLayerKind { Conv, ConvTranspose };
// Checks a conv layer's options as described above; ConvLayerKind selects which padding strings are accepted.
void check_conv_layer_options(const char* who, ConvLayerKind kind, std::int64_t features, const Shape& kernel_size,
                              const std::vector<std::pair<const char*, std::vector<std::int64_t>>>& per_dim,
                              const Padding& padding);

// Resolves spec for inputs of `input_shape` ((batch..., spatial..., features)),
// in _Conv.__call__'s order: kernel size, batch axes, strides and dilations,
// canonicalize_padding, CIRCULAR/REFLECT/CAUSAL pre-padding, feature groups, the
// lax shape checks, the mask shape. Throws ValueError / ShapeError /
// NotImplementedError prefixed with `name` (default "Conv" or "ConvLocal").
ConvPlan plan_conv(const Shape& input_shape, const ConvSpec& spec,
                   const std::optional<Shape>& mask_shape = std::nullopt, std::string_view name = {});

// The layer's forward pass, differentiable in inputs, kernel and bias:
// flatten batch -> pre-pad -> kernel * mask -> promote_dtype(inputs, kernel, bias,
// dtype) -> lax conv -> + bias -> restore batch axes. kernel/bias/mask must have
// the plan's shapes.
Tensor conv_apply(const ConvPlan& plan, const Tensor& inputs, const Tensor& kernel,
                  const std::optional<Tensor>& bias = std::nullopt, const std::optional<Tensor>& mask = std::nullopt,
                  std::optional<DType> dtype = std::nullopt, Precision precision = Precision::Default);

// max_pool(conv_apply(plan, inputs, kernel, bias, nullopt, dtype, precision), window,
// strides = window, "VALID") as one pass (autograd/conv.hpp:
// conv_general_dilated_max_pool_resolved): a 2-D plan (shared or local) with one batch
// axis, no pre-padding, float32 throughout (no promotion), and the fast kernels
// serving it; with `relu`, relu of that (also relu before the pool: the same values
// and gradients). Undefined otherwise (then call conv_apply, max_pool and relu).
Tensor conv_max_pool_apply(const ConvPlan& plan, const Tensor& inputs, const Tensor& kernel, const Tensor& bias,
                           const Shape& window, std::optional<DType> dtype = std::nullopt,
                           Precision precision = Precision::Default, bool relu = false);

}  // namespace xgrad::nn
