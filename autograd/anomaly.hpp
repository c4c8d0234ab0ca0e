// Anomaly detection: with a DetectAnomalyGuard alive on this thread, backward
// checks every gradient a VJP produces and throws at the first NaN or Inf, naming
// the op whose backward produced it and the op that created the affected input.
#pragma once

namespace xgrad {

struct AnomalyMode {
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

class DetectAnomalyGuard {
 public:
  DetectAnomalyGuard() : previous_(AnomalyMode::is_enabled()) { AnomalyMode::set_enabled(true); }
  ~DetectAnomalyGuard() { AnomalyMode::set_enabled(previous_); }
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace xgrad
