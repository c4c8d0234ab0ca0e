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
#include "layers/initializers.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

// An int that broadcasts to every spatial dim (Flax's int) or one value per dim.
struct IntOrInts {
  std::vector<std::int64_t> values;
  IntOrInts() = default;                   // empty: Flax's None
  IntOrInts(int value) : values{value} {}  // NOLINT(google-explicit-constructor): Flax accepts ints
  IntOrInts(std::initializer_list<int> list) : values(list.begin(), list.end()) {}
  IntOrInts(const std::vector<int>& list) : values(list.begin(), list.end()) {}  // NOLINT
  IntOrInts(const std::vector<std::int64_t>& list) : values(list) {}           // NOLINT
  std::size_t size() const { return values.size(); }
  auto begin() const { return values.begin(); }
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
  IntOrInts strides = 1;
  Padding padding = "SAME";                        // SAME, VALID, CIRCULAR, REFLECT, CAUSAL, SAME_LOWER, ints, pairs
  IntOrInts input_dilation = 1;
  IntOrInts kernel_dilation = 1;
  std::int64_t feature_group_count = 1;
  bool use_bias = true;
  std::optional<Tensor> mask = std::nullopt;       // multiplies the kernel; must have the kernel's shape
  std::optional<DType> dtype = std::nullopt;       // computation dtype; empty: promoted from input and params
  DType param_dtype = DType::Float32;
  Precision precision = Precision::Default;
  Initializer kernel_init = initializers::lecun_normal();
  Initializer bias_init = initializers::zeros();

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
};

// What Conv and ConvLocal share (Flax's _Conv): the options, their checks and the
// forward pass; they differ only in whether the kernel is shared across positions.
// Neither is the other: a ConvLocal is not a Conv.
class ConvBase : public Module {
 public:
  std::string describe() const override;  // "Conv, features=16, kernel_size=[3, 3]"
  int feature_rank() const override { return static_cast<int>(options_.kernel_size.size()) + 1; }
  const ConvOptions& options() const { return options_; }
  bool shared_weights() const { return shared_weights_; }

 protected:
  ConvBase(ConvOptions options, bool shared_weights);
  Tensor forward(const Tensor& x) override;

 private:
  const char* layer_name() const { return shared_weights_ ? "Conv" : "ConvLocal"; }
  ConvOptions options_;
  bool shared_weights_;
};

// flax.linen.Conv: one kernel (k..., C/G, F) for every output position.
class Conv : public ConvBase {
 public:
  explicit Conv(ConvOptions options) : ConvBase(std::move(options), /*shared_weights=*/true) {}
};

// flax.linen.ConvLocal: a kernel block per output position, (O..., prod(k)*C/G, F).
class ConvLocal : public ConvBase {
 public:
  explicit ConvLocal(ConvOptions options) : ConvBase(std::move(options), /*shared_weights=*/false) {}
};

}  // namespace xgrad::nn
