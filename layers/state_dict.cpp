// Module::state_dict / load_state_dict (validate everything, then copy) and
// functional_call (run with substituted tensors).
#include <fmt/format.h>

#include "autograd/grad_mode.hpp"
#include "core/error.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

StateDict Module::state_dict() const {
  StateDict out;
  for (auto& [name, t] : named_parameters()) out.emplace(name, t.detach());
  for (auto& [name, t] : named_buffers()) out.emplace(name, t.detach());
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  const StateDict own = state_dict();
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, t] : own) {
    const auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name);
      continue;
    }
    const Tensor& given = it->second;
    if (!given.defined())
      mismatched.push_back(fmt::format("{}: the state dict holds an undefined tensor", name));
    else if (given.shape() != t.shape())
      mismatched.push_back(fmt::format("{}: shape {} in the state dict, {} in the model", name,
                                       shape_str(given.shape()), shape_str(t.shape())));
    else if (given.dtype() != t.dtype())
      mismatched.push_back(fmt::format("{}: dtype {} in the state dict, {} in the model", name,
                                       dtype_name(given.dtype()), dtype_name(t.dtype())));
  }
  for (const auto& [name, t] : state)
    if (!own.count(name)) unexpected.push_back(name);

  std::string problems;
  if (strict && !missing.empty()) problems += fmt::format("\n  missing keys: {}", fmt::join(missing, ", "));
  if (strict && !unexpected.empty()) problems += fmt::format("\n  unexpected keys: {}", fmt::join(unexpected, ", "));
  for (const auto& m : mismatched) problems += "\n  " + m;
  if (!problems.empty()) {
    const std::string where = path().empty() ? "" : fmt::format(" into '{}'", path());
    const char* hint = own.empty() ? "\n  (the model has no parameters yet: call init(sample_input) first, as "
                                     "parameters are created from the first input's shape)"
                                   : "";
    throw ValueError(fmt::format("load_state_dict{}: the state dict does not match the model:{}{}", where,
                                 problems, hint));
  }

  NoGradGuard no_grad;
  for (const auto& [name, t] : own) {
    const auto it = state.find(name);
    if (it != state.end()) Tensor(t).copy_(it->second);
  }
}

Tensor* Module::find_slot(const std::string& relative_path) {
  const auto dot = relative_path.find('.');
  if (dot == std::string::npos) {
    for (auto* list : {&params_, &buffers_})
      for (auto& [name, t] : *list)
        if (name == relative_path) return &t;
    return nullptr;
  }
  const std::string head = relative_path.substr(0, dot);
  for (auto& c : children_)
    if (c.name == head) return c.module->find_slot(relative_path.substr(dot + 1));
  return nullptr;
}

Tensor Module::functional_call(const StateDict& substitutes, const Tensor& input) {
  return functional_call(substitutes, [&] { return (*this)(input); });
}

Tensor Module::functional_call(const StateDict& substitutes, const std::function<Tensor()>& body) {
  std::vector<std::pair<Tensor*, Tensor>> saved;
  for (const auto& [name, value] : substitutes) {
    Tensor* slot = find_slot(name);
    if (!slot)
      throw ValueError(fmt::format("functional_call: the model has no parameter or buffer '{}' (call init first?)",
                                   name));
    if (!value.defined() || value.shape() != slot->shape() || value.dtype() != slot->dtype())
      throw ValueError(fmt::format("functional_call: '{}' must be {} {}, got {}", name, dtype_name(slot->dtype()),
                                   shape_str(slot->shape()),
                                   value.defined() ? fmt::format("{} {}", dtype_name(value.dtype()),
                                                                 shape_str(value.shape()))
                                                   : std::string("an undefined tensor")));
    saved.emplace_back(slot, *slot);
  }
  struct Restore {
    std::vector<std::pair<Tensor*, Tensor>>& saved;
    ~Restore() {
      for (auto& [slot, original] : saved) *slot = original;
    }
  } restore{saved};
  for (const auto& [name, value] : substitutes) *find_slot(name) = value;
  return body();
}

}  // namespace xgrad::nn
