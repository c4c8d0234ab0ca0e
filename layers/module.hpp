// nn::Module: parameters, buffers and submodules under stable dotted paths.
//
// Flax linen is the model for semantics (lazy parameters shaped by the first
// input, initial values derived from a seed and the parameter's path), libtorch's
// C++ frontend for names (named_parameters, train()/eval(), state_dict).
//
//   struct MLP : nn::Module {
//     nn::Dense fc1{{.features = 128}}, fc2{{.features = 10}};
//     MLP() { register_module("fc1", fc1); register_module("fc2", fc2); }
//     Tensor forward(const Tensor& x) override { return fc2(nn::relu(fc1(x))); }
//   };
//   MLP model;
//   model.init(sample);                      // creates fc1.kernel, fc1.bias, ...
//   Tensor logits = model(x);
//
// A parameter named `kernel` of submodule `fc1` has the path "fc1.kernel"; its
// initial value is drawn with fold_in(make_key(seed), "fc1.kernel"), so it does
// not depend on construction order, call order or thread count.
//
// Every submodule a forward calls must be registered (register_module), or its
// parameters would be neither trained nor saved: a module with parameters that is
// not registered and runs inside another module's forward throws ValueError
// naming the calling module's path.
//
// Modules are neither copyable nor movable: children point at their parent.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/random.hpp"
#include "core/tensor.hpp"
#include "layers/initializers.hpp"

namespace xgrad::nn {

using StateDict = std::map<std::string, Tensor>;  // parameters and buffers by dotted path, sorted
using xgrad::NamedTensors;  // core/tensor.hpp

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = delete;
  Module& operator=(Module&&) = delete;

  // Runs forward(). Errors raised inside are prefixed with the innermost module's
  // path and description, e.g. "fc2 (Dense, features=10): input last dim 64 ...".
  // Threads: an initialised module may run on several threads at once while none
  // changes it (a training step, load_state_dict, set_dtypes, ...) or its state (Dropout
  // and BatchNorm in training mode draw keys and update statistics): inference in eval()
  // mode, each thread under its own NoGradGuard, e.g. one batch per thread.
  Tensor operator()(const Tensor& input);

  // The layer type and its defining options ("Dense, features=10"); by default
  // the C++ class name. Used in error messages and summary().
  virtual std::string describe() const;

  // How many trailing input dims the parameters depend on (Dense: 1, a 2-D conv: 3);
  // the leading ones are batch dims, printed as '*'. -1 (the default): all of them.
  virtual int feature_rank() const { return -1; }
  // The input shape the parameters were created for, batch dims as '*'
  // ("[*, 200, 4]"); empty before the first call that created a parameter.
  std::string initialised_for() const;

  // ---- the tree
  const std::string& name() const { return name_; }  // empty for a root
  std::string path() const;                          // dotted path from the root ("" for the root)
  // The module this one is registered in; null for a root.
  Module* parent() const { return parent_; }
  Module& root();  // The topmost ancestor (this module for a root).
  const Module& root() const;  // The topmost ancestor (this module for a root).

  // Seed of the initial values and dropout streams; a root-only setting (default 0).
  void set_seed(std::uint64_t seed);
  // The root's seed.
  std::uint64_t seed() const { return root().seed_; }

  // Runs one forward pass on `sample_input` without recording, creating every lazy
  // parameter and buffer. Batch statistics are not updated and dropout is off.
  void init(const Tensor& sample_input);
  // True while init() runs (on the whole tree).
  bool is_initializing() const { return root().initializing_; }

  // Rematerialisation (layers/remat.hpp, nn::remat): every call of this module then
  // runs under xgrad::checkpoint, keeping only its input and output for backward.
  void set_remat(bool enabled) { remat_ = enabled; }
  // Whether set_remat(true) is in effect.
  bool is_remat() const { return remat_; }

  void train(bool training = true);  // recursive
  // train(false): dropout off, BatchNorm uses its running statistics.
  void eval() { train(false); }
  // Training mode (the default) or evaluation mode.
  bool is_training() const { return training_; }

  // Paths relative to this module. Each module lists its own entries in
  // registration order, then its children's, depth first.
  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;  // named_parameters() without the paths
  NamedTensors named_buffers() const;  // non-trainable state, e.g. BatchNorm's batch_stats
  std::vector<std::pair<std::string, Module*>> named_modules();  // this module first, as ""
  std::vector<std::pair<std::string, Module*>> named_children();  // direct submodules only
  std::int64_t num_parameters() const;  // total element count
  void zero_grad();  // clears the gradient of every parameter

  // Parameters and buffers by relative path. The tensors alias the module's
  // storage (detached): clone() them to snapshot.
  StateDict state_dict() const;
  // Copies `state` into the parameters and buffers. Validates everything first: on
  // any error the model is unchanged. Strict: missing and unexpected keys are
  // errors. Shape and dtype mismatches are always errors. Throws ValueError
  // listing every problem with its path.
  void load_state_dict(const StateDict& state, bool strict = true);

  // Runs the module with some parameters or buffers (by relative path) replaced by
  // the given tensors, as torch.func.functional_call: gradients then flow into
  // those tensors. Each must match the shape and dtype of the one it replaces; the
  // module's own tensors are restored afterwards, also when forward throws.
  Tensor functional_call(const StateDict& substitutes, const Tensor& input);
  // The same around any computation, e.g. a method other than forward.
  Tensor functional_call(const StateDict& substitutes, const std::function<Tensor()>& body);

