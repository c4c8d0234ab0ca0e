// Module::state_dict / load_state_dict: validate everything, then copy.
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

}  // namespace xgrad::nn
