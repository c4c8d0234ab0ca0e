#include "layers/losses.hpp"

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "core/tensor_impl.hpp"
#include "layers/activations.hpp"

namespace xgrad::losses {

namespace {

Tensor reduce(const Tensor& loss, Reduction reduction) {
  switch (reduction) {
    case Reduction::None: return loss;
    case Reduction::Mean: return mean(loss);
    case Reduction::Sum: return sum(loss);
  }
  return loss;
}

// Losses compute in float32 at least, whatever the inputs' dtype (jmp's and optax's
// practice for mixed precision): a bfloat16 loss rounds away the differences training
// follows. float16/bfloat16 inputs are cast up (differentiably: their gradients come
// back in their own dtype); float32 and float64 stay as they are.
Tensor at_least_float32(const Tensor& t) {
  return t.dtype() == DType::Float16 || t.dtype() == DType::BFloat16 ? cast(t, DType::Float32) : t;
}

void check_same_shape(const char* op, const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape())
    throw ShapeError(fmt::format("{}: predictions {} and targets {} must have the same shape", op,
                                 shape_str(a.shape()), shape_str(b.shape())));
}

void check_label_shape(const char* op, const Tensor& logits, const Tensor& labels) {
  const Shape& s = logits.shape();
  if (s.empty() || labels.shape() != Shape(s.begin(), s.end() - 1))
    throw ShapeError(fmt::format("{}: labels {} must have the logits' shape {} without the class axis", op,
                                 shape_str(labels.shape()), shape_str(s)));
}

}  // namespace

Tensor softmax_cross_entropy_with_integer_labels(const Tensor& logits_in, const Tensor& labels, Reduction reduction) {
  check_label_shape("softmax_cross_entropy", logits_in, labels);
  const Tensor logits = at_least_float32(logits_in);
  const Tensor loss = integer_label_cross_entropy(logits, labels);
  return reduce(loss, reduction);
}

Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels, Reduction reduction) {
  if (is_integral(labels.dtype())) return softmax_cross_entropy_with_integer_labels(logits, labels, reduction);
  if (labels.shape() != logits.shape())
    throw ShapeError(fmt::format("softmax_cross_entropy: targets {} must have the logits' shape {} (or be integer "
                                 "labels without the class axis)",
                                 shape_str(labels.shape()), shape_str(logits.shape())));
  return reduce(-sum(at_least_float32(labels) * log_softmax(at_least_float32(logits), -1), {-1}), reduction);
}

Tensor sigmoid_binary_cross_entropy(const Tensor& logits, const Tensor& labels, Reduction reduction) {
  check_same_shape("sigmoid_binary_cross_entropy", logits, labels);
  const Tensor z = at_least_float32(logits), y = at_least_float32(labels);
  const Tensor log_p = nn::log_sigmoid(z), log_not_p = nn::log_sigmoid(-z);
  return reduce(-y * log_p - (1.0 - y) * log_not_p, reduction);
}

Tensor mse(const Tensor& predictions, const Tensor& targets, Reduction reduction) {
  check_same_shape("mse", predictions, targets);
  return reduce(square(at_least_float32(predictions) - at_least_float32(targets)), reduction);
}

Tensor l1(const Tensor& predictions, const Tensor& targets, Reduction reduction) {
  check_same_shape("l1", predictions, targets);
  return reduce(abs(at_least_float32(predictions) - at_least_float32(targets)), reduction);
}

Tensor huber(const Tensor& predictions, const Tensor& targets, double delta, Reduction reduction) {
  check_same_shape("huber", predictions, targets);
  if (!(delta > 0)) throw ValueError(fmt::format("huber: delta must be positive, got {}", delta));
  const Tensor error = abs(at_least_float32(predictions) - at_least_float32(targets));
  const Tensor quadratic = minimum(error, weak_scalar(delta, true, error));
  const Tensor linear = error - quadratic;
  return reduce(square(quadratic) * 0.5 + linear * delta, reduction);
}

double accuracy(const Tensor& logits, const Tensor& labels) {
  check_label_shape("accuracy", logits, labels);
  if (!is_integral(labels.dtype()))
    throw DTypeError(fmt::format("accuracy: labels must be integers, got {}", dtype_name(labels.dtype())));
  const std::int64_t rows = labels.numel();
  if (rows == 0) return 0.0;
  const Tensor predicted = argmax(logits, -1);
  const std::vector<double> p = predicted.to_vector(), y = labels.to_vector();
  std::int64_t correct = 0;
  for (std::size_t i = 0; i < p.size(); ++i) correct += p[i] == y[i];
  return static_cast<double>(correct) / static_cast<double>(rows);
}

}  // namespace xgrad::losses
