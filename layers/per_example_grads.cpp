#include "layers/per_example_grads.hpp"

#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "autograd/backward.hpp"
#include "autograd/grad_mode.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "layers/per_example_capture.hpp"

namespace xgrad {

namespace {

// Runs loss_fn and checks it returned one loss per example.
Tensor per_example_losses(const PerExampleLoss& loss_fn, const Tensor& outputs, const Tensor& targets,
                          std::int64_t batch) {
  Tensor losses = loss_fn(outputs, targets);
  if (!losses.defined() || losses.shape() != Shape{batch})
    throw ShapeError(fmt::format("per_example_grads: loss_fn must return one loss per example, shape [{}], got {} "
                                 "(use Reduction::None)",
                                 batch, losses.defined() ? shape_str(losses.shape()) : std::string("nothing")));
  return losses;
}

// Turns nn::remat off in a module tree for its lifetime, then restores it.
class RematOff {
 public:
  explicit RematOff(nn::Module& model) {
    for (auto& [path, module] : model.named_modules())
      if (module->is_remat()) {
        module->set_remat(false);
        switched_.push_back(module);
      }
  }
  ~RematOff() {
    for (nn::Module* module : switched_) module->set_remat(true);
  }
  RematOff(const RematOff&) = delete;
  RematOff& operator=(const RematOff&) = delete;

