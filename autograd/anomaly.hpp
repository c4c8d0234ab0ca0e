// Anomaly detection: with a DetectAnomalyGuard alive on this thread, backward
// checks every gradient a VJP produces and throws at the first NaN or Inf, naming
// the op whose backward produced it and the op that created the affected input.
//
// Without it nothing checks for non-finite values (a check would cost a pass over
// every tensor): floating ops follow IEEE 754, so NaN and Inf propagate through
// forward and backward alike, and 16-bit floats overflow to Inf. Converting a float
// to an integer dtype maps NaN to 0 and saturates out-of-range values, as XLA does.
#pragma once

namespace xgrad {

// Whether backward checks gradients for NaN and Inf, per thread (off by default; see above).
struct AnomalyMode {
  static bool is_enabled();               // this thread's switch
  static void set_enabled(bool enabled);  // sets this thread's switch; prefer DetectAnomalyGuard
};

// RAII: turns anomaly detection on for its scope on this thread (torch.autograd.detect_anomaly).
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
