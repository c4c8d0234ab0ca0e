// libtorch twin of bench/models_bench.cpp: the same workloads, shapes and steps
// (NCHW where xgrad is NHWC; the locally connected layer as unfold + one baddbmm over
// output positions, libtorch's fastest formulation in conv_local_torch_twin).
//   usage: models_torch_twin [torch_threads=1] [openblas_threads=1] [workload=all]
// torch::set_num_threads does not reach OpenBLAS (which runs the GEMMs in Debian's
// build), so both are set. Lines starting with "RESULT" are parsed by bench/run_all.sh.
#include <dlfcn.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace {

int g_torch_threads = 1, g_blas_threads = 1;

void set_openblas_threads(int n) {
  using Setter = void (*)(int);
  if (auto set = reinterpret_cast<Setter>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(n);
  else std::fprintf(stderr, "warning: openblas_set_num_threads not found\n");
}

struct Stats {
  double median, p10, p90;  // ms
};

// The same protocol as bench/timing.hpp's time_ms: warm-up calls, then sorted samples.
Stats time_ms(const std::function<void()>& body, int reps, int warmup = 5) {
  for (int i = 0; i < warmup; ++i) body();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    body();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const auto at = [&](double q) { return ms[static_cast<std::size_t>(q * static_cast<double>(ms.size() - 1))]; };
  return {at(0.5), at(0.1), at(0.9)};
}

void result(const char* workload, Stats s, double scale = 1.0, const char* unit = "ms") {
  std::printf("%-20s torch=%d openblas=%d  median %10.4f %s  (p10 %.4f, p90 %.4f)\n", workload, g_torch_threads,
              g_blas_threads, s.median * scale, unit, s.p10 * scale, s.p90 * scale);
  std::printf("RESULT workload=%s torch_threads=%d blas_threads=%d median=%.5f p10=%.5f p90=%.5f unit=%s\n", workload,
              g_torch_threads, g_blas_threads, s.median * scale, s.p10 * scale, s.p90 * scale, unit);
  std::fflush(stdout);
}

struct MLPImpl : torch::nn::Module {
  torch::nn::Linear l1{nullptr}, l2{nullptr}, l3{nullptr};
  MLPImpl() {
    l1 = register_module("l1", torch::nn::Linear(784, 256));
    l2 = register_module("l2", torch::nn::Linear(256, 128));
    l3 = register_module("l3", torch::nn::Linear(128, 10));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(l1->forward(x));
    x = torch::relu(l2->forward(x));
    return l3->forward(x);
  }
};
TORCH_MODULE(MLP);

struct CNNImpl : torch::nn::Module {
  torch::nn::Conv2d c1{nullptr}, c2{nullptr};
  torch::nn::Linear fc{nullptr};
  CNNImpl() {
    c1 = register_module("c1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 16, 3)));
    c2 = register_module("c2", torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3)));
    fc = register_module("fc", torch::nn::Linear(32 * 5 * 5, 10));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(c1->forward(x)), 2);  // 28 -> 26 -> 13
    x = torch::max_pool2d(torch::relu(c2->forward(x)), 2);  // 13 -> 11 -> 5
    return fc->forward(x.flatten(1));
  }
};
TORCH_MODULE(CNN);

