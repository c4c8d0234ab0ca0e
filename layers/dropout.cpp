#include "layers/dropout.hpp"

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "core/error.hpp"

namespace xgrad::nn {

Dropout::Dropout(DropoutOptions options) : options_(std::move(options)) {
  if (!(options_.rate >= 0.0 && options_.rate <= 1.0))
    throw ValueError(fmt::format("Dropout: rate must be in [0, 1], got {}", options_.rate));
}

std::string Dropout::describe() const { return fmt::format("Dropout, rate={}", options_.rate); }

Tensor Dropout::forward(const Tensor& x) {
  const bool deterministic = options_.deterministic.value_or(!is_training()) || is_initializing();
  if (options_.rate == 0.0 || deterministic) return x;
  if (options_.rate == 1.0) return zeros_like(x);
  const double keep = 1.0 - options_.rate;
  Shape mask_shape = x.shape();
  for (auto d : options_.broadcast_dims) mask_shape[static_cast<std::size_t>(normalize_axis(d, x.dim(), "broadcast_dims"))] = 1;
  const Tensor mask = random_bernoulli(next_rng("dropout"), mask_shape, keep);
  return where(mask, x / keep, weak_scalar(0.0, true, x));
}

}  // namespace xgrad::nn
