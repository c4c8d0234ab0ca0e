#include "optim/optimizer.hpp"

#include <set>

#include <fmt/format.h>

#include "autograd/grad_mode.hpp"
#include "core/error.hpp"
#include "core/flush_denormals.hpp"
#include "optim/detail.hpp"

namespace xgrad::optim {

namespace {

constexpr const char* kStatePrefix = "opt";
constexpr const char* kStepKey = "step";

}  // namespace

Optimizer::Optimizer(NamedTensors params, GradientTransformation transformation)
    : transformation_(std::move(transformation)) {
  initialize(std::move(params));
}

bool Optimizer::ensure_initialized() {
  if (initialized_) return true;
  NamedTensors params = fetch_params_();
  if (params.empty()) return false;  // the model has not been called yet
  initialize(std::move(params));
  return true;
}

void Optimizer::initialize(NamedTensors params) {
  std::set<std::string> seen;
  for (const auto& [path, p] : params) {
    if (!p.defined()) throw ValueError(fmt::format("Optimizer: parameter '{}' is undefined", path));
    if (!is_floating(p.dtype()))
      throw DTypeError(fmt::format("Optimizer: parameter '{}' is {}; parameters must be floating", path,
                                   dtype_name(p.dtype())));
    if (!seen.insert(path).second) throw ValueError(fmt::format("Optimizer: parameter path '{}' appears twice", path));
  }
  params_ = std::move(params);
  fetch_params_ = nullptr;  // no reference to the model is kept
  state_ = transformation_.init(params_);
  for (const auto& [path, p] : params_) {
    update_buffers_.push_back(empty(p.shape(), detail::state_dtype(p.dtype())));
    updates_.emplace_back(path, update_buffers_.back());
  }
  initialized_ = true;
  if (pending_state_) {
    NamedTensors pending = std::move(*pending_state_);
    pending_state_.reset();
    load_now(pending);
  }
}

const NamedTensors& Optimizer::params() {
  ensure_initialized();
  return params_;
}

void Optimizer::zero_grad() {
  if (!ensure_initialized()) return;  // no parameters, so no gradients either
  for (auto& [path, p] : params_) p.zero_grad();
}

void Optimizer::step() {
  if (!ensure_initialized())
    throw ValueError("Optimizer.step: the model has no parameters yet (they are created at its first call)");
  NoGradGuard no_grad;
  FlushDenormalsGuard flush_denormals;
  if (transformation_.fused_step) {
    grads_.clear();
    for (const auto& [path, p] : params_) grads_.push_back(p.grad());
    const bool fused = transformation_.fused_step(params_, grads_, state_);
    grads_.clear();  // holds no gradient past the step
    if (fused) {
      ++step_count_;
      return;
    }
  }
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].second;
    Tensor& buffer = update_buffers_[i];
    const Tensor g = p.grad();  // set_grad guarantees the parameter's shape
    if (g.defined()) buffer.copy_(g);
    else buffer.fill_(0.0);
    updates_[i].second = buffer;  // a transformation may have replaced the handle last step
  }
  transformation_.update(updates_, state_, params_);
  apply_updates(params_, updates_);
  ++step_count_;
}

double Optimizer::learning_rate() const {
  if (!transformation_.learning_rate)
    throw ValueError("Optimizer.learning_rate: the transformation has no learning rate");
  // Before initialisation the counters are the initial ones, which do not depend on the parameters.
  const auto lr = initialized_ ? transformation_.learning_rate(state_)
                               : transformation_.learning_rate(transformation_.init({}));
  if (!lr) throw ValueError("Optimizer.learning_rate: the transformation has no learning rate");
  return *lr;
}

NamedTensors Optimizer::state_dict() {
  if (!ensure_initialized())
    throw ValueError("Optimizer.state_dict: the model has no parameters yet (they are created at its first call)");
  NamedTensors out = state_to_named_tensors(state_, kStatePrefix);
  out.emplace_back(kStepKey, from_data<std::int64_t>(&step_count_, {}));  // exact, not through double
  return out;
}

void Optimizer::load_state_dict(const NamedTensors& state) {
  if (ensure_initialized()) load_now(state);
  else pending_state_ = state;
}

void Optimizer::load_now(const NamedTensors& saved) {
  const char* what = "Optimizer.load_state_dict";
  const Tensor* step = nullptr;
  NamedTensors entries;
  entries.reserve(saved.size());
  for (const auto& entry : saved) {
    if (entry.first == kStepKey) step = &entry.second;
    else entries.push_back(entry);
  }
  if (!step) throw ValueError(fmt::format("{}: missing key '{}'", what, kStepKey));
  if (step->dtype() != DType::Int64 || step->dim() != 0)
    throw DTypeError(fmt::format("{}: '{}' must be a 0-d int64 tensor, got {} {}", what, kStepKey,
                                 dtype_name(step->dtype()), shape_str(step->shape())));
  load_state_from_named_tensors(state_, entries, kStatePrefix, what);
  step_count_ = step->data<std::int64_t>()[0];
}

}  // namespace xgrad::optim
