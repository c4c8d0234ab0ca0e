// Reductions and softmax, and their VJPs.
#include <fmt/format.h>

#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "core/kernels/attention.hpp"
#include "core/kernels/reduce.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad {

namespace {

// The cotangent of a reduction over `axes`, broadcast back to the input's shape.
Tensor unreduce(const Tensor& g, const Shape& shape, const Axes& axes) {
  return broadcast_to(reshape(g, kernels::reduced_shape(shape, axes, true)), shape);
}

std::int64_t reduced_count(const Shape& shape, const Axes& axes) {
  std::int64_t count = 1;
  for (auto a : axes) count *= shape[static_cast<std::size_t>(a)];
  return count;
}

// The axis set of a single-axis op. A 0-d tensor is its own softmax row: axis 0
// or -1 (the default) name it, and it has no axis to reduce.
Axes single_axis(const Tensor& x, std::int64_t axis, const char* op) {
  if (x.dim() == 0 && (axis == 0 || axis == -1)) return {};
  return {normalize_axis(axis, x.dim(), op)};
}

// Softmax over a set of normalised axes. With y = softmax(x):
// dx = y * (g - sum(g * y)) over the axes.
Tensor softmax_over(const Tensor& x, const Axes& axes) {
  Tensor out = kernels::softmax(x, axes);
  const bool last_axis = axes.size() == 1 && axes[0] == x.dim() - 1;
  return record("softmax", out, {x}, [axes, last_axis](const Tensor& g, const Tensor& y) -> Grads {
    // Over the last axis of float32/float64, without create_graph: the same formula as one fused pass.
    if (last_axis && !GradMode::is_enabled() && g.dtype() == y.dtype() &&
        (y.dtype() == DType::Float32 || y.dtype() == DType::Float64))
      return {kernels::masked_softmax_backward(y, g, Tensor())};
    return {y * (g - sum(g * y, axes, true))};
  }, Saves::Output, [&](const Grads&, const Grads& t, const Tensor& y) {  // the Jacobian is symmetric
    return y * (t[0] - sum(t[0] * y, axes, true));
  });
}

template <class Kernel>
Tensor extremum(const char* op, Kernel kernel, const Tensor& x, const Axes& axes, bool keepdims) {
  const Axes norm = normalize_axes(axes, x.dim(), op);
  Tensor out = kernel(x, norm, keepdims);
  // The gradient goes to the elements equal to the extremum, split evenly among
  // ties; the split is piecewise constant in x, so it carries no gradient itself.
  return record(op, out, {x}, [x, norm](const Tensor& g, const Tensor& y) -> Grads {
    return {unreduce(g, x.shape(), norm) * kernels::extremum_weights(x, y, norm)};
  }, Saves::InputsAndOutput, [&](const Grads&, const Grads& t, const Tensor& y) {  // the tangent at the extremum
    return sum(t[0] * kernels::extremum_weights(x, y, norm), norm, keepdims);
  });
}

}  // namespace

Tensor sum(const Tensor& x, const Axes& axes, bool keepdims) {
  const Axes norm = normalize_axes(axes, x.dim(), "sum");
  Tensor out = kernels::sum(x, norm, keepdims);
  return record("sum", out, {x}, [shape = x.shape(), norm](const Tensor& g, const Tensor&) -> Grads {
    return {unreduce(g, shape, norm)};
  }, Saves::Nothing, [&](const Grads&, const Grads& t, const Tensor&) { return sum(t[0], norm, keepdims); });
}

Tensor mean(const Tensor& x, const Axes& axes, bool keepdims) {
  const Axes norm = normalize_axes(axes, x.dim(), "mean");
  Tensor out = kernels::mean(x, norm, keepdims);
  return record("mean", out, {x}, [shape = x.shape(), norm](const Tensor& g, const Tensor&) -> Grads {
    return {unreduce(g, shape, norm) / static_cast<double>(reduced_count(shape, norm))};
  }, Saves::Nothing, [&](const Grads&, const Grads& t, const Tensor&) { return mean(t[0], norm, keepdims); });
}

Tensor max(const Tensor& x, const Axes& axes, bool keepdims) {
  return extremum("max", kernels::max, x, axes, keepdims);
}

Tensor min(const Tensor& x, const Axes& axes, bool keepdims) {
  return extremum("min", kernels::min, x, axes, keepdims);
}

Tensor logsumexp(const Tensor& x, const Axes& axes, bool keepdims) {
  const Axes norm = normalize_axes(axes, x.dim(), "logsumexp");
  Tensor out = kernels::logsumexp(x, norm, keepdims);
  // d logsumexp(x) / dx = softmax(x) over the reduced axes.
  return record("logsumexp", out, {x}, [x, norm](const Tensor& g, const Tensor&) -> Grads {
    return {unreduce(g, x.shape(), norm) * softmax_over(x, norm)};
  }, Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {
    return sum(t[0] * softmax_over(x, norm), norm, keepdims);
  });
}

Tensor var(const Tensor& x, const Axes& axes, bool keepdims, std::int64_t ddof) {
  const Axes norm = normalize_axes(axes, x.dim(), "var");
  Tensor out = kernels::var(x, norm, keepdims, ddof);
  // d var / dx = 2 (x - mean(x)) / (n - ddof)
  return record("var", out, {x}, [x, norm, ddof](const Tensor& g, const Tensor&) -> Grads {
    const auto divisor = static_cast<double>(std::max<std::int64_t>(reduced_count(x.shape(), norm) - ddof, 0));
    return {unreduce(g, x.shape(), norm) * (x - mean(x, norm, true)) * (2.0 / divisor)};
  }, Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {
    const auto divisor = static_cast<double>(std::max<std::int64_t>(reduced_count(x.shape(), norm) - ddof, 0));
    return sum(t[0] * (x - mean(x, norm, true)), norm, keepdims) * (2.0 / divisor);
  });
}

Tensor argmax(const Tensor& x, std::int64_t axis) { return kernels::argmax(x, axis); }

Tensor softmax(const Tensor& x, std::int64_t axis) { return softmax_over(x, single_axis(x, axis, "softmax")); }

Tensor log_softmax(const Tensor& x, std::int64_t axis) {
  const Axes axes = single_axis(x, axis, "log_softmax");
  Tensor out = kernels::log_softmax(x, axes);
  // With y = log_softmax(x): dx = g - softmax(x) * sum(g) over the axis.
  return record("log_softmax", out, {x}, [x, axes](const Tensor& g, const Tensor&) -> Grads {
    return {g - softmax_over(x, axes) * sum(g, axes, true)};
  }, Saves::Inputs, [&](const Grads&, const Grads& t, const Tensor&) {
    return t[0] - sum(t[0] * softmax_over(x, axes), axes, true);
  });
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const std::size_t lead = x.shape().size() - shape.size();
  if (x.shape().size() < shape.size())
    throw ShapeError(fmt::format("sum_to: cannot sum {} down to the larger rank of {}", shape_str(x.shape()),
                                 shape_str(shape)));
  Axes axes;
  for (std::size_t i = 0; i < x.shape().size(); ++i) {
    if (i < lead) {
      axes.push_back(static_cast<std::int64_t>(i));
    } else if (shape[i - lead] == 1 && x.shape()[i] != 1) {
      axes.push_back(static_cast<std::int64_t>(i));
    } else if (shape[i - lead] != x.shape()[i]) {
      throw ShapeError(fmt::format("sum_to: shape {} is not a broadcast of {}", shape_str(x.shape()),
                                   shape_str(shape)));
    }
  }
  return reshape(sum(x, axes, false), shape);
}

}  // namespace xgrad
