// Fused softmax cross-entropy with integer labels (no tape): the training hot
// path, one pass over the logits each way.
#pragma once

#include <utility>

#include "core/tensor.hpp"

namespace xgrad::kernels {

// logits [..., classes] (floating), labels [...] (Int32/Int64, in [0, classes)).
// Returns loss[...] = logsumexp(logits) - logits[label], in the logits' dtype, and
// the per-row logsumexp in the compute dtype (float32, or float64 for float64).
// Throws ValueError naming the first out-of-range label.
std::pair<Tensor, Tensor> softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels);

// d loss / d logits for cotangent g[...]: g * (softmax(logits) - one_hot(label)),
// with softmax = exp(logits - logsumexp), in the logits' dtype.
Tensor softmax_cross_entropy_backward(const Tensor& logits, const Tensor& labels, const Tensor& logsumexp,
                                      const Tensor& grad_loss);

}  // namespace xgrad::kernels
