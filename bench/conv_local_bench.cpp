// Locally connected layer (ConvLocal, VALID, stride 1, with bias) forward + backward, N = 64:
//   A: 28×28×1 -> 3×3, F 16 (the input is an image: no input gradient)
//   B: 14×14×16 -> 3×3, F 32 (with the input gradient)
// Three paths, at 1 and 2 threads:
//   raw      the AVX2 fast kernels called directly (forward, then one fused backward)
//   layer    what a user runs: nn::ConvLocal forward, backward(dy) through the tape, zero_grad
//   general  the same layer with the fast kernels switched off (patches + per-position GEMMs)
// Reports per-step median (p10, p90), GFLOP/s, and as a yardstick OpenBLAS sgemm running
// the same per-position GEMMs on pre-built patches (the "patches + GEMM" formulation minus
// patch extraction) and one large square GEMM.
// Lines starting with "RESULT" are parsed by bench/run_conv_local.sh.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/kernels/conv_local_fast.hpp"
#include "core/threading.hpp"
#include "xgrad.hpp"

using xgrad::kernels::ConvLocal2dFastShape;

namespace {

constexpr double kPeakPerCore = 102.0;  // GFLOP/s fp32 (Zen 3: 2 FMA × 8 lanes × 2 × ~3.2 GHz)

struct Stats {
  double median, p10, p90;  // ms
};

Stats time_steps(const std::function<void()>& step, int steps, int warmup = 10) {
  for (int i = 0; i < warmup; ++i) step();
  std::vector<double> ms;
  for (int i = 0; i < steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms[ms.size() / 10], ms[ms.size() * 9 / 10]};
}

std::vector<float> random_vector(std::size_t size, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(size);
  for (float& e : v) e = normal(rng);
  return v;
}

struct Workload {
  const char* name;
  ConvLocal2dFastShape shape;
  bool input_gradient;
};

void bench_workload(const Workload& w, int steps) {
  const ConvLocal2dFastShape& s = w.shape;
  const std::size_t N = s.batch, P = s.out_height() * s.out_width(), I = s.patch_size(), F = s.features;
  std::mt19937 rng(42);
  auto x = random_vector(N * s.in_height * s.in_width * s.in_features, rng);
  auto kernel = random_vector(P * I * F, rng, 0.1f);
  auto bias = random_vector(P * F, rng);
  auto dy = random_vector(N * P * F, rng);
  std::vector<float> y(N * P * F), d_kernel(P * I * F), d_bias(P * F), d_x(w.input_gradient ? x.size() : 0);
  const double gemm_flops = 2.0 * N * P * I * F;
  const double total_flops = gemm_flops * (w.input_gradient ? 3 : 2);
  std::printf("%s: N=%zu %lldx%lldx%lld -> %lldx%lld kernel, F=%zu, %zu positions, patch %zu, %s; %.1f MFLOP per step\n",
              w.name, N, (long long)s.in_height, (long long)s.in_width, (long long)s.in_features,
              (long long)s.kernel_height, (long long)s.kernel_width, F, P, I,
              w.input_gradient ? "with input gradient" : "no input gradient", total_flops * 1e-6);

  for (int threads : {1, 2}) {
    xgrad::set_num_threads(threads);
    const Stats fwd = time_steps(
        [&] { xgrad::kernels::conv_local2d_forward_fast(s, x.data(), kernel.data(), bias.data(), y.data()); }, steps);
    const Stats both = time_steps(
        [&] {
          xgrad::kernels::conv_local2d_forward_fast(s, x.data(), kernel.data(), bias.data(), y.data());
          if (w.input_gradient) std::memset(d_x.data(), 0, d_x.size() * sizeof(float));
          xgrad::kernels::conv_local2d_backward_fast(s, x.data(), kernel.data(), dy.data(),
                                                     w.input_gradient ? d_x.data() : nullptr, d_kernel.data(),
                                                     d_bias.data());
        },
        steps);
    const double gflops = total_flops / (both.median * 1e6);
    std::printf("  xgrad  T=%d  fwd %7.3f ms (p10 %.3f, p90 %.3f) | fwd+bwd %7.3f ms (p10 %.3f, p90 %.3f)  "
                "%6.1f GFLOP/s = %3.0f%% of %d-core peak\n",
                threads, fwd.median, fwd.p10, fwd.p90, both.median, both.p10, both.p90, gflops,
                100 * gflops / (kPeakPerCore * threads), threads);
    std::printf("RESULT workload=%s path=raw threads=%d median_ms=%.4f p10_ms=%.4f p90_ms=%.4f gflops=%.1f\n", w.name,
                threads, both.median, both.p10, both.p90, gflops);
  }

  // The public path: the layer on tensors, the backward through the tape.
  xgrad::nn::ConvLocal layer({.features = static_cast<std::int64_t>(F),
                              .kernel_size = {static_cast<int>(s.kernel_height), static_cast<int>(s.kernel_width)},
                              .padding = "VALID"});
  xgrad::Tensor xt = xgrad::from_data(x.data(), {s.batch, s.in_height, s.in_width, s.in_features});
  if (w.input_gradient) xt.requires_grad_();
  const xgrad::Tensor dyt = xgrad::from_data(dy.data(), {s.batch, s.out_height(), s.out_width(), s.features});
  const auto layer_step = [&] {
    layer.zero_grad();
    xt.zero_grad();
    layer(xt).backward(dyt);
  };
  for (const bool fast : {true, false}) {
    xgrad::kernels::set_conv_local_fast_enabled(fast);
    for (int threads : {1, 2}) {
      xgrad::set_num_threads(threads);
      const Stats st = time_steps(layer_step, fast ? steps : steps / 4);
      const double gflops = total_flops / (st.median * 1e6);
      std::printf("  %-7s T=%d  fwd+bwd %7.3f ms (p10 %.3f, p90 %.3f)  %6.1f GFLOP/s\n", fast ? "layer" : "general",
                  threads, st.median, st.p10, st.p90, gflops);
      std::printf("RESULT workload=%s path=%s threads=%d median_ms=%.4f p10_ms=%.4f p90_ms=%.4f gflops=%.1f\n", w.name,
                  fast ? "layer" : "general", threads, st.median, st.p10, st.p90, gflops);
    }
  }
  xgrad::kernels::set_conv_local_fast_enabled(true);

  // The same GEMMs through OpenBLAS on contiguous per-position blocks (patch extraction not timed):
  // forward [N×I]·[I×F], d_kernel [I×N]·[N×F], d_patches [N×F]·[F×I].
  std::vector<float> patches(P * N * I), cot(P * N * F), out(P * N * F), dk(P * I * F), dp(P * N * I);
  for (std::size_t p = 0; p < P; ++p)
    for (std::size_t n = 0; n < N; ++n) {
      std::copy_n(dy.data() + (n * P + p) * F, F, cot.data() + (p * N + n) * F);
      for (std::size_t i = 0; i < I; ++i) patches[(p * N + n) * I + i] = x[(n * I + i) % x.size()];
    }
  const int m = static_cast<int>(N), k = static_cast<int>(I), f = static_cast<int>(F);
  for (int threads : {1, 2}) {
    openblas_set_num_threads(threads);
    const Stats st = time_steps(
        [&] {
          for (std::size_t p = 0; p < P; ++p) {
            const float* pa = patches.data() + p * N * I;
            const float* kp = kernel.data() + p * I * F;
            const float* g = cot.data() + p * N * F;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, f, k, 1.0f, pa, k, kp, f, 0.0f,
                        out.data() + p * N * F, f);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, f, m, 1.0f, pa, k, g, f, 0.0f,
                        dk.data() + p * I * F, f);
            if (w.input_gradient)
              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, f, 1.0f, g, f, kp, f, 0.0f,
                          dp.data() + p * N * I, k);
          }
        },
        steps);
    std::printf("  sgemm  T=%d  same per-position GEMMs %7.3f ms (p10 %.3f, p90 %.3f)  %6.1f GFLOP/s\n", threads,
                st.median, st.p10, st.p90, total_flops / (st.median * 1e6));
  }
}