  // Initialises with `sample_input` and returns a table of every module: path,
  // description, output shape, own parameter shapes, count and dtype.
  std::string summary(const Tensor& sample_input);

  // ---- per-example gradients (layers/per_example_grads.hpp)
  // Each of this module's own parameters' gradients, one per example (leading batch
  // axis), from one call's `input`, `output` and the gradient `output_grad` of the
  // summed per-example losses with respect to that output, computed for the whole
  // batch at once. Keys are the parameter names ("kernel"). Empty (the default):
  // the layer has no rule for this call, and per_example_grads falls back to a
  // loop over the examples for its parameters.
  virtual std::optional<StateDict> per_example_param_grads(const Tensor& input, const Tensor& output,
                                                           const Tensor& output_grad) const;
  // The rule of a call in which the module tapped intermediate tensors
  // (PerExampleCapture::tap, e.g. a recurrent layer's gate pre-activations): the
  // call's `input`, the tensors it `saved`, the `taps` and the gradient of the summed
  // losses at each tap. Keys are parameter paths relative to this module
  // ("cell.ii.kernel"), so a layer can cover its submodules' parameters. Empty (the
  // default): every parameter under this module is computed by the loop.
  virtual std::optional<StateDict> per_example_tapped_grads(const Tensor& input, const std::vector<Tensor>& saved,
                                                            const std::vector<Tensor>& taps,
                                                            const std::vector<Tensor>& tap_grads) const;

  // ---- registration
  // `value` becomes a leaf that requires grad (floating dtypes).
  Tensor register_parameter(const std::string& name, Tensor value);
  Tensor register_buffer(const std::string& name, Tensor value);  // non-trainable state saved in state_dict
  // A member submodule (not owned) or an owned one.
  template <class M>
  M& register_module(const std::string& name, M& module) {
    attach(name, module, nullptr);
    return module;
  }
  // An owned submodule: kept alive by this module; returns it.
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    attach(name, *module, module);
    return module;
  }

  // ---- precision policy hooks (layers/policy.hpp)
  // Sets this layer's `dtype` / `param_dtype` options (no-op for modules that have
  // none); existing parameters are converted in place.
  void set_dtypes(std::optional<DType> dtype, DType param_dtype);
  // Whether the layer has dtype options (bind_dtype_options was called).
  bool has_dtype_options() const { return bound_param_dtype_ != nullptr; }
  // The root casts its output to this dtype (empty: no cast).
  void set_output_dtype(std::optional<DType> dtype) { output_dtype_ = dtype; }

 protected:
  virtual Tensor forward(const Tensor& input) = 0;  // The computation; run through operator().

  // Flax's self.param: creates the parameter at the first call with
  // init(key_for(name), shape, dtype), and afterwards returns it after checking
  // that `shape` and `dtype` still match (ShapeError / DTypeError otherwise).
  // `hint` ends the mismatch message, e.g. "input spatial size changed?".
  Tensor param(const std::string& name, const Shape& shape, const Initializer& init, DType dtype,
               std::string_view hint = "input shape changed?");
  // The same for non-trainable state (e.g. BatchNorm's running statistics).
  Tensor buffer(const std::string& name, const Shape& shape, const Initializer& init, DType dtype);
  // The existing parameter called `name`, or an undefined Tensor.
  Tensor find_parameter(const std::string& name) const;
  // The existing buffer called `name`, or an undefined Tensor.
  Tensor find_buffer(const std::string& name) const;

  // A fresh key for each call: seed, stream name, module path and a per-module counter.
  Key next_rng(std::string_view stream);

  // Layers call this in their constructor with their options' fields, so that a
  // precision policy can set them.
  void bind_dtype_options(std::optional<DType>& dtype, DType& param_dtype) {
    bound_dtype_ = &dtype;
    bound_param_dtype_ = &param_dtype;
  }

 private:
  struct Child {
    std::string name;
    Module* module;
    std::shared_ptr<Module> owner;  // null for members
  };

  void attach(const std::string& name, Module& child, std::shared_ptr<Module> owner);
  void check_new_name(const std::string& name, const char* what) const;
  std::string child_path(const std::string& name) const;
  std::string label() const;  // "path (describe())", or describe() for a root
  std::string input_spec(const Shape& input) const;  // batch dims as '*' (feature_rank())
  void check_registered() const;                      // throws if this root has parameters or buffers
  std::string mismatch_context(std::string_view hint) const;  // "initialised for [*, 8, 4], got [8]: hint"
  const Shape* current_input() const;  // the input of this module's innermost forward on this thread, or null
  void collect(NamedTensors Module::*list, const std::string& prefix, NamedTensors& out) const;
  Tensor* find_slot(const std::string& relative_path);  // a parameter or buffer, by dotted path

  std::string name_;
  Module* parent_ = nullptr;
  std::vector<Child> children_;
  NamedTensors params_;
  NamedTensors buffers_;
  std::uint64_t seed_ = 0;
  std::uint64_t rng_counter_ = 0;
  bool training_ = true;
  bool initializing_ = false;
  bool remat_ = false;
  std::optional<DType> output_dtype_;
  std::optional<Shape> initialised_input_;  // the input of the call that created the first parameter
  std::optional<DType>* bound_dtype_ = nullptr;
  DType* bound_param_dtype_ = nullptr;

};

}  // namespace xgrad::nn
