#include "core/rng_replay.hpp"

#include <fmt/format.h>

#include "core/error.hpp"

namespace xgrad {

namespace {
thread_local RngReplay* t_innermost = nullptr;
}  // namespace

RngReplay::RngReplay(Mode mode, std::vector<Key>& keys) : mode_(mode), keys_(keys), previous_(t_innermost) {
  t_innermost = this;
}

RngReplay::~RngReplay() { t_innermost = previous_; }

Key RngReplay::take(const std::function<Key()>& fresh) {
  if (mode_ == Mode::Replay) {
    if (position_ >= keys_.size())
      throw ValueError(fmt::format("checkpoint: the recomputation draws more random keys than the forward pass "
                                   "did ({}); the function must draw the same randomness every time it runs",
                                   keys_.size()));
    return keys_[position_++];
  }
  // Record what the enclosing scope (or the caller) hands out.
  const Key key = previous_ ? previous_->take(fresh) : fresh();
  keys_.push_back(key);
  return key;
}

Key RngReplay::next_key(const std::function<Key()>& fresh) { return t_innermost ? t_innermost->take(fresh) : fresh(); }

}  // namespace xgrad
