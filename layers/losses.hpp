// Losses, as optax's: each returns the per-example loss unless asked to reduce.
// They compute in float32 whatever the inputs' dtype (float16 and bfloat16 inputs
// are cast up, float64 stays float64), as jmp and optax recommend for mixed
// precision: the loss of a bfloat16 model is a float32 tensor.
//
//   Tensor loss = losses::softmax_cross_entropy(logits, labels, losses::Reduction::Mean);
//   double acc = losses::accuracy(logits, labels);
#pragma once

#include "core/tensor.hpp"

namespace xgrad::losses {

// How a loss reduces the per-example losses: keep them (None), average them (Mean) or add them (Sum).
enum class Reduction { None, Mean, Sum };  // None: one loss per example (per element for regression losses)

// logits [..., classes]. Integer labels [...] use the fused kernel (one pass
// forward, softmax - one_hot backward); floating targets [..., classes] (one-hot
// or probabilities) give -sum(targets * log_softmax(logits)). Both are stable for
// large logits (computed through logsumexp).
Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels, Reduction reduction = Reduction::None);
// optax.softmax_cross_entropy_with_integer_labels: the integer-label case above, labels [...] of class indices;
// ShapeError unless labels have the logits' shape without the class axis.
Tensor softmax_cross_entropy_with_integer_labels(const Tensor& logits, const Tensor& labels,
                                                 Reduction reduction = Reduction::None);

// Elementwise -labels log sigmoid(logits) - (1 - labels) log sigmoid(-logits).
Tensor sigmoid_binary_cross_entropy(const Tensor& logits, const Tensor& labels,
                                    Reduction reduction = Reduction::None);

Tensor mse(const Tensor& predictions, const Tensor& targets, Reduction reduction = Reduction::None);  // (p - t)^2
Tensor l1(const Tensor& predictions, const Tensor& targets, Reduction reduction = Reduction::None);   // |p - t|
// 0.5 e^2 for |e| <= delta, delta (|e| - 0.5 delta) beyond (optax.huber_loss), e = p - t.
Tensor huber(const Tensor& predictions, const Tensor& targets, double delta = 1.0,
             Reduction reduction = Reduction::None);

// Fraction of rows whose argmax over the last axis equals the integer label.
double accuracy(const Tensor& logits, const Tensor& labels);

}  // namespace xgrad::losses
