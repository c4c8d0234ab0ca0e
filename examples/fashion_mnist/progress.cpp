#include "progress.hpp"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace fashion {

ProgressBar::ProgressBar(std::string label, std::int64_t total_batches)
    : label_(std::move(label)), total_(total_batches), tty_(isatty(fileno(stdout)) != 0),
      start_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(std::int64_t done, double mean_loss, std::int64_t samples) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(samples) / elapsed : 0.0;
  const double eta = done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : 0.0;
  const double fraction = total_ > 0 ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    fmt::print("\r{} [{}{}] {}/{} loss {:.4f} {:.0f} samples/s ETA {:.0f}s   ", label_, std::string(filled, '#'),
               std::string(kWidth - filled, '.'), done, total_, mean_loss, rate, eta);
    std::fflush(stdout);
  } else if (const int decile = static_cast<int>(fraction * 10); decile > last_decile_ && decile < 10) {
    // Not a terminal (a log file, CI): a line every 10%.
    last_decile_ = decile;
    fmt::print("{} {:3.0f}% {}/{} loss {:.4f} {:.0f} samples/s ETA {:.0f}s\n", label_, fraction * 100, done, total_,
               mean_loss, rate, eta);
    std::fflush(stdout);
  }
}

void ProgressBar::finish() {
  if (tty_) fmt::print("\r{}\r", std::string(100, ' '));
}

}  // namespace fashion
