// Internal: while a PerExampleCapture lives on this thread, Module::operator()
// reports every call (module, input, output) to it. per_example_grads
// (layers/per_example_grads.hpp) builds its batched rules from these calls.
#pragma once

#include <vector>

#include "core/tensor.hpp"

namespace xgrad::nn {

class Module;

class PerExampleCapture {
 public:
  struct Call {
    const Module* module;
    Tensor input, output;
    // What the module tapped during this call (tap() below); its rule is then
    // Module::per_example_tapped_grads.
    std::vector<Tensor> saved, taps;
    bool tapped = false;
  };

  PerExampleCapture() : previous_(current()) { current() = this; }
  ~PerExampleCapture() { current() = previous_; }
  PerExampleCapture(const PerExampleCapture&) = delete;
  PerExampleCapture& operator=(const PerExampleCapture&) = delete;

  static PerExampleCapture* active() { return current(); }
  void record(const Module* module, const Tensor& input, const Tensor& output) {
    Call call{module, input, output, {}, {}, false};
    for (auto it = pending_.begin(); it != pending_.end(); ++it)
      if (it->module == module) {
        call = std::move(*it);
        call.input = input;
        call.output = output;
        pending_.erase(it);
        break;
      }
    calls_.push_back(std::move(call));
  }
  // Called by a module inside its forward: its rule needs the gradient at the
  // intermediate tensors `taps` (e.g. a recurrent layer's gate pre-activations) and
  // the tensors `saved`; both are attached to the call being recorded.
  void tap(const Module* module, std::vector<Tensor> saved, std::vector<Tensor> taps) {
    pending_.push_back({module, Tensor(), Tensor(), std::move(saved), std::move(taps), true});
  }
  const std::vector<Call>& calls() const { return calls_; }
  // A module whose parameters were used outside a captured call (Embed::attend): its
  // batched rule would miss that use, so per_example_grads loops for it.
  void decline(const Module* module) { declined_.push_back(module); }
  const std::vector<const Module*>& declined() const { return declined_; }

 private:
  static PerExampleCapture*& current() {
    thread_local PerExampleCapture* capture = nullptr;
    return capture;
  }
  PerExampleCapture* previous_;
  std::vector<Call> calls_;
  std::vector<Call> pending_;  // tapped inside a call not recorded yet
  std::vector<const Module*> declined_;
};

}  // namespace xgrad::nn
