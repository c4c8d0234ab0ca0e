// The differentiable op behind the classification losses of layers/losses.cpp.
#include <cstdint>

#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "core/kernels/cross_entropy.hpp"

namespace xgrad {

Tensor integer_label_cross_entropy(const Tensor& logits, const Tensor& labels) {
  // Named, not a structured binding: clang before 16 cannot capture one in a lambda.
  const auto forward = kernels::softmax_cross_entropy_forward(logits, labels);
  const Tensor& loss = forward.first;
  const Tensor& lse = forward.second;
  const std::int64_t classes = logits.shape().back();
  return record("softmax_cross_entropy", loss, {logits},
                [logits, labels, lse, classes](const Tensor& g, const Tensor&) -> Grads {
                  // Under create_graph, and inside a jvp scope (forward-over-reverse), the
                  // gradient must itself be differentiable.
                  if (GradMode::is_enabled() || forward_ad::propagating())
                    return {unsqueeze(g, -1) * (softmax(logits, -1) - one_hot(labels, classes, logits.dtype()))};
                  return {kernels::softmax_cross_entropy_backward(logits, labels, lse, g)};
                },
                Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {
                  // d(logsumexp(z) - z[label]) = <softmax(z) - onehot(label), dz>
                  return sum(t[0] * (softmax(logits, -1) - one_hot(labels, classes, logits.dtype())), {-1});
                });
}

}  // namespace xgrad