void bench_square_sgemm() {
  const int n = 1024;
  std::mt19937 rng(7);
  auto a = random_vector(std::size_t(n) * n, rng), b = random_vector(std::size_t(n) * n, rng);
  std::vector<float> c(std::size_t(n) * n);
  for (int threads : {1, 2}) {
    openblas_set_num_threads(threads);
    const Stats st = time_steps(
        [&] {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f,
                      c.data(), n);
        },
        10, 2);
    std::printf("sgemm %dx%dx%d T=%d: %7.3f ms  %6.1f GFLOP/s\n", n, n, n, threads, st.median,
                2.0 * n * n * n / (st.median * 1e6));
  }
}

}  // namespace

// usage: conv_local_bench [workload]   (A or B; default both, then the square sgemm)
int main(int argc, char** argv) {
  const std::string only = argc > 1 ? argv[1] : "";
  const Workload workloads[] = {
      {"A", {64, 28, 28, 1, 3, 3, 1, 1, 16}, false},
      {"B", {64, 14, 14, 16, 3, 3, 1, 1, 32}, true},
  };
  for (const auto& w : workloads) {
    if (!only.empty() && only != w.name) continue;
    if (!xgrad::kernels::conv_local2d_fast_supported(w.shape)) {
      std::printf("%s: fast path not supported on this CPU\n", w.name);
      return 1;
    }
    bench_workload(w, w.input_gradient ? 100 : 200);
  }
  if (only.empty()) bench_square_sgemm();
}
