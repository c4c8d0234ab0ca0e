// The ConvLocal suite (issue 13): forward + backward through nn::ConvLocal, as a user
// runs it (the layer's forward, backward(dy) through the tape, zero_grad), at 1 and 2
// threads, for the layers users write:
//   A  28×28×1 -> 3×3, F 16, N 64, VALID and SAME (an image: no input gradient)
//   B  14×14×16 -> 3×3, F 32, N 64: VALID, SAME, SAME stride 2, SAME kernel dilation 2,
//      SAME with F = 20
//   1-D  N 32, length 4096, 8 channels, kernel 9, F 16, SAME
//   3-D  N 4, 16³×4, kernel 3×3×3, F 8, SAME
// Reports per-step median (p10, p90), GFLOP/s, the ratio to B VALID's GFLOP/s at the same
// thread count, and the time the bytes that must move would take at the STREAM-triad
// bandwidth measured in this run (the memory roofline). With --general also the same
// layer on the general path (patches + per-position GEMMs).
// Lines starting with "RESULT" are parsed by bench/run_conv_local.sh.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/kernels/conv_geometry.hpp"
#include "core/kernels/conv_local_fast.hpp"
#include "core/threading.hpp"
#include "xgrad.hpp"

namespace {

struct Stats {
  double median, p10, p90;  // wall-clock ms
  double cpu_median;        // CPU ms of the process (all threads): on a shared machine
                            // the 1-thread figure is far steadier than the wall clock
};

double cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

Stats time_steps(const std::function<void()>& step, int steps, int warmup = 5) {
  for (int i = 0; i < warmup; ++i) step();
  std::vector<double> ms, cpu;
  for (int i = 0; i < steps; ++i) {
    const double c0 = cpu_ms();
    const auto t0 = std::chrono::steady_clock::now();
    step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(cpu_ms() - c0);
  }
  std::sort(ms.begin(), ms.end());
  std::sort(cpu.begin(), cpu.end());
  return {ms[ms.size() / 2], ms[ms.size() / 10], ms[ms.size() * 9 / 10], cpu[cpu.size() / 2]};
}

std::string cpu_model() {
  std::ifstream info("/proc/cpuinfo");
  std::string line;
  while (std::getline(info, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

// STREAM triad a = b + s·c over arrays far larger than the caches: GB/s at `threads`.
double triad_bandwidth(int threads) {
  const std::int64_t n = 1 << 24;  // 64 MiB per array
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
  xgrad::set_num_threads(threads);
  const Stats st = time_steps(
      [&] {
        xgrad::parallel_for_ranges(n, threads, [&](std::int64_t first, std::int64_t end) {
          for (std::int64_t i = first; i < end; ++i) a[i] = b[i] + 3.0f * c[i];
        });
      },
      10, 2);
  return 3.0 * n * sizeof(float) / (st.median * 1e6);
}

struct Case {
  const char* name;
  std::int64_t batch;
  std::vector<std::int64_t> spatial;
  std::int64_t channels;
  std::vector<int> kernel;
  int stride, dilation;
  const char* padding;
  std::int64_t features;
  bool input_gradient;
};

const std::vector<Case> kSuite = {
    {"A_VALID", 64, {28, 28}, 1, {3, 3}, 1, 1, "VALID", 16, false},
    {"A_SAME", 64, {28, 28}, 1, {3, 3}, 1, 1, "SAME", 16, false},
    {"B_VALID", 64, {14, 14}, 16, {3, 3}, 1, 1, "VALID", 32, true},
    {"B_SAME", 64, {14, 14}, 16, {3, 3}, 1, 1, "SAME", 32, true},
    {"B_SAME_s2", 64, {14, 14}, 16, {3, 3}, 2, 1, "SAME", 32, true},
    {"B_SAME_d2", 64, {14, 14}, 16, {3, 3}, 1, 2, "SAME", 32, true},
    {"B_SAME_F20", 64, {14, 14}, 16, {3, 3}, 1, 1, "SAME", 20, true},
    {"1D", 32, {4096}, 8, {9}, 1, 1, "SAME", 16, true},
    {"3D", 4, {16, 16, 16}, 4, {3, 3, 3}, 1, 1, "SAME", 8, true},
};

struct Measured {
  double ms, gflops, roofline_ms, cpu_ms;
};

Measured bench_case(const Case& c, int threads, bool fast, int steps, double bandwidth) {
  using namespace xgrad;
  Shape input{c.batch};
  input.insert(input.end(), c.spatial.begin(), c.spatial.end());
  input.push_back(c.channels);
  const std::vector<std::int64_t> kernel(c.kernel.begin(), c.kernel.end());
  const std::vector<std::int64_t> strides(kernel.size(), c.stride), dilation(kernel.size(), c.dilation);
  const auto g = kernels::make_conv_geometry(input, kernel, strides, c.padding, {}, dilation, "bench");
  const double P = static_cast<double>(g.out_positions()), I = static_cast<double>(g.patch_size()),
               N = static_cast<double>(c.batch), F = static_cast<double>(c.features);
  const double flops = 2.0 * N * P * I * F * (c.input_gradient ? 3 : 2);
  // Bytes that must move (float32): forward reads x, kernel, bias and writes y; the
  // backward reads x, dy (and the kernel again for dx) and writes dkernel, dbias (and dx).
  const double x_size = static_cast<double>(numel(input)), k_size = P * I * F, y_size = N * P * F;
  const double bytes = 4.0 * ((x_size + k_size + P * F + y_size) +
                              (x_size + y_size + k_size + P * F + (c.input_gradient ? k_size + x_size : 0)));

  nn::ConvLocal layer({.features = c.features, .kernel_size = c.kernel, .strides = c.stride, .padding = c.padding,
                       .kernel_dilation = c.dilation});
  Tensor x = random_normal(make_key(1), input);
  if (c.input_gradient) x.requires_grad_();
  Tensor y = layer(x);
  const Tensor dy = random_normal(make_key(2), y.shape());
  kernels::set_conv_local_fast_enabled(fast);
  set_num_threads(threads);
  const Stats st = time_steps(
      [&] {
        layer.zero_grad();
        if (c.input_gradient) x.zero_grad();
        layer(x).backward(dy);
      },
      steps);
  kernels::set_conv_local_fast_enabled(true);
  const double gflops = flops / (st.median * 1e6);
  const double roofline_ms = bytes / (bandwidth * 1e6);
  std::printf("  %-11s %-7s T=%d  fwd+bwd %8.3f ms (p10 %.3f, p90 %.3f; CPU %.3f ms)  %6.1f GFLOP/s  patch %4.0f  "
              "memory roofline %.3f ms (%3.0f%%)\n",
              c.name, fast ? "layer" : "general", threads, st.median, st.p10, st.p90, st.cpu_median, gflops, I,
              roofline_ms, 100 * roofline_ms / st.median);
  std::printf("RESULT workload=%s path=%s threads=%d median_ms=%.4f p10_ms=%.4f p90_ms=%.4f cpu_ms=%.4f gflops=%.2f "
              "patch=%.0f roofline_ms=%.4f\n",
              c.name, fast ? "layer" : "general", threads, st.median, st.p10, st.p90, st.cpu_median, gflops, I,
              roofline_ms);
  std::fflush(stdout);
  return {st.median, gflops, roofline_ms, st.cpu_median};
}

}  // namespace

// usage: conv_local_bench [--general] [case ...]   (default: every case, fast path only)
int main(int argc, char** argv) {
  bool general = false;
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--general") == 0) general = true;
    else only.emplace_back(argv[i]);
  }
  std::printf("CPU: %s; %d hardware threads; AVX-512 tiles %s\n", cpu_model().c_str(), xgrad::num_threads(),
              xgrad::kernels::conv_local_avx512_active() ? "on" : "off");
  std::map<int, double> bandwidth;
  for (int threads : {1, 2}) {
    bandwidth[threads] = triad_bandwidth(threads);
    std::printf("STREAM triad T=%d: %.1f GB/s\n", threads, bandwidth[threads]);
  }
  std::map<std::pair<std::string, int>, Measured> results;
  for (const Case& c : kSuite) {
    if (!only.empty() && std::find(only.begin(), only.end(), c.name) == only.end()) continue;
    for (int threads : {1, 2}) {
      const int steps = c.batch * c.spatial[0] > 5000 ? 20 : 60;
      results[{c.name, threads}] = bench_case(c, threads, true, steps, bandwidth[threads]);
      if (general) bench_case(c, threads, false, std::max(5, steps / 4), bandwidth[threads]);
    }
  }
  // Ratios in this run: to B VALID's GFLOP/s at the same thread count, and 2 threads over 1.
  std::printf("\n%-12s %8s %8s %9s %9s %11s %9s %10s %12s\n", "case", "T1 ms", "T2 ms", "T2/T1", "vs B T1",
              "vs B T2", "roofline", "T1 CPU ms", "vs B T1 CPU");
  for (const Case& c : kSuite) {
    const auto one = results.find({c.name, 1}), two = results.find({c.name, 2});
    if (one == results.end() || two == results.end()) continue;
    const auto b1 = results.find({"B_VALID", 1}), b2 = results.find({"B_VALID", 2});
    const double r1 = b1 != results.end() ? one->second.gflops / b1->second.gflops : 0;
    const double r2 = b2 != results.end() ? two->second.gflops / b2->second.gflops : 0;
    // GFLOP/s per CPU second at 1 thread, relative to B VALID's.
    const double rc = b1 != results.end() ? one->second.gflops * one->second.ms / one->second.cpu_ms /
                                                (b1->second.gflops * b1->second.ms / b1->second.cpu_ms)
                                          : 0;
    std::printf("%-12s %8.3f %8.3f %8.2fx %8.0f%% %10.0f%% %8.0f%% %10.3f %11.0f%%\n", c.name, one->second.ms,
                two->second.ms, one->second.ms / two->second.ms, 100 * r1, 100 * r2,
                100 * one->second.roofline_ms / one->second.ms, one->second.cpu_ms, 100 * rc);
  }
}
