// Mixed-precision policy for a module tree, in the spirit of DeepMind's jmp and
// Flax's dtype / param_dtype attributes:
//
//   nn::apply_policy(model, nn::parse_policy("params=float32,compute=bfloat16,output=float32"));
//
// sets every layer's param_dtype (storage; existing parameters are converted) and
// dtype (computation), and makes the root cast its output. Modules without those
// options (custom ones, Sequential) are left as they are. Without an output= entry
// the logits stay in the compute dtype, but the losses (layers/losses.hpp) always
// compute in float32: float16 and bfloat16 inputs are cast up, so the loss, its
// reduction and the first cotangent are float32 (jmp's and optax's practice).
//
// float16 training also needs loss scaling, since small gradients underflow. The
// loop, as torch's GradScaler:
//
//   nn::DynamicLossScale scaler;
//   Tensor loss = losses::softmax_cross_entropy(model(x), y, losses::Reduction::Mean);
//   opt.zero_grad();
//   scaler.scale(loss).backward();
//   scaler.step(opt, model);   // unscale; opt.step() if every gradient is finite, else skip
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad::nn {

class Module;

// A mixed-precision policy: the dtypes of parameters, computation and the root's output.
struct DTypePolicy {
  DType param_dtype = DType::Float32;                  // storage dtype of every parameter
  std::optional<DType> compute_dtype = std::nullopt;  // empty: promoted (Flax's dtype=None)
  std::optional<DType> output_dtype = std::nullopt;   // empty: no cast at the root
  std::string to_string() const;       // "params=float32,compute=bfloat16,output=float32"
};

// Comma-separated key=value pairs; keys params|p, compute|c, output|o (each at most
// once, any omitted keeps its default); values are dtype names ("bfloat16") or the
// short forms f16, bf16, f32, f64, half (float16) and full (float32). Throws ValueError.
DTypePolicy parse_policy(std::string_view spec);

// Sets dtype = compute_dtype and param_dtype on every module of `root`'s tree that has them (existing
// parameters are converted) and makes `root` cast its output to output_dtype.
void apply_policy(Module& root, const DTypePolicy& policy);

// Dynamic loss scaling (jmp.DynamicLossScale): the loss is multiplied by `scale`
// before backward; gradients are divided by it after. A step with a non-finite
// gradient is to be skipped and halves the scale (down to min_scale); every
// growth_interval finite steps in a row double it.
// Designated initializers name the fields in this order: initial_scale, growth_interval, factor, min_scale.
struct LossScaleOptions {
  double initial_scale = 32768.0;  // 2^15
  std::int64_t growth_interval = 2000;  // finite steps in a row before the scale grows
  double factor = 2.0;                  // the scale is multiplied / divided by it
  double min_scale = 1.0;               // the scale never drops below it
};

// The loss scale state (see above): scale the loss, then unscale and check the gradients each step.
class DynamicLossScale {
 public:
  // ValueError unless initial_scale > 0, factor > 1, growth_interval >= 1 and min_scale > 0.
  explicit DynamicLossScale(LossScaleOptions options = {});

  Tensor scale(const Tensor& loss) const;  // loss * loss_scale(), differentiable
  // Divides each gradient by the scale, in place, and updates the scale. Returns
  // true when every gradient is finite (apply the step), false to skip it.
  bool unscale_and_check(std::vector<Tensor>& grads);
  bool unscale_and_check(Module& model);  // the .grad() of every parameter that has one

  // torch's GradScaler.step: unscales the gradients of `model`'s parameters and runs
  // optimizer.step() only when all are finite; the scale is updated either way.
  // Returns whether the step ran. `optimizer` is anything with step(), such as
  // optim::Optimizer.
  template <class Optimizer>
  bool step(Optimizer& optimizer, Module& model) {
    if (!unscale_and_check(model)) return false;
    optimizer.step();
    return true;
  }

  // The current scale.
  double loss_scale() const { return scale_; }
  // Finite steps in a row since the last growth or skipped step.
  std::int64_t good_steps() const { return good_steps_; }

 private:
  LossScaleOptions options_;
  double scale_;
  std::int64_t good_steps_ = 0;
};

}  // namespace xgrad::nn
