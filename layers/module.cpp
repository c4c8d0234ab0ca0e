#include "layers/module.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <typeinfo>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autograd/checkpoint.hpp"
#include "autograd/grad_mode.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "core/rng_replay.hpp"
#include "core/tensor_impl.hpp"
#include "layers/per_example_capture.hpp"
#include "layers/summary_recorder.hpp"

namespace xgrad::nn {

namespace {

// The message of the error already prefixed with a module path on this thread,
// so that enclosing modules rethrow it unchanged: the innermost module names it.
thread_local std::string t_annotated_message;

template <class E>
[[noreturn]] void rethrow_as(const std::string& message) {
  t_annotated_message = message;
  throw E(message);
}

// Rethrows `e` with `prefix` in front of its message, keeping its exception type.
// A message that already starts with the layer's type ("ConvLocal: ...", from the
// functional code the layer runs) loses that part, since the prefix names it.
[[noreturn]] void rethrow_with_prefix(const Error& e, const std::string& prefix, const std::string& type) {
  std::string_view what = e.what();
  if (!type.empty() && what.size() > type.size() + 2 && what.substr(0, type.size()) == type &&
      what.substr(type.size(), 2) == ": ")
    what.remove_prefix(type.size() + 2);
  const std::string message = fmt::format("{}: {}", prefix, what);
  if (dynamic_cast<const ShapeError*>(&e)) rethrow_as<ShapeError>(message);
  if (dynamic_cast<const DTypeError*>(&e)) rethrow_as<DTypeError>(message);
  if (dynamic_cast<const ValueError*>(&e)) rethrow_as<ValueError>(message);
  if (dynamic_cast<const IOError*>(&e)) rethrow_as<IOError>(message);
  if (dynamic_cast<const AutogradError*>(&e)) rethrow_as<AutogradError>(message);
  if (dynamic_cast<const NotImplementedError*>(&e)) rethrow_as<NotImplementedError>(message);
  rethrow_as<Error>(message);
}

std::string demangled_class_name(const std::type_info& type) {
  int status = 0;
  char* raw = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string name = status == 0 && raw ? raw : type.name();
  std::free(raw);
  if (name.find('<') == std::string::npos) {
    const auto colon = name.rfind("::");
    if (colon != std::string::npos) name = name.substr(colon + 2);
  }
  return name;
}

void check_name(const std::string& name, const char* what) {
  if (name.empty() || name.find('.') != std::string::npos)
    throw ValueError(fmt::format("register_{}: name '{}' must be non-empty and contain no '.'", what, name));
}

const Tensor* find_entry(const NamedTensors& list, const std::string& name) {
  for (const auto& [n, t] : list)
    if (n == name) return &t;
  return nullptr;
}

// Converts a tensor's storage to another dtype in place, so every handle to it
// (a custom module's member, an optimizer's list) sees the new dtype.
void retype_in_place(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype) return;
  Tensor converted = empty(t.shape(), dtype);
  converted.copy_(t);
  t.impl()->storage->array = std::move(converted.impl()->storage->array);
  t.impl()->dtype = dtype;
  t.impl()->grad.reset();
  ++t.impl()->storage->version;
}

// The forwards running on this thread, innermost last: which module, on which
// input. Per thread, not in the module, so that one module can run on several
// threads at once (inference, nn::Module's thread-safety note).
struct RunningForward {
  const Module* module;
  const Shape* input;
};
thread_local std::vector<RunningForward> t_running_forwards;

// Pushes a frame on t_running_forwards, popping it however forward exits.
class ForwardFrame {
 public:
  ForwardFrame(const Module* module, const Shape& input) { t_running_forwards.push_back({module, &input}); }
  ~ForwardFrame() { t_running_forwards.pop_back(); }
  ForwardFrame(const ForwardFrame&) = delete;
  ForwardFrame& operator=(const ForwardFrame&) = delete;
};

}  // namespace

Tensor Module::operator()(const Tensor& input) {
  const bool called_by_another = !t_running_forwards.empty();
  Tensor out;
  {
    ForwardFrame frame(this, input.shape());
    try {
      if (remat_ && GradMode::is_enabled()) {
        out = checkpoint([this](const std::vector<Tensor>& x) { return std::vector<Tensor>{forward(x[0])}; })({input})[0];
      } else {
        out = forward(input);
      }
    } catch (const Error& e) {
      if (t_annotated_message != e.what()) {
        const std::string description = describe();
        rethrow_with_prefix(e, label(), description.substr(0, description.find(',')));
      }
      throw;
    }
  }
  // A root module called inside another module's forward was not registered: its
  // parameters would silently stay out of training and checkpoints. The caller's
  // operator() prefixes this error with its own path.
  if (parent_ == nullptr && called_by_another) check_registered();
  if (PerExampleCapture* capture = PerExampleCapture::active()) capture->record(this, input, out);
  if (parent_ == nullptr && output_dtype_ && out.dtype() != *output_dtype_) out = cast(out, *output_dtype_);
  if (SummaryRecorder::active()) SummaryRecorder::active()->record(this, input, out);
  return out;
}

