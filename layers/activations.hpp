// Activation functions, as jax.nn / flax.linen.activation, built from
// differentiable ops; and PReLU, the one with a parameter.
//
// relu, sigmoid, tanh, softplus, gelu (tanh approximation by default), softmax
// and log_softmax are the ops of autograd/ops.hpp, re-exported here.
#pragma once

#include <cstdint>
#include <vector>

#include "autograd/ops.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

using xgrad::gelu;
using xgrad::log_softmax;
using xgrad::relu;
using xgrad::sigmoid;
using xgrad::softmax;
using xgrad::softplus;
using xgrad::tanh;

Tensor relu6(const Tensor& x);                                   // min(max(x, 0), 6); gradient 1 only inside (0, 6)
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);  // x >= 0 ? x : slope x
Tensor elu(const Tensor& x, double alpha = 1.0);                 // x > 0 ? x : alpha (e^x - 1)
Tensor celu(const Tensor& x, double alpha = 1.0);                // max(x, 0) + alpha (e^(min(x, 0) / alpha) - 1)
Tensor selu(const Tensor& x);                                    // 1.0507... elu(x, 1.6732...)
Tensor silu(const Tensor& x);                                    // x sigmoid(x)
// silu under its other name.
inline Tensor swish(const Tensor& x) { return silu(x); }
Tensor soft_sign(const Tensor& x);                               // x / (|x| + 1)
Tensor hard_tanh(const Tensor& x);                               // clamp to [-1, 1]
Tensor hard_sigmoid(const Tensor& x);                            // relu6(x + 3) / 6
Tensor hard_silu(const Tensor& x);                               // x hard_sigmoid(x)
// hard_silu under its other name.
inline Tensor hard_swish(const Tensor& x) { return hard_silu(x); }
Tensor log_sigmoid(const Tensor& x);                             // -softplus(-x), stable
Tensor glu(const Tensor& x, std::int64_t axis = -1);             // a sigmoid(b) for the halves [a, b] along axis
// (x - mean) / sqrt(var + epsilon) over `axes`, var = E[x^2] - E[x]^2 (jax.nn.standardize).
Tensor standardize(const Tensor& x, const std::vector<std::int64_t>& axes = {-1}, double epsilon = 1e-5);

// Designated initializers name the fields in this order: param_dtype, negative_slope_init.
struct PReLUOptions {
  DType param_dtype = DType::Float32;  // dtype of the parameter "negative_slope"
  double negative_slope_init = 0.01;   // the slope's initial value
};

// x >= 0 ? x : a x with a learnt scalar a (flax.linen.PReLU; parameter "negative_slope").
class PReLU : public Module {
 public:
  // Stores the options; the slope is created at the first call.
  explicit PReLU(PReLUOptions options = {}) : options_(options) {}
  std::string describe() const override { return "PReLU"; }

 protected:
  // x >= 0 ? x : a x, elementwise, any shape.
  Tensor forward(const Tensor& x) override;

 private:
  PReLUOptions options_;
};

// relu as a layer (Keras's ReLU, torch.nn.ReLU): relu(x), any shape. A module rather
// than an nn::Lambda so that nn::Sequential can see it: a Conv, a MaxPool and a ReLU
// in a row, the ReLU before or after the pool, run as one pass (layers/conv.hpp's
// MaxPoolFusion).
class ReLU : public Module {
 public:
  std::string describe() const override { return "ReLU"; }

 protected:
  Tensor forward(const Tensor& x) override;
};

}  // namespace xgrad::nn
