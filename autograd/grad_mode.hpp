// Whether ops record themselves on the tape. Thread-local, so independent models
// can train on separate threads.
#pragma once

namespace xgrad {

// Whether ops record themselves on the tape, per thread (on by default; torch.autograd's grad mode).
struct GradMode {
  static bool is_enabled();               // this thread's switch
  static void set_enabled(bool enabled);  // sets this thread's switch; prefer the guards below
};

// RAII: disables recording for its scope (inference, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard() : previous_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// RAII: sets recording on or off for its scope (backward uses it for create_graph).
class GradModeGuard {
 public:
  // Sets recording to `enabled`; the destructor restores the previous setting.
  explicit GradModeGuard(bool enabled) : previous_(GradMode::is_enabled()) { GradMode::set_enabled(enabled); }
  ~GradModeGuard() { GradMode::set_enabled(previous_); }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace xgrad
