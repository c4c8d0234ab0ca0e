#include "layers/rnn_cell.hpp"

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "core/error.hpp"

namespace xgrad::nn {

CellOutput RNNCellBase::operator()(const Carry& carry, const Tensor& inputs) {
  pending_carry_ = &carry;
  struct Reset {
    const Carry*& slot;
    ~Reset() { slot = nullptr; }
  } reset{pending_carry_};
  Tensor output = Module::operator()(inputs);
  CellOutput out = std::move(result_);
  result_ = {};
  out.output = output;
  return out;
}

Tensor RNNCellBase::forward(const Tensor& inputs) {
  if (pending_carry_ == nullptr)
    throw ValueError("a recurrent cell is called with (carry, inputs); make the carry with initialize_carry");
  const Carry& carry = *pending_carry_;
  pending_carry_ = nullptr;  // a cell calling itself again inside step() would need its own carry
  if (inputs.dim() < num_feature_axes())
    throw ShapeError(fmt::format("inputs {} need [batch..., features]", shape_str(inputs.shape())));
  result_ = step(carry, inputs);
  return result_.output;
}

void RNNCellBase::check_carry(const Carry& carry, std::size_t count, const Tensor& inputs) const {
  Shape expected(inputs.shape().begin(), inputs.shape().end() - 1);
  expected.push_back(features());
  std::vector<std::string> shapes;
  for (const Tensor& t : carry) shapes.push_back(t.defined() ? shape_str(t.shape()) : "undefined");
  bool ok = carry.size() == count;
  for (const Tensor& t : carry) ok = ok && t.defined() && t.shape() == expected;
  if (!ok)
    throw ShapeError(fmt::format("carry [{}] must be {} tensor(s) of shape {} for inputs {} (features={})",
                                 fmt::join(shapes, ", "), count, shape_str(expected), shape_str(inputs.shape()),
                                 features()));
}

StateDict RNNCellBase::in_param_dtypes(StateDict grads) const {
  for (const auto& [path, p] : named_parameters())
    if (auto it = grads.find(path); it != grads.end()) it->second = cast(it->second, p.dtype());
  return grads;
}

namespace detail {

DenseParams::Params DenseParams::get(std::int64_t in_features, std::int64_t features, const Initializer& kernel_init,
                                     const Initializer& bias_init, DType param_dtype) {
  if (const Tensor k = find_parameter("kernel"); k.defined() && k.shape()[0] != in_features)
    throw ShapeError(fmt::format("{}: input features {} do not match kernel {}", path(), in_features,
                                 shape_str(k.shape())));
  Params p;
  p.kernel = param("kernel", {in_features, features}, kernel_init, param_dtype);
  if (use_bias_) p.bias = param("bias", {features}, bias_init, param_dtype);
  return p;
}

Tensor DenseParams::forward(const Tensor&) {
  throw ValueError("DenseParams only holds parameters; its cell reads them");
}

}  // namespace detail
}  // namespace xgrad::nn
