// Conv and ConvLocal modules (flax.linen.Conv / flax.linen.ConvLocal).
//
// Both derive from ConvBase (Flax's _Conv): the same attributes, defaults and checks, differing only
// in whether the kernel is shared across output positions.
//
//   nn::ConvLocal local({.features = 16, .kernel_size = {3, 3}, .strides = 2,
//                        .padding = "CIRCULAR", .param_dtype = DType::Float32});
//   Tensor y = local(x);   // x: [batch..., H, W, C]; parameters created at the first call
//
// Parameters: `kernel` of shape (k..., C/G, F) for Conv and (O..., prod(k)*C/G, F) for
// ConvLocal, whose patch axis is channel-major (docs/convlocal.md §5.2); `bias` (F,) or (O..., F).
// A ConvLocal is tied to the input spatial size it was initialised for.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "core/padding.hpp"
#include "core/precision.hpp"
#include "layers/conv_plan.hpp"
#include "layers/initializers.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

// An int that broadcasts to every spatial dim (Flax's int) or one value per dim.
struct IntOrInts {
  std::vector<std::int64_t> values;  // one value for every dim, one per dim, or none
  IntOrInts() = default;                   // empty: Flax's None
  // One int for every spatial dim.
  IntOrInts(int value) : values{value} {}  // NOLINT(google-explicit-constructor): Flax accepts ints
  // One value per spatial dim ({k} alone: every dim).
  IntOrInts(std::initializer_list<int> list) : values(list.begin(), list.end()) {}
  // One value per spatial dim.
  IntOrInts(const std::vector<int>& list) : values(list.begin(), list.end()) {}  // NOLINT
  // One value per spatial dim.
  IntOrInts(const std::vector<std::int64_t>& list) : values(list) {}           // NOLINT
  // The number of values.
  std::size_t size() const { return values.size(); }
  // Iterates over the values.
  auto begin() const { return values.begin(); }
  // End of the values.
  auto end() const { return values.end(); }
};

// Designated initializers must name the fields in this declaration order (C++20):
//   features, kernel_size, strides, padding, input_dilation, kernel_dilation,
//   feature_group_count, use_bias, mask, dtype, param_dtype, precision, kernel_init, bias_init
// e.g. {.features = 8, .kernel_size = 9, .padding = "CAUSAL", .use_bias = false}. Out of
// order (or a misspelt field), g++ only says "no matching function for call to
// ConvLocal::ConvLocal(<brace-enclosed initializer list>)". The setters below chain in
// any order instead: ConvOptions{}.set_features(8).set_kernel_size(9).set_padding("CAUSAL").
// Every option is checked when the layer is constructed (ValueError).
struct ConvOptions {
  std::int64_t features = 0;                       // required, > 0
  IntOrInts kernel_size;                           // required; an int k or {k} is a 1-D kernel (Flax's kernel_size=k)
  IntOrInts strides = 1;  // window strides
  Padding padding = "SAME";                        // SAME, VALID, CIRCULAR, REFLECT, CAUSAL, SAME_LOWER, ints, pairs
  IntOrInts input_dilation = 1;  // lhs dilation (a transposed conv when > 1)
  IntOrInts kernel_dilation = 1;  // rhs (atrous) dilation of the kernel
  std::int64_t feature_group_count = 1;  // G: divides C and F; each group of F/G features reads C/G channels
  bool use_bias = true;  // add a learned bias: (F,) for Conv, (O..., F) for ConvLocal
  std::optional<Tensor> mask = std::nullopt;       // multiplies the kernel; must have the kernel's shape
  std::optional<DType> dtype = std::nullopt;       // computation dtype; empty: promoted from input and params
  DType param_dtype = DType::Float32;  // dtype of kernel and bias
  Precision precision = Precision::Default;  // matmul precision of the conv (core/precision.hpp)
  Initializer kernel_init = initializers::lecun_normal();  // initializer of `kernel`
  Initializer bias_init = initializers::zeros();  // initializer of `bias`

