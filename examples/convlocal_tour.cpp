// A tour of ConvLocal (flax.linen.ConvLocal semantics): paddings, shapes, masks.
#include <iostream>

#include <fmt/format.h>

#include "xgrad.hpp"

using namespace xgrad;

int main() {
  // 1-D, CIRCULAR: the sequence wraps around, so the output keeps its length. Each of
  // the 8 output positions has its own 3x3 -> 4 weights: kernel (8, 3*3, 4).
  nn::ConvLocal circular({.features = 4, .kernel_size = {3}, .padding = "CIRCULAR"});
  const Tensor sequence = random_normal(make_key(0), {2, 8, 3});  // (batch, length, channels)
  fmt::print("CIRCULAR 1-D: input {} -> output {}\n", shape_str(sequence.shape()),
             shape_str(circular(sequence).shape()));
  for (const auto& [name, p] : circular.named_parameters()) fmt::print("  {:6} {}\n", name, shape_str(p.shape()));

  // 1-D, CAUSAL: output t sees inputs t-2..t only. Autograd shows it: the gradient of
  // output t = 3 with respect to the input is zero after t = 3.
  nn::ConvLocal causal({.features = 2, .kernel_size = {3}, .padding = "CAUSAL"});
  Tensor x = random_normal(make_key(1), {1, 6, 1}).requires_grad_();
  const Tensor y = causal(x);
  slice(y, 1, 3, 4).sum().backward();
  fmt::print("CAUSAL 1-D: d y[t=3] / d x[t] for t = 0..5:");
  for (std::int64_t t = 0; t < 6; ++t) fmt::print(" {:+.3f}", double(x.grad().at({0, t, 0})));
  fmt::print("\n");

  // 2-D, the Flax docstring example: input (1, 8, 3) has no batch dim (2-D spatial
  // (1, 8), 3 channels); strides 2 with CIRCULAR padding gives output (1, 4, 4).
  nn::ConvLocal strided({.features = 4, .kernel_size = {3, 3}, .strides = 2, .padding = "CIRCULAR"});
  const Tensor image = random_normal(make_key(2), {1, 8, 3});
  std::cout << "\n" << strided.summary(image) << "\n";

  // A mask multiplies the kernel (before dtype promotion): here jnp.tril over the
  // (patch, feature) axes, so feature f only uses patch entries i >= f.
  Tensor mask = zeros({6, 9, 4});
  for (std::int64_t o = 0; o < 6; ++o)
    for (std::int64_t i = 0; i < 9; ++i)
      for (std::int64_t f = 0; f <= std::min<std::int64_t>(i, 3); ++f) mask.data<float>()[(o * 9 + i) * 4 + f] = 1;
  nn::ConvLocal masked({.features = 4, .kernel_size = {3}, .padding = "VALID", .mask = mask});
  const Tensor z = masked(random_normal(make_key(3), {1, 8, 3}));
  fmt::print("masked VALID 1-D: output {}, kernel {}\n", shape_str(z.shape()),
             shape_str(masked.named_parameters()[0].second.shape()));
}
