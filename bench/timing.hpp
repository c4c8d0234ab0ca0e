// Timing helpers shared by the benchmarks: warm up, run, report median and spread.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace xgrad::bench {

struct Stats {
  double median, p10, p90;  // milliseconds per call
};

// Times `body` `reps` times after `warmup` untimed calls.
template <class F>
Stats time_ms(F&& body, int reps = 50, int warmup = 5) {
  for (int i = 0; i < warmup; ++i) body();
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(reps));
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    body();
    samples.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(samples.begin(), samples.end());
  const auto at = [&](double q) { return samples[static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1))]; };
  return {at(0.5), at(0.1), at(0.9)};
}

// The CPU's model name from /proc/cpuinfo ("unknown" where there is none): every
// benchmark prints it, as figures only travel with the machine they came from.
inline std::string cpu_model() {
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

inline void print_row(const char* workload, int threads, Stats s, double scale = 1.0, const char* unit = "ms") {
  std::printf("%-46s T=%d  median %10.4f %s  (p10 %.4f, p90 %.4f)\n", workload, threads, s.median * scale, unit,
              s.p10 * scale, s.p90 * scale);
  std::fflush(stdout);
}

}  // namespace xgrad::bench