  // @{
  // Chainable setters: each sets the field of its name and returns *this.
  ConvOptions& set_features(std::int64_t v) { features = v; return *this; }
  ConvOptions& set_kernel_size(IntOrInts v) { kernel_size = std::move(v); return *this; }
  ConvOptions& set_strides(IntOrInts v) { strides = std::move(v); return *this; }
  ConvOptions& set_padding(Padding v) { padding = std::move(v); return *this; }
  ConvOptions& set_input_dilation(IntOrInts v) { input_dilation = std::move(v); return *this; }
  ConvOptions& set_kernel_dilation(IntOrInts v) { kernel_dilation = std::move(v); return *this; }
  ConvOptions& set_feature_group_count(std::int64_t v) { feature_group_count = v; return *this; }
  ConvOptions& set_use_bias(bool v) { use_bias = v; return *this; }
  ConvOptions& set_mask(Tensor v) { mask = std::move(v); return *this; }
  ConvOptions& set_dtype(std::optional<DType> v) { dtype = v; return *this; }
  ConvOptions& set_param_dtype(DType v) { param_dtype = v; return *this; }
  ConvOptions& set_precision(Precision v) { precision = v; return *this; }
  ConvOptions& set_kernel_init(Initializer v) { kernel_init = std::move(v); return *this; }
  ConvOptions& set_bias_init(Initializer v) { bias_init = std::move(v); return *this; }
  // @}
};

class MaxPoolFusion;

// What Conv and ConvLocal share (Flax's _Conv): the options, their checks and the
// forward pass; they differ only in whether the kernel is shared across positions.
// Neither is the other: a ConvLocal is not a Conv.
class ConvBase : public Module {
 public:
  std::string describe() const override;  // "Conv, features=16, kernel_size=[3, 3]"
  int feature_rank() const override { return static_cast<int>(options_.kernel_size.size()) + 1; }
  // Per example, from the input's patches (conv_general_dilated_patches) and g_b: Conv's
  // kernel = Σ_positions patchᵀ g, ConvLocal's = patch ⊗ g at each position; bias likewise.
  // One leading batch axis, one feature group, no mask and no CIRCULAR / REFLECT / CAUSAL
  // pre-padding; otherwise none (the loop fallback runs).
  std::optional<StateDict> per_example_param_grads(const Tensor& input, const Tensor& output,
                                                   const Tensor& output_grad) const override;
  // The options it was built with.
  const ConvOptions& options() const { return options_; }
  // true for Conv (one kernel), false for ConvLocal (one per position).
  bool shared_weights() const { return shared_weights_; }

 protected:
  ConvBase(ConvOptions options, bool shared_weights);  // Checks the options (ValueError naming the layer and option).
  // x (batch..., spatial..., C) -> (batch..., O..., F): the lax conv
  // (autograd/conv.hpp) of x with the kernel [* mask], plus bias. Parameters are
  // created at the first call from C; ShapeError for a rank below n + 1 or a later
  // input with other C (ConvLocal: other spatial size); ValueError for a bad mask,
  // feature_group_count not dividing C, or a padding the input cannot take.
  Tensor forward(const Tensor& x) override;

 private:
  const char* layer_name() const { return shared_weights_ ? "Conv" : "ConvLocal"; }
  ConvSpec spec() const;

  ConvOptions options_;
  bool shared_weights_;
};

// A request, for the calls made on this thread while it lives, that `conv` return
// max_pool(conv(x), window, strides = window, "VALID"), or with `relu` relu of that,
// from one pass that never writes the conv output (nn::Sequential makes one for a Conv
// or ConvLocal followed by such a MaxPool, and a ReLU before or after it). The conv's next call
// grants it where that pass exists (conv_max_pool_apply: float32, 2-D, a bias, no
// mask, the fast kernels) and computes its plain output otherwise; granted() tells
// which. Values and gradients are those of the layers.
class MaxPoolFusion {
 public:
  // For the next call of `conv` on this thread.
  MaxPoolFusion(const ConvBase& conv, Shape window, bool relu = false);
  ~MaxPoolFusion();
  MaxPoolFusion(const MaxPoolFusion&) = delete;
  MaxPoolFusion& operator=(const MaxPoolFusion&) = delete;
  // Whether the conv's last call returned the pooled output.
  bool granted() const { return granted_; }

 private:
  friend class ConvBase;
  const ConvBase* conv_;  // null once a call has taken the request
  Shape window_;
  bool relu_;
  bool granted_ = false;
  MaxPoolFusion* enclosing_;
};

// flax.linen.Conv: one kernel (k..., C/G, F) for every output position.
class Conv : public ConvBase {
 public:
  // Checks the options (ValueError).
  explicit Conv(ConvOptions options) : ConvBase(std::move(options), /*shared_weights=*/true) {}
};

// flax.linen.ConvLocal: a kernel block per output position, (O..., prod(k)*C/G, F).
class ConvLocal : public ConvBase {
 public:
  // Checks the options (ValueError).
  explicit ConvLocal(ConvOptions options) : ConvBase(std::move(options), /*shared_weights=*/false) {}
};

}  // namespace xgrad::nn
