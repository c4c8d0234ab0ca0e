// Core micro-benchmarks: per-op overhead with and without the tape, a long chain
// forward + backward, and reductions against a plain loop.
// Usage: build/bench/core_bench        (single-threaded: these are per-op costs)
#include <cstdio>

#include "bench/timing.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using xgrad::bench::print_row;
using xgrad::bench::time_ms;

namespace {

void tiny_ops() {
  constexpr int kOps = 10000;
  Tensor a = scalar(1.0f), b = scalar(2.0f);
  auto no_grad = time_ms([&] {
    NoGradGuard guard;
    for (int i = 0; i < kOps; ++i) a + b;
  }, 20);
  print_row("1-element add, no autograd (per op)", 1, no_grad, 1000.0 / kOps, "us");
  Tensor x = scalar(1.0f).requires_grad_();
  auto recorded = time_ms([&] {
    for (int i = 0; i < kOps; ++i) x + b;
  }, 20);
  print_row("1-element add, recorded on the tape (per op)", 1, recorded, 1000.0 / kOps, "us");
  constexpr int kChain = 1000;
  auto chain = time_ms([&] {
    Tensor y = x;
    for (int i = 0; i < kChain; ++i) y = y + b;
    y.backward();
  }, 20);
  print_row("1000-add chain, forward + backward (per op)", 1, chain, 1000.0 / kChain, "us");
}

void reductions() {
  constexpr std::int64_t n = 1024;
  Tensor m = random_uniform(make_key(0), {n, n});
  const float* p = m.data<float>();
  std::vector<float> sink(n);
  auto rows_loop = time_ms([&] {
    for (std::int64_t i = 0; i < n; ++i) {
      float s = 0;
      for (std::int64_t j = 0; j < n; ++j) s += p[i * n + j];
      sink[static_cast<std::size_t>(i)] = s;
    }
  });
  auto cols_loop = time_ms([&] {
    std::fill(sink.begin(), sink.end(), 0.0f);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) sink[static_cast<std::size_t>(j)] += p[i * n + j];
  });
  auto axis1 = time_ms([&] { sum(m, {1}); });
  auto axis0 = time_ms([&] { sum(m, {0}); });
  print_row("sum 1024x1024 f32 over axis 1 (xgrad)", 1, axis1);
  print_row("sum 1024x1024 f32 over axis 1 (plain loop)", 1, rows_loop);
  print_row("sum 1024x1024 f32 over axis 0 (xgrad)", 1, axis0);
  print_row("sum 1024x1024 f32 over axis 0 (plain loop)", 1, cols_loop);
  std::printf("ratios to the plain loop: axis 1 %.2fx, axis 0 %.2fx\n", axis1.median / rows_loop.median,
              axis0.median / cols_loop.median);
}

void matmul_256() {
  constexpr std::int64_t n = 256;
  Tensor a = random_uniform(make_key(1), {n, n}), b = random_uniform(make_key(2), {n, n});
  auto t = time_ms([&] { matmul(a, b); });
  print_row("matmul 256x256x256 f32 (cblas_sgemm)", 1, t);
  std::printf("  = %.1f GFLOP/s\n", 2.0 * n * n * n / (t.median * 1e6));
}

}  // namespace

int main() {
  std::printf("xgrad core micro-benchmarks (medians; 1 thread)\n");
  tiny_ops();
  reductions();
  matmul_256();
}
