// libtorch twin of bench/attention_bench.cpp: torch::nn::MultiheadAttention(64, 4) on
// x [16, 64, 64] (libtorch 1.13's C++ module is sequence-first: [tokens, batch, width]),
// forward without the averaged weights, loss sum(out * c), backward to the input and
// the parameters.
//   usage: attention_torch_twin [torch_threads=1] [openblas_threads=1]
// torch::set_num_threads does not reach OpenBLAS (which runs the GEMMs in Debian's
// build), so both are set. Lines starting with "RESULT" are parsed by bench/run_all.sh.
#include <dlfcn.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  const int torch_threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const int blas_threads = argc > 2 ? std::atoi(argv[2]) : 1;
  torch::set_num_threads(torch_threads);
  using Setter = void (*)(int);
  if (auto set = reinterpret_cast<Setter>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(blas_threads);
  else std::fprintf(stderr, "warning: openblas_set_num_threads not found\n");
  torch::manual_seed(0);

  torch::nn::MultiheadAttention attention(torch::nn::MultiheadAttentionOptions(64, 4));
  auto x = torch::randn({16, 64, 64}).requires_grad_();
  const auto cotangent = torch::randn({16, 64, 64});
  const auto step = [&] {
    attention->zero_grad();
    x.mutable_grad().reset();
    auto out = std::get<0>(attention->forward(x, x, x, {}, /*need_weights=*/false));
    (out * cotangent).sum().backward();
  };
  for (int i = 0; i < 20; ++i) step();
  std::vector<double> ms;
  for (int i = 0; i < 300; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const auto at = [&](double q) { return ms[static_cast<std::size_t>(q * static_cast<double>(ms.size() - 1))]; };
  const char* workload = "self_attention_b64_l16_e64_h4";
  std::printf("%-46s torch=%d openblas=%d  median %10.4f ms  (p10 %.4f, p90 %.4f)\n", workload, torch_threads,
              blas_threads, at(0.5), at(0.1), at(0.9));
  std::printf("RESULT workload=%s torch_threads=%d blas_threads=%d median=%.5f p10=%.5f p90=%.5f unit=ms\n", workload,
              torch_threads, blas_threads, at(0.5), at(0.1), at(0.9));
}
