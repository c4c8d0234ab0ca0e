// nn::remat (flax.linen.remat / nn.checkpoint): a module whose calls run under
// xgrad::checkpoint (autograd/checkpoint.hpp). Its forward keeps only its input
// and output on the tape; backward recomputes the rest, replaying dropout's keys,
// so gradients are bitwise those of the plain module. Parameter paths, state_dict
// and outputs are unchanged: remat marks the module, it does not wrap it.
//
//   for (int i = 0; i < 32; ++i) blocks.push_back(nn::remat(std::make_shared<Block>()));
//
// The module must not update buffers in training (BatchNorm's running statistics
// would be updated twice).
#pragma once

#include <memory>

#include "layers/module.hpp"

namespace xgrad::nn {

template <class M>
M& remat(M& module) {  // Turns on rematerialisation for `module` (set_remat(true)); returns it.
  module.set_remat(true);
  return module;
}

template <class M>
std::shared_ptr<M> remat(std::shared_ptr<M> module) {  // The same for an owned module; returns it.
  module->set_remat(true);
  return module;
}

}  // namespace xgrad::nn