void Module::check_registered() const {
  std::vector<std::string> entries;
  for (const auto& [name, t] : named_parameters()) entries.push_back(name + " " + shape_str(t.shape()));
  for (const auto& [name, t] : named_buffers()) entries.push_back(name + " " + shape_str(t.shape()));
  if (entries.empty()) return;
  throw ValueError(fmt::format("a submodule ({}) with parameters or buffers [{}] ran inside this forward but was "
                               "never registered, so they would be neither trained nor saved; register it in the "
                               "constructor with register_module(\"name\", member)",
                               describe(), fmt::join(entries, ", ")));
}

std::string Module::input_spec(const Shape& input) const {
  const int rank = feature_rank();
  if (rank < 0 || static_cast<std::size_t>(rank) > input.size()) return shape_str(input);
  const Shape features(input.end() - rank, input.end());
  return rank == 0 ? "[*]" : "[*, " + shape_str(features).substr(1);
}

std::string Module::initialised_for() const { return initialised_input_ ? input_spec(*initialised_input_) : ""; }

std::string Module::describe() const { return demangled_class_name(typeid(*this)); }

std::string Module::path() const {
  if (parent_ == nullptr) return "";
  return parent_->child_path(name_);
}

std::string Module::child_path(const std::string& name) const {
  const std::string own = path();
  return own.empty() ? name : own + "." + name;
}

std::string Module::label() const {
  const std::string p = path();
  return p.empty() ? describe() : fmt::format("{} ({})", p, describe());
}

Module& Module::root() {
  Module* m = this;
  while (m->parent_) m = m->parent_;
  return *m;
}

const Module& Module::root() const {
  const Module* m = this;
  while (m->parent_) m = m->parent_;
  return *m;
}

void Module::set_seed(std::uint64_t seed) {
  if (parent_)
    throw ValueError(fmt::format("set_seed: only a root module has a seed; '{}' is a submodule (set it on the root)",
                                 path()));
  seed_ = seed;
}

void Module::init(const Tensor& sample_input) {
  NoGradGuard no_grad;
  Module& r = root();
  const bool previous = r.initializing_;
  r.initializing_ = true;
  try {
    (*this)(sample_input);
  } catch (...) {
    r.initializing_ = previous;
    throw;
  }
  r.initializing_ = previous;
}

void Module::train(bool training) {
  training_ = training;
  for (auto& c : children_) c.module->train(training);
}

