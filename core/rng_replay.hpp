// Random keys that a computation can record and later replay, so that running it
// again draws the same randomness. xgrad::checkpoint (autograd/checkpoint.hpp)
// records the keys its function takes (Dropout's masks: Module::next_rng asks
// next_key) during the forward pass, and replays them when it recomputes the
// function during backward, which makes the recomputed activations, and so the
// gradients, bitwise those of the plain run.
//
// Scopes nest: a recording scope records the keys the scopes below it hand out, so
// an inner checkpoint recomputed inside an outer one replays the outer's keys.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "core/random.hpp"

namespace xgrad {

// A scope that records the random keys handed out on this thread, or replays them,
// so that a recomputation (xgrad::checkpoint) draws the same dropout masks.
class RngReplay {
 public:
  // Record the keys drawn, or hand them out again.
  enum class Mode { Record, Replay };

  // Record: `keys` receives every key handed out in this scope. Replay: keys are
  // handed out from `keys` in order (ValueError when the recomputation asks for
  // more keys than the recorded run drew).
  RngReplay(Mode mode, std::vector<Key>& keys);
  ~RngReplay();
  RngReplay(const RngReplay&) = delete;
  RngReplay& operator=(const RngReplay&) = delete;

  // The next key of the innermost scope, or fresh() when no scope is active.
  static Key next_key(const std::function<Key()>& fresh);

 private:
  Key take(const std::function<Key()>& fresh);

  Mode mode_;
  std::vector<Key>& keys_;
  std::size_t position_ = 0;
  RngReplay* previous_;
};

}  // namespace xgrad
