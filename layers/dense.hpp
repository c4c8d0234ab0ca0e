// Dense and DenseGeneral (flax.linen.Dense / DenseGeneral).
//
//   nn::Dense fc({.features = 128});                 // y = x W + b over the last axis
//   nn::DenseGeneral head({.features = {4, 8}, .axis = {-2, -1}});
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/precision.hpp"
#include "layers/initializers.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

// Designated initializers name the fields in this order: features, use_bias, dtype, param_dtype,
//   precision, kernel_init, bias_init.
struct DenseOptions {
  std::int64_t features = 0;                  // required
  bool use_bias = true;  // add a learned bias [features]
  std::optional<DType> dtype = std::nullopt;  // computation dtype; empty: promoted from input and params
  DType param_dtype = DType::Float32;         // storage dtype of kernel and bias
  Precision precision = Precision::Default;  // matmul precision (core/precision.hpp)
  Initializer kernel_init = initializers::lecun_normal();  // initializer of `kernel`
  Initializer bias_init = initializers::zeros();  // initializer of `bias`
};

// flax.linen.Dense: y = x kernel + bias over the last axis of x [batch..., in] ->
// [batch..., features]. Parameters: kernel [in, features] (in = the input's last dim),
// bias [features].
class Dense : public Module {
 public:
  explicit Dense(DenseOptions options);  // ValueError for features <= 0
  std::string describe() const override;  // "Dense, features=10"
  int feature_rank() const override { return 1; }  // the kernel depends on the last input dim only
  // The options it was built with.
  const DenseOptions& options() const { return options_; }
  // Per example: kernel = x_bᵀ g_b (summed over any middle axes), bias = sum of g_b.
  std::optional<StateDict> per_example_param_grads(const Tensor& input, const Tensor& output,
                                                   const Tensor& output_grad) const override;

 protected:
  Tensor forward(const Tensor& x) override;  // ShapeError for a scalar x, or a last dim other than the kernel's.

 private:
  DenseOptions options_;
};

// Designated initializers name the fields in this order: features, axis, batch_dims, use_bias,
//   dtype, param_dtype, precision, kernel_init, bias_init.
struct DenseGeneralOptions {
  Shape features = {};                        // required: output feature dims
  std::vector<std::int64_t> axis = {-1};      // input axes contracted, in kernel order
  std::vector<std::int64_t> batch_dims = {};  // leading input axes shared with the kernel (0, 1, ...)
  bool use_bias = true;  // add a learned bias [batch..., features...]
  std::optional<DType> dtype = std::nullopt;  // computation dtype; empty: promoted from input and params
  DType param_dtype = DType::Float32;  // storage dtype of kernel and bias
  Precision precision = Precision::Default;  // matmul precision (core/precision.hpp)
  Initializer kernel_init = initializers::lecun_normal();  // applied to the flattened [prod(in), prod(features)]
  Initializer bias_init = initializers::zeros();            // applied to the flattened bias
};

// flax.linen.DenseGeneral: contracts the input axes `axis` with the kernel.
// Output: batch dims, then the remaining input dims, then features.
// Parameters: kernel [batch..., contracted..., features...], bias [batch..., features...].
class DenseGeneral : public Module {
 public:
  explicit DenseGeneral(DenseGeneralOptions options);  // ValueError for empty or non-positive features
  std::string describe() const override;  // "DenseGeneral, features=[4, 8]"
  // The options it was built with.
  const DenseGeneralOptions& options() const { return options_; }
  // Per example, without batch_dims and with axis 0 not contracted: kernel = x_bᵀ g_b
  // (the example's remaining input positions as rows), bias = Σ g_b over them. With
  // batch_dims (a kernel slice per example) it declines: per_example_grads loops.
  std::optional<StateDict> per_example_param_grads(const Tensor& input, const Tensor& output,
                                                   const Tensor& output_grad) const override;

 protected:
  // ValueError for batch_dims that are not leading and consecutive,
  // or axes that repeat or overlap them; ShapeError for axes out of range.
  Tensor forward(const Tensor& x) override;

 private:
  DenseGeneralOptions options_;
};

}  // namespace xgrad::nn
