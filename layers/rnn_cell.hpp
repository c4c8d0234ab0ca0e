// The recurrent cell interface (flax.linen.RNNCellBase): a cell maps (carry, inputs)
// to (new carry, output) for one time step; nn::RNN runs it over a sequence.
//
//   nn::LSTMCell cell({.features = 64});
//   nn::Carry carry = cell.initialize_carry(make_key(1), x.shape());   // {c, h}
//   auto [new_carry, y] = cell(carry, x);                               // x [batch..., in]
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/random.hpp"
#include "layers/initializers.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

// A cell's state between steps, in Flax's tuple order: LSTM {c, h}, GRU {h}.
using Carry = std::vector<Tensor>;

// An elementwise function for a cell's gate_fn / activation_fn (Flax's attributes),
// e.g. nn::hard_sigmoid-like lambdas or xgrad::relu. Empty means the default
// (sigmoid / tanh), which runs the fused kernels; any other function runs the
// composed ops (differentiable as long as the function is).
using CellActivation = std::function<Tensor(const Tensor&)>;

// What one step returns: the new carry and the step's output.
struct CellOutput {
  Carry carry;  // the carry after the step
  Tensor output;  // the step's output [batch..., features]
};

// flax.linen.RNNCellBase: the interface of LSTMCell, OptimizedLSTMCell and GRUCell.
class RNNCellBase : public Module {
 public:
  // One step: carry tensors [batch..., features], inputs [batch..., in]. Errors are
  // prefixed with the cell's path like any module's.
  CellOutput operator()(const Carry& carry, const Tensor& inputs);
  using Module::operator();  // a cell called with inputs alone throws ValueError: it needs its carry

  // The carry for inputs of `input_shape` ([batch..., in]): carry_init(key, [batch..., features]).
  virtual Carry initialize_carry(Key key, const Shape& input_shape) const = 0;
  // How many trailing input axes are features (1 for these cells).
  virtual int num_feature_axes() const { return 1; }
  virtual std::int64_t features() const = 0;  // the hidden size H
  int feature_rank() const override { return 1; }

 protected:
  virtual CellOutput step(const Carry& carry, const Tensor& inputs) = 0;  // the step itself
  // Checks that `carry` has `count` tensors shaped [batch..., features] with the
  // batch dims of `inputs`; throws ShapeError naming the shapes otherwise.
  void check_carry(const Carry& carry, std::size_t count, const Tensor& inputs) const;
  // Each entry cast to the dtype of the parameter at the same path (relative to this cell).
  StateDict in_param_dtypes(StateDict grads) const;

 private:
  Tensor forward(const Tensor& inputs) final;  // runs step() on the carry operator() was given
  const Carry* pending_carry_ = nullptr;
  CellOutput result_;
};

namespace detail {

// Parameters shaped as flax.linen.Dense's (kernel [in, features], bias [features]),
// without computing anything: a cell reads them to fuse several Dense layers into
// one product, as Flax's DenseParams does.
class DenseParams : public Module {
 public:
  // Binds dtype options so that a precision policy applied after the parameters
  // exist converts them with the cell's (the cell passes its param_dtype to get()).
  explicit DenseParams(bool use_bias) : use_bias_(use_bias) { bind_dtype_options(dtype_, param_dtype_); }
  struct Params {
    Tensor kernel, bias;  // bias undefined without use_bias
  };
  Params get(std::int64_t in_features, std::int64_t features, const Initializer& kernel_init,
             const Initializer& bias_init, DType param_dtype);
  std::string describe() const override { return use_bias_ ? "DenseParams" : "DenseParams, use_bias=false"; }

 protected:
  Tensor forward(const Tensor& inputs) override;

 private:
  bool use_bias_;
  std::optional<DType> dtype_;
  DType param_dtype_ = DType::Float32;
};

}  // namespace detail
}  // namespace xgrad::nn