 private:
  std::vector<nn::Module*> switched_;
};

std::string join_path(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace

nn::StateDict per_example_grads(nn::Module& model, const PerExampleLoss& loss_fn, const Tensor& inputs,
                                const Tensor& targets, PerExampleReport* report) {
  if (!inputs.defined() || inputs.dim() == 0)
    throw ShapeError("per_example_grads: inputs need a batch axis 0, got a scalar");
  if (!targets.defined() || targets.dim() == 0 || targets.size(0) != inputs.size(0))
    throw ShapeError(fmt::format("per_example_grads: inputs {} and targets {} must have the same batch size on axis 0",
                                 shape_str(inputs.shape()), targets.defined() ? shape_str(targets.shape()) : "undefined"));
  const std::int64_t batch = inputs.size(0);
  if (report) *report = {};
  GradModeGuard recording(true);
  // Rematerialised modules run plainly here: under checkpoint the outputs of the
  // layers inside would not be on the tape the loss is differentiated on.
  const RematOff remat_off(model);

  // 1. One batched forward, every module call captured.
  Tensor total;
  std::vector<nn::PerExampleCapture::Call> calls;
  std::set<const nn::Module*> declined_modules;
  {
    nn::PerExampleCapture capture;
    const Tensor outputs = model(inputs);
    calls = capture.calls();
    declined_modules.insert(capture.declined().begin(), capture.declined().end());
    total = sum(per_example_losses(loss_fn, outputs, targets, batch));
  }
  const nn::NamedTensors params = model.named_parameters();
  if (params.empty()) return {};
  std::map<const nn::Module*, std::string> module_paths;
  for (auto& [path, module] : model.named_modules()) module_paths[module] = path;

  // 2. One backward for the gradient at every captured output of a module that owns
  // parameters (the others need no rule) and at every tensor a module tapped.
  std::map<const nn::Module*, std::vector<std::string>> own_names;
  for (auto& [path, module] : model.named_modules())
    for (const auto& [name, p] : module->named_parameters())
      if (name.find('.') == std::string::npos) own_names[module].push_back(name);
  struct Ruled {
    const nn::PerExampleCapture::Call* call;
    std::size_t first;  // index of its first tensor in `wanted`
  };
  std::vector<Ruled> ruled;
  std::vector<Tensor> wanted;
  for (const auto& call : calls) {
    if (call.tapped) {
      ruled.push_back({&call, wanted.size()});
      for (const Tensor& t : call.taps) wanted.push_back(t);
    } else if (own_names.count(call.module) && call.output.requires_grad()) {
      ruled.push_back({&call, wanted.size()});
      wanted.push_back(call.output);
    }
  }
  // grad needs every tensor on the tape; a tap that is not (no parameter behind it) gets zeros.
  std::vector<Tensor> on_tape;
  for (const Tensor& t : wanted)
    if (t.requires_grad()) on_tape.push_back(t);
  std::vector<Tensor> tape_grads;
  if (!on_tape.empty()) tape_grads = grad({total}, on_tape, {}, {.allow_unused = true});
  std::vector<Tensor> wanted_grads;
  for (std::size_t i = 0, j = 0; i < wanted.size(); ++i) {
    const Tensor g = wanted[i].requires_grad() ? tape_grads[j++] : Tensor();
    wanted_grads.push_back(g.defined() ? g : zeros_like(wanted[i]));
  }

  // 3. Each rule's contribution, keyed by parameter path. A parameter is covered when
  // some call's rule gave it and no call that uses it declined.
  std::map<std::string, Tensor> result;
  std::set<std::string> declined;
  const auto decline_own = [&](const nn::Module* module) {
    for (const std::string& name : own_names[module]) declined.insert(join_path(module_paths[module], name));
  };
  for (const nn::Module* module : declined_modules) decline_own(module);
  {
    NoGradGuard no_recording;
    for (const Ruled& r : ruled) {
      const auto& call = *r.call;
      const std::string& prefix = module_paths[call.module];
      std::optional<nn::StateDict> rule;
      if (call.tapped) {
        const std::vector<Tensor> grads(wanted_grads.begin() + static_cast<std::ptrdiff_t>(r.first),
                                        wanted_grads.begin() + static_cast<std::ptrdiff_t>(r.first + call.taps.size()));
        rule = call.module->per_example_tapped_grads(call.input, call.saved, call.taps, grads);
        if (!rule) {
          for (const auto& [name, p] : call.module->named_parameters())
            declined.insert(join_path(prefix, name));
          continue;
        }
      } else {
        rule = call.module->per_example_param_grads(call.input, call.output, wanted_grads[r.first]);
        if (!rule) {
          decline_own(call.module);
          continue;
        }
      }
      for (auto& [name, value] : *rule) {
        const std::string path = join_path(prefix, name);
        result[path] = result.count(path) ? result[path] + value : value;
      }
    }
  }
  for (const std::string& path : declined) result.erase(path);
  if (report)
    for (const auto& [path, p] : params)
      if (result.count(path)) report->batched.push_back(path);

  // 4. The loop fallback for the rest (including modules never called: their
  // gradients are zeros, as the loop finds them unused).
  std::vector<std::string> rest_paths;
  std::vector<Tensor> rest;
  for (const auto& [path, p] : params)
    if (!result.count(path) && p.requires_grad()) {
      rest_paths.push_back(path);
      rest.push_back(p);
    }
  if (report) report->looped = rest_paths;
  if (!rest.empty()) {
    std::vector<std::vector<Tensor>> per_example(rest.size());
    for (std::int64_t b = 0; b < batch; ++b) {
      const Tensor out = model(slice(inputs, 0, b, b + 1));
      const Tensor loss = sum(per_example_losses(loss_fn, out, slice(targets, 0, b, b + 1), 1));
      std::vector<Tensor> g = grad({loss}, rest, {}, {.allow_unused = true});
      for (std::size_t i = 0; i < rest.size(); ++i) per_example[i].push_back(g[i].defined() ? g[i] : zeros_like(rest[i]));
    }
    NoGradGuard no_recording;
    for (std::size_t i = 0; i < rest.size(); ++i) result[rest_paths[i]] = stack(per_example[i], 0);
  }
  nn::StateDict ordered;
  for (const auto& [path, p] : params)
    if (auto it = result.find(path); it != result.end()) ordered[path] = it->second.detach();
  return ordered;
}

}  // namespace xgrad
