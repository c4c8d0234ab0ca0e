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
  };

  PerExampleCapture() : previous_(current()) { current() = this; }
  ~PerExampleCapture() { current() = previous_; }
  PerExampleCapture(const PerExampleCapture&) = delete;
  PerExampleCapture& operator=(const PerExampleCapture&) = delete;

  static PerExampleCapture* active() { return current(); }
  void record(const Module* module, const Tensor& input, const Tensor& output) {
    calls_.push_back({module, input, output});
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
  std::vector<const Module*> declined_;
};

}  // namespace xgrad::nn
