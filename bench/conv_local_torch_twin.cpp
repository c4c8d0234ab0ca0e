// libtorch twin of bench/conv_local_bench.cpp: the same locally connected layers in
// libtorch's best formulations, patches by `unfold` then one GEMM per output position,
// either as one `bmm` over positions or as an `einsum`, forward + backward with a
// given output cotangent (weights and bias always get gradients; the input of B too).
//   usage: conv_local_torch_twin [steps=100] [torch_threads=1] [openblas_threads=1]
// torch::set_num_threads does not reach OpenBLAS (which runs the GEMMs in Debian's
// build), so both are set. Lines starting with "RESULT" are parsed by run_conv_local.sh.
#include <dlfcn.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

namespace {

void set_openblas_threads(int n) {
  using Setter = void (*)(int);
  if (auto set = reinterpret_cast<Setter>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(n);
  else std::fprintf(stderr, "warning: openblas_set_num_threads not found\n");
}

struct Stats {
  double median, p10, p90;
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

// x [N, C, H, W], w [L, C·k·k, F] (unfold's patch order is channel-major, as Flax's), b [L, F].
torch::Tensor local_bmm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, int64_t k) {
  const int64_t n = x.size(0), oh = x.size(2) - k + 1, ow = x.size(3) - k + 1;
  const auto patches = torch::nn::functional::unfold(x, torch::nn::functional::UnfoldFuncOptions({k, k}));
  const auto y = torch::baddbmm(b.unsqueeze(1), patches.permute({2, 0, 1}), w);  // [L, N, F]
  return y.permute({1, 2, 0}).reshape({n, w.size(2), oh, ow});
}

torch::Tensor local_einsum(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, int64_t k) {
  const int64_t n = x.size(0), oh = x.size(2) - k + 1, ow = x.size(3) - k + 1;
  const auto patches = torch::nn::functional::unfold(x, torch::nn::functional::UnfoldFuncOptions({k, k}));
  const auto y = torch::einsum("nil,lif->nfl", {patches, w}) + b.t().unsqueeze(0);  // [N, F, L]
  return y.reshape({n, w.size(2), oh, ow});
}

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 100;
  const int torch_threads = argc > 2 ? std::atoi(argv[2]) : 1;
  const int blas_threads = argc > 3 ? std::atoi(argv[3]) : 1;
  torch::set_num_threads(torch_threads);
  set_openblas_threads(blas_threads);
  torch::manual_seed(0);

  struct Workload {
    const char* name;
    int64_t c, h, f;
    bool input_gradient;
  } workloads[] = {{"A", 1, 28, 16, false}, {"B", 16, 14, 32, true}};
  const int64_t n = 64, k = 3;
  for (const auto& wl : workloads) {
    const int64_t oh = wl.h - k + 1, positions = oh * oh;
    auto x = torch::randn({n, wl.c, wl.h, wl.h}).requires_grad_(wl.input_gradient);
    auto w = (torch::randn({positions, wl.c * k * k, wl.f}) * 0.1).requires_grad_();
    auto b = torch::randn({positions, wl.f}).requires_grad_();
    const auto dy = torch::randn({n, wl.f, oh, oh});
    {
      torch::NoGradGuard no_grad;
      const double diff = (local_bmm(x, w, b, k) - local_einsum(x, w, b, k)).abs().max().item<double>();
      if (diff > 1e-3) std::printf("WARNING: %s bmm and einsum differ by %g\n", wl.name, diff);
    }
    for (int variant = 0; variant < 2; ++variant) {
      const auto layer = variant == 0 ? local_bmm : local_einsum;
      const Stats st = time_steps(
          [&] {
            layer(x, w, b, k).backward(dy);
            if (wl.input_gradient) x.mutable_grad().reset();
            w.mutable_grad().reset();
            b.mutable_grad().reset();
          },
          steps);
      std::printf("RESULT workload=%s variant=%s torch_threads=%d blas_threads=%d median_ms=%.4f p10_ms=%.4f "
                  "p90_ms=%.4f\n",
                  wl.name, variant == 0 ? "bmm" : "einsum", torch_threads, blas_threads, st.median, st.p10, st.p90);
      std::fflush(stdout);
    }
  }
}
