#include "layers/gru_cell.hpp"

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "autograd/recurrent.hpp"
#include "core/error.hpp"
#include "layers/dtypes.hpp"

namespace xgrad::nn {

GRUCell::GRUCell(GRUCellOptions options) : options_(std::move(options)) {
  if (options_.features <= 0)
    throw ValueError(fmt::format("GRUCell: features must be positive, got {}", options_.features));
  bind_dtype_options(options_.dtype, options_.param_dtype);
  register_module("ir", ir_);  // Flax's call order
  register_module("hr", hr_);
  register_module("iz", iz_);
  register_module("hz", hz_);
  register_module("in", in_);
  register_module("hn", hn_);
}

std::string GRUCell::describe() const { return fmt::format("GRUCell, features={}", options_.features); }

Carry GRUCell::initialize_carry(Key key, const Shape& input_shape) const {
  if (input_shape.empty()) throw ShapeError("initialize_carry: input_shape must be [batch..., in]");
  Shape mem(input_shape.begin(), input_shape.end() - 1);
  mem.push_back(options_.features);
  return {options_.carry_init(key, mem, options_.param_dtype)};
}

CellOutput GRUCell::step(const Carry& carry, const Tensor& inputs) {
  check_carry(carry, 1, inputs);
  const std::int64_t hidden = options_.features, in = inputs.size(-1);
  const auto& o = options_;
  const auto input = [&](detail::DenseParams& d) { return d.get(in, hidden, o.kernel_init, o.bias_init, o.param_dtype); };
  const auto recurrent = [&](detail::DenseParams& d) {
    return d.get(hidden, hidden, o.recurrent_kernel_init, o.bias_init, o.param_dtype);
  };
  const auto ir = input(ir_), hr = recurrent(hr_), iz = input(iz_), hz = recurrent(hz_), in_p = input(in_),
             hn = recurrent(hn_);
  // Promoted together: x, h, then the input kernels and biases of r, z, n, the
  // recurrent kernels of r, z, n, and b_hn.
  const auto p = promote_dtype({reshape(inputs, {-1, in}), reshape(carry[0], {-1, hidden}), ir.kernel, iz.kernel,
                                in_p.kernel, ir.bias, iz.bias, in_p.bias, hr.kernel, hz.kernel, hn.kernel, hn.bias},
                               o.dtype);
  const Tensor &x = p[0], &h = p[1];
  // Each side as one product over the three gates, then the fused gate op.
  const Tensor xp = matmul(x, concat({p[2], p[3], p[4]}, -1)) + concat({p[5], p[6], p[7]}, -1);
  const Tensor hp = matmul(h, concat({p[8], p[9], p[10]}, -1)) + concat({zeros_like(p[11]), zeros_like(p[11]), p[11]}, -1);
  const Tensor h_new = reshape(gru_cell_update(xp, hp, h), carry[0].shape());
  return {{h_new}, h_new};
}

}  // namespace xgrad::nn
