// A one-line progress bar per epoch on a terminal; plain lines when stdout is not a TTY.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace fashion {

class ProgressBar {
 public:
  ProgressBar(std::string label, std::int64_t total_batches);
  // After each batch: the running mean loss and the samples seen so far.
  void update(std::int64_t batches_done, double mean_loss, std::int64_t samples_done);
  void finish();

 private:
  std::string label_;
  std::int64_t total_;
  bool tty_;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace fashion