// Conv 3x3 SAME 16 -> relu -> pool -> locally connected 3x3 VALID 32 -> relu -> pool -> dense 10.
struct LocalNetImpl : torch::nn::Module {
  static constexpr int64_t k = 3, in_c = 16, out_c = 32, in_hw = 14, out_hw = in_hw - k + 1;
  torch::nn::Conv2d c1{nullptr};
  torch::Tensor local_w, local_b;  // [L, C·k·k, F] (unfold's channel-major patch order), [L, F]
  torch::nn::Linear fc{nullptr};
  LocalNetImpl() {
    c1 = register_module("c1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 16, 3).padding(1)));
    local_w = register_parameter("local_w", torch::randn({out_hw * out_hw, in_c * k * k, out_c}) * 0.1);
    local_b = register_parameter("local_b", torch::zeros({out_hw * out_hw, out_c}));
    fc = register_module("fc", torch::nn::Linear(out_c * 6 * 6, 10));
  }
  torch::Tensor forward(torch::Tensor x) {
    namespace F = torch::nn::functional;
    x = torch::max_pool2d(torch::relu(c1->forward(x)), 2);                  // 28 -> 28 -> 14
    const auto patches = F::unfold(x, F::UnfoldFuncOptions({k, k}));        // [N, C·k·k, L]
    auto y = torch::baddbmm(local_b.unsqueeze(1), patches.permute({2, 0, 1}), local_w);  // [L, N, F]
    y = y.permute({1, 2, 0}).reshape({x.size(0), out_c, out_hw, out_hw});  // 14 -> 12
    x = torch::max_pool2d(torch::relu(y), 2);                                // 12 -> 6
    return fc->forward(x.flatten(1));
  }
};
TORCH_MODULE(LocalNet);

// LSTM 128 over 28 steps of 28 inputs, the last hidden state into Linear 10.
struct RowLSTMImpl : torch::nn::Module {
  torch::nn::LSTM lstm{nullptr};
  torch::nn::Linear fc{nullptr};
  RowLSTMImpl() {
    lstm = register_module("lstm", torch::nn::LSTM(torch::nn::LSTMOptions(28, 128).batch_first(true)));
    fc = register_module("fc", torch::nn::Linear(128, 10));
  }
  torch::Tensor forward(torch::Tensor x) {
    auto out = lstm->forward(x);
    return fc->forward(std::get<0>(std::get<1>(out))[0]);  // h_n of the one layer
  }
};
TORCH_MODULE(RowLSTM);

template <class Net>
void training_step(const char* workload, Net net, const std::vector<int64_t>& input_shape, int reps) {
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-3));
  const auto x = torch::randn(input_shape);
  const auto labels = torch::randint(0, 10, {input_shape[0]}, torch::kLong);
  result(workload, time_ms(
                       [&] {
                         opt.zero_grad();
                         auto loss = torch::nn::functional::cross_entropy(net->forward(x), labels);
                         loss.backward();
                         opt.step();
                       },
                       reps));
}

void tiny_ops() {
  constexpr int kOps = 1000;
  const auto a = torch::ones({1}), b = torch::ones({1});
  torch::Tensor out;
  result("tiny_add_nograd", time_ms([&] {
           torch::NoGradGuard guard;
           for (int i = 0; i < kOps; ++i) out = a + b;
         }, 50), 1000.0 / kOps, "us/op");
  auto ga = torch::ones({1}, torch::requires_grad()), gb = torch::ones({1}, torch::requires_grad());
  result("tiny_add_grad", time_ms([&] {
           for (int i = 0; i < kOps; ++i) out = ga + gb;
         }, 50), 1000.0 / kOps, "us/op");
  result("chain1000_fwd_bwd", time_ms([&] {
           auto y = ga;
           for (int i = 0; i < kOps; ++i) y = y + gb;
           y.backward();
           ga.mutable_grad().reset();
           gb.mutable_grad().reset();
         }, 50));
}

void adam_1m() {
  auto w = torch::randn({1 << 20}).requires_grad_();
  w.mutable_grad() = torch::randn({1 << 20});
  torch::optim::Adam opt({w}, torch::optim::AdamOptions(1e-3));
  result("adam_1M", time_ms([&] { opt.step(); }, 100));
}

}  // namespace

int main(int argc, char** argv) {
  g_torch_threads = argc > 1 ? std::atoi(argv[1]) : 1;
  g_blas_threads = argc > 2 ? std::atoi(argv[2]) : 1;
  const std::string only = argc > 3 ? argv[3] : "all";
  torch::set_num_threads(g_torch_threads);
  set_openblas_threads(g_blas_threads);
  torch::manual_seed(0);
  const auto want = [&](const char* name) { return only == "all" || only == name; };

  if (want("tiny")) tiny_ops();
  const struct { const char* name; int64_t batch; int reps; } mlps[] = {
      {"mlp_b1", 1, 300}, {"mlp_b64", 64, 200}, {"mlp_b256", 256, 100}};
  for (const auto& m : mlps)
    if (want(m.name)) training_step(m.name, MLP(), {m.batch, 784}, m.reps);
  if (want("cnn_b64")) training_step("cnn_b64", CNN(), {64, 1, 28, 28}, 60);
  if (want("localnet_b64")) training_step("localnet_b64", LocalNet(), {64, 1, 28, 28}, 60);
  if (want("lstm_b64")) training_step("lstm_b64", RowLSTM(), {64, 28, 28}, 60);
  if (want("adam_1M")) adam_1m();
}
