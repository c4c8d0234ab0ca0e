// The ConvLocal suite (issue 13): forward + backward through nn::ConvLocal, as a user
// runs it (the layer's forward, backward(dy) through the tape, zero_grad), at 1 and 2
// threads, for the layers users write:
//   A  28×28×1 -> 3×3, F 16, N 64, VALID and SAME (an image: no input gradient)
//   B  14×14×16 -> 3×3, F 32, N 64: VALID, SAME, SAME stride 2, SAME kernel dilation 2,
//      SAME with F = 20
//   1-D  N 32, length 4096, 8 channels, kernel 9, F 16, SAME
//   3-D  N 4, 16³×4, kernel 3×3×3, F 8, SAME
// and, when named on the command line, larger layers whose kernel does not fit in the
// caches: a 1-channel sequence (seq_1ch) and DeepFace's locally connected layers
// (face_L4, face_L5).
// The cases are timed round-robin (one step of each per round), so that a change in the
// load of a shared machine hits them alike. Reports per-step median (p10, p90), GFLOP/s, the ratio to B VALID's GFLOP/s at the same
// thread count, and the time the bytes that must move would take at the STREAM-triad
// bandwidth measured in this run (the memory roofline). With --general also the same
// layer on the general path (patches + per-position GEMMs).
// Lines starting with "RESULT" are parsed by bench/run_conv_local.sh.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/kernels/conv/conv_geometry.hpp"
#include "core/kernels/conv/conv_local_fast.hpp"
#include "core/threading.hpp"
#include "bench/placement_report.hpp"
#include "bench/timing.hpp"
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

using xgrad::bench::cpu_model;

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

// Named on the command line only (not in the default run): the other layers
// users write, a 1-channel sequence and DeepFace's locally connected layers (L4: 9×9
// over 63×63×16, L5: 7×7 stride 2 over 55×55×16; both F 16, VALID).
const std::vector<Case> kExtra = {
    {"seq_1ch", 8, {60483}, 1, {20}, 1, 1, "VALID", 16, true},
    {"face_L4", 8, {63, 63}, 16, {9, 9}, 1, 1, "VALID", 16, true},
    {"face_L5", 8, {55, 55}, 16, {7, 7}, 2, 1, "VALID", 16, true},
};

struct Measured {
  double ms, gflops, roofline_ms, cpu_ms;
};

// One case set up for timing: its layer, operands and work.
struct Bench {
  const Case* c;
  double flops, bytes;
  std::unique_ptr<xgrad::nn::ConvLocal> layer;
  xgrad::Tensor x, dy;
  std::vector<double> ms, cpu;

  void step() {
    layer->zero_grad();
    if (c->input_gradient) x.zero_grad();
    (*layer)(x).backward(dy);
  }
};

Bench setup(const Case& c) {
  using namespace xgrad;
  Shape input{c.batch};
  input.insert(input.end(), c.spatial.begin(), c.spatial.end());
  input.push_back(c.channels);
  const std::vector<std::int64_t> kernel(c.kernel.begin(), c.kernel.end());
  const std::vector<std::int64_t> strides(kernel.size(), c.stride), dilation(kernel.size(), c.dilation);
  const auto g = kernels::make_conv_geometry(input, kernel, strides, c.padding, {}, dilation, "bench");
  const double P = static_cast<double>(g.out_positions()), I = static_cast<double>(g.patch_size()),
               N = static_cast<double>(c.batch), F = static_cast<double>(c.features);
  Bench b;
  b.c = &c;
  b.flops = 2.0 * N * P * I * F * (c.input_gradient ? 3 : 2);
  // Bytes that must move (float32): forward reads x, kernel, bias and writes y; the
  // backward reads x, dy (and the kernel again for dx) and writes dkernel, dbias (and dx).
  const double x_size = static_cast<double>(numel(input)), k_size = P * I * F, y_size = N * P * F;
  b.bytes = 4.0 * ((x_size + k_size + P * F + y_size) +
                   (x_size + y_size + k_size + P * F + (c.input_gradient ? k_size + x_size : 0)));
  b.layer = std::make_unique<nn::ConvLocal>(nn::ConvOptions{.features = c.features, .kernel_size = c.kernel,
                                                            .strides = c.stride, .padding = c.padding,
                                                            .kernel_dilation = c.dilation});
  b.x = random_normal(make_key(1), input);
  if (c.input_gradient) b.x.requires_grad_();
  const Tensor y = (*b.layer)(b.x);
  b.dy = random_normal(make_key(2), y.shape());
  return b;
}