void Module::collect(NamedTensors Module::*list, const std::string& prefix, NamedTensors& out) const {
  for (const auto& [n, t] : this->*list) out.emplace_back(prefix + n, t);
  for (const auto& c : children_) c.module->collect(list, prefix + c.name + ".", out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect(&Module::params_, "", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect(&Module::buffers_, "", out);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& c : children_)
    for (auto& [p, m] : c.module->named_modules()) out.emplace_back(p.empty() ? c.name : c.name + "." + p, m);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_children() {
  std::vector<std::pair<std::string, Module*>> out;
  for (auto& c : children_) out.emplace_back(c.name, c.module);
  return out;
}

std::int64_t Module::num_parameters() const {
  std::int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) t.zero_grad();
}

void Module::check_new_name(const std::string& name, const char* what) const {
  check_name(name, what);
  const bool taken = find_entry(params_, name) || find_entry(buffers_, name) ||
                     std::any_of(children_.begin(), children_.end(), [&](const Child& c) { return c.name == name; });
  if (taken) throw ValueError(fmt::format("register_{}: '{}' already has an entry named '{}'", what, label(), name));
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_new_name(name, "parameter");
  if (!value.defined()) throw ValueError(fmt::format("register_parameter: '{}' is an undefined tensor", name));
  if (!value.is_leaf()) value = value.detach();
  if (is_floating(value.dtype())) value.requires_grad_(true);
  params_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_new_name(name, "buffer");
  if (!value.defined()) throw ValueError(fmt::format("register_buffer: '{}' is an undefined tensor", name));
  buffers_.emplace_back(name, value.detach());
  return buffers_.back().second;
}

void Module::attach(const std::string& name, Module& child, std::shared_ptr<Module> owner) {
  check_new_name(name, "module");
  if (&child == this) throw ValueError(fmt::format("register_module: a module cannot be its own child ('{}')", name));
  if (child.parent_)
    throw ValueError(fmt::format("register_module: the module for '{}' is already registered as '{}'", name,
                                 child.path()));
  for (const Module* m = this; m; m = m->parent_)
    if (m == &child) throw ValueError(fmt::format("register_module: '{}' would make a cycle", name));
  child.parent_ = this;
  child.name_ = name;
  children_.push_back({name, &child, std::move(owner)});
}

Tensor Module::find_parameter(const std::string& name) const {
  const Tensor* t = find_entry(params_, name);
  return t ? *t : Tensor();
}

Tensor Module::find_buffer(const std::string& name) const {
  const Tensor* t = find_entry(buffers_, name);
  return t ? *t : Tensor();
}

namespace {

void check_existing(const Tensor& t, const std::string& what, const std::string& name, const Shape& shape,
                    DType dtype, std::string_view hint) {
  if (t.shape() != shape)
    throw ShapeError(fmt::format("{} '{}' was created with shape {} but this call needs {}{}", what, name,
                                 shape_str(t.shape()), shape_str(shape),
                                 hint.empty() ? "" : fmt::format(" ({})", hint)));
  if (t.dtype() != dtype)
    throw DTypeError(fmt::format("{} '{}' was created as {} but this call needs {} (param_dtype changed after "
                                 "creation?)",
                                 what, name, dtype_name(t.dtype()), dtype_name(dtype)));
}

Tensor create(const Initializer& init, Key key, const std::string& name, const Shape& shape, DType dtype) {
  Tensor value;
  {
    NoGradGuard no_grad;
    value = init(key, shape, dtype);
  }
  if (value.shape() != shape || value.dtype() != dtype)
    throw ValueError(fmt::format("the initializer of '{}' returned {} {} but was asked for {} {}", name,
                                 dtype_name(value.dtype()), shape_str(value.shape()), dtype_name(dtype),
                                 shape_str(shape)));
  return value.detach();
}

}  // namespace

const Shape* Module::current_input() const {
  for (auto frame = t_running_forwards.rbegin(); frame != t_running_forwards.rend(); ++frame)
    if (frame->module == this) return frame->input;
  return nullptr;
}

std::string Module::mismatch_context(std::string_view hint) const {
  std::string context;
  if (const Shape* input = current_input(); initialised_input_ && input)
    context = fmt::format("initialised for {}, got {}", initialised_for(), shape_str(*input));
  if (!hint.empty()) context += (context.empty() ? "" : ": ") + std::string(hint);
  return context;
}

Tensor Module::param(const std::string& name, const Shape& shape, const Initializer& init, DType dtype,
                     std::string_view hint) {
  if (const Tensor* existing = find_entry(params_, name)) {
    if (existing->shape() != shape || existing->dtype() != dtype)
      check_existing(*existing, "parameter", name, shape, dtype, mismatch_context(hint));
    return *existing;
  }
  if (const Shape* input = current_input(); !initialised_input_ && input) initialised_input_ = *input;
  const Key key = fold_in(make_key(seed()), child_path(name));
  return register_parameter(name, create(init, key, name, shape, dtype));
}

Tensor Module::buffer(const std::string& name, const Shape& shape, const Initializer& init, DType dtype) {
  if (const Tensor* existing = find_entry(buffers_, name)) {
    if (existing->shape() != shape || existing->dtype() != dtype)
      check_existing(*existing, "buffer", name, shape, dtype, mismatch_context("input shape changed?"));
    return *existing;
  }
  if (const Shape* input = current_input(); !initialised_input_ && input) initialised_input_ = *input;
  const Key key = fold_in(make_key(seed()), child_path(name));
  return register_buffer(name, create(init, key, name, shape, dtype));
}

std::optional<StateDict> Module::per_example_param_grads(const Tensor&, const Tensor&, const Tensor&) const {
  return std::nullopt;
}

std::optional<StateDict> Module::per_example_tapped_grads(const Tensor&, const std::vector<Tensor>&,
                                                          const std::vector<Tensor>&, const std::vector<Tensor>&) const {
  return std::nullopt;
}

Key Module::next_rng(std::string_view stream) {
  // Under xgrad::checkpoint the keys are recorded, and replayed when it recomputes.
  return RngReplay::next_key([&] { return fold_in(fold_in(fold_in(make_key(seed()), stream), path()), rng_counter_++); });
}

void Module::set_dtypes(std::optional<DType> dtype, DType param_dtype) {
  if (!has_dtype_options()) return;
  *bound_dtype_ = dtype;
  *bound_param_dtype_ = param_dtype;
  for (auto& [name, t] : params_)
    if (is_floating(t.dtype())) retype_in_place(t, param_dtype);
}

}  // namespace xgrad::nn
