// Internal: while a SummaryRecorder lives, Module::operator() reports each
// module's output to it (Module::summary builds its table from them).
#pragma once

#include <map>
#include <utility>

#include "core/tensor.hpp"

namespace xgrad::nn {

class Module;

class SummaryRecorder {
 public:
  SummaryRecorder() : previous_(current()) { current() = this; }
  ~SummaryRecorder() { current() = previous_; }
  SummaryRecorder(const SummaryRecorder&) = delete;
  SummaryRecorder& operator=(const SummaryRecorder&) = delete;

  static SummaryRecorder* active() { return current(); }
  // The last call wins for a module called several times.
  void record(const Module* module, const Tensor& input, const Tensor& output) {
    inputs_[module] = input.shape();
    outputs_[module] = {output.shape(), output.dtype()};
  }
  const std::map<const Module*, std::pair<Shape, DType>>& outputs() const { return outputs_; }
  const std::map<const Module*, Shape>& inputs() const { return inputs_; }

 private:
  static SummaryRecorder*& current() {
    thread_local SummaryRecorder* recorder = nullptr;
    return recorder;
  }
  SummaryRecorder* previous_;
  std::map<const Module*, std::pair<Shape, DType>> outputs_;
  std::map<const Module*, Shape> inputs_;
};

}  // namespace xgrad::nn
