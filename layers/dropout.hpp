// Dropout (flax.linen.Dropout): in training, zeroes each element with probability
// `rate` and scales the kept ones by 1 / (1 - rate); the identity in eval() and
// during init(). broadcast_dims share one mask value along those axes (e.g. {1, 2}
// for spatial dropout of NHWC maps). Masks come from the module's own stream: the
// seed, the module path and a per-call counter.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "layers/module.hpp"

namespace xgrad::nn {

// Designated initializers name the fields in this order: rate, broadcast_dims, deterministic.
struct DropoutOptions {
  double rate = 0.0;  // probability of dropping an element, in [0, 1]
  std::vector<std::int64_t> broadcast_dims = {};  // axes along which one mask value is shared
  // Empty: follow the module's mode (deterministic in eval()).
  std::optional<bool> deterministic = std::nullopt;
};

// Random zeroing of inputs in training (see the top of this file); no parameters.
class Dropout : public Module {
 public:
  // ValueError unless rate is in [0, 1].
  explicit Dropout(DropoutOptions options);
  std::string describe() const override;  // "Dropout, rate=0.5"
  // The options it was built with.
  const DropoutOptions& options() const { return options_; }

 protected:
  // x * mask / (1 − rate) in training (zeros for rate 1), x otherwise (see the top of this file).
  Tensor forward(const Tensor& x) override;

 private:
  DropoutOptions options_;
};

}  // namespace xgrad::nn