// Times `rounds` steps of every bench, one step of each per round (round-robin), so a
// change in the machine's load hits every case alike: their ratios stay comparable.
std::vector<Measured> run_round_robin(std::vector<Bench>& benches, int threads, int rounds, double bandwidth,
                                      bool fast) {
  xgrad::kernels::set_conv_local_fast_enabled(fast);
  xgrad::set_num_threads(threads);
  for (Bench& b : benches) {
    b.ms.clear();
    b.cpu.clear();
    for (int i = 0; i < 3; ++i) b.step();  // warm-up
  }
  for (int round = 0; round < rounds; ++round)
    for (Bench& b : benches) {
      const double c0 = cpu_ms();
      const auto t0 = std::chrono::steady_clock::now();
      b.step();
      b.ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      b.cpu.push_back(cpu_ms() - c0);
    }
  xgrad::kernels::set_conv_local_fast_enabled(true);
  std::vector<Measured> out;
  for (Bench& b : benches) {
    std::sort(b.ms.begin(), b.ms.end());
    std::sort(b.cpu.begin(), b.cpu.end());
    const Stats st{b.ms[b.ms.size() / 2], b.ms[b.ms.size() / 10], b.ms[b.ms.size() * 9 / 10], b.cpu[b.cpu.size() / 2]};
    const double gflops = b.flops / (st.median * 1e6), roofline_ms = b.bytes / (bandwidth * 1e6);
    const char* path = fast ? "layer" : "general";
    std::printf("  %-11s %-7s T=%d  fwd+bwd %8.3f ms (p10 %.3f, p90 %.3f; CPU %.3f ms)  %6.1f GFLOP/s  "
                "memory roofline %.3f ms (%3.0f%%)\n",
                b.c->name, path, threads, st.median, st.p10, st.p90, st.cpu_median, gflops, roofline_ms,
                100 * roofline_ms / st.median);
    std::printf("RESULT workload=%s path=%s threads=%d median_ms=%.4f p10_ms=%.4f p90_ms=%.4f cpu_ms=%.4f "
                "gflops=%.2f roofline_ms=%.4f\n",
                b.c->name, path, threads, st.median, st.p10, st.p90, st.cpu_median, gflops, roofline_ms);
    out.push_back({st.median, gflops, roofline_ms, st.cpu_median});
  }
  std::fflush(stdout);
  return out;
}

}  // namespace

// usage: conv_local_bench [--general] [--rounds=40] [--threads=T] [case ...]
// (default: every suite case, fast path only, at 1 and 2 threads; --threads=1 for a
// profile of one thread count; seq_1ch, face_L4 and face_L5 run only when named)
int main(int argc, char** argv) {
  bool general = false;
  int rounds = 40;
  std::vector<int> thread_counts{1, 2};
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--general") == 0) general = true;
    else if (std::strncmp(argv[i], "--rounds=", 9) == 0) rounds = std::atoi(argv[i] + 9);
    else if (std::strncmp(argv[i], "--threads=", 10) == 0) thread_counts = {std::max(1, std::atoi(argv[i] + 10))};
    else only.emplace_back(argv[i]);
  }
  std::printf("CPU: %s; %d hardware threads; AVX-512 tiles %s\n", cpu_model().c_str(), xgrad::num_threads(),
              xgrad::kernels::conv_local_avx512_active() ? "on" : "off");
  std::map<int, double> bandwidth;
  for (int threads : thread_counts) {
    bandwidth[threads] = triad_bandwidth(threads);
    std::printf("STREAM triad T=%d: %.1f GB/s\n", threads, bandwidth[threads]);
  }
  std::map<std::pair<std::string, int>, Measured> results;
  std::vector<Bench> benches;
  for (const Case& c : kSuite)
    if (only.empty() || std::find(only.begin(), only.end(), c.name) != only.end()) benches.push_back(setup(c));
  for (const Case& c : kExtra)
    if (std::find(only.begin(), only.end(), c.name) != only.end()) benches.push_back(setup(c));
  for (int threads : thread_counts) {
    const auto measured = run_round_robin(benches, threads, rounds, bandwidth[threads], true);
    for (std::size_t i = 0; i < benches.size(); ++i) results[{benches[i].c->name, threads}] = measured[i];
    if (general) run_round_robin(benches, threads, std::max(3, rounds / 10), bandwidth[threads], false);
  }
  // Ratios in this run: to B VALID's GFLOP/s at the same thread count, and 2 threads over 1.
  std::printf("\n%-12s %8s %8s %9s %9s %11s %9s %10s %12s\n", "case", "T1 ms", "T2 ms", "T2/T1", "vs B T1",
              "vs B T2", "roofline", "T1 CPU ms", "vs B T1 CPU");
  std::vector<Case> reported = kSuite;
  reported.insert(reported.end(), kExtra.begin(), kExtra.end());
  for (const Case& c : reported) {
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
  xgrad::bench::print_placement();
}
