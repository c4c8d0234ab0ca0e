// Conv and ConvLocal modules (flax.linen.Conv / flax.linen.ConvLocal).
//
// Both are Flax's _Conv: the same attributes, defaults and checks, differing only
// in whether the kernel is shared across output positions.
//
//   nn::ConvLocal local({.features = 16, .kernel_size = {3, 3}, .strides = 2,
//                        .padding = "CIRCULAR", .param_dtype = DType::Float32});
//   Tensor y = local(x);   // x: [batch..., H, W, C]; parameters created at the first call
//
// Parameters: `kernel` of shape (k..., C/G, F) for Conv and (O..., prod(k)*C/G, F) for
// ConvLocal, whose patch axis is channel-major (spec §5.2); `bias` (F,) or (O..., F).
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
};

class Conv : public Module {
 public:
  explicit Conv(ConvOptions options) : Conv(std::move(options), /*shared_weights=*/true) {}
  std::string describe() const override;  // "Conv, features=16, kernel_size=[3, 3]"
  int feature_rank() const override { return static_cast<int>(options_.kernel_size.size()) + 1; }
  const ConvOptions& options() const { return options_; }

 protected:
  Conv(ConvOptions options, bool shared_weights);
  Tensor forward(const Tensor& x) override;

 private:
  ConvOptions options_;
  bool shared_weights_;
};

class ConvLocal : public Conv {
 public:
  explicit ConvLocal(ConvOptions options) : Conv(std::move(options), /*shared_weights=*/false) {}
};

}  // namespace xgrad::nn
