// Training-step time of one small model under the three compute dtypes (issue 19
// item 7): a 1-D ConvLocal sequence classifier (x [32, 200, 4] -> ConvLocal(8, k=9)
// -> relu -> Dense(2)), Adam, softmax cross-entropy, DynamicLossScale::step, float32
// parameters. Prints the CPU, each policy's median step time and its ratio to
// float32 measured in the same run (runs interleaved, so load drifts hit all three).
//   bench/mixed_precision_bench [steps=200] [rounds=5]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/timing.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

struct SequenceClassifier : nn::Module {
  nn::ConvLocal local{{.features = 8, .kernel_size = 9}};
  nn::Dense head{{.features = 2}};
  SequenceClassifier() {
    register_module("local", local);
    register_module("head", head);
  }
  Tensor forward(const Tensor& x) override { return head(flatten(relu(local(x)), 1)); }
};

using xgrad::bench::cpu_model;

// Seconds for `steps` training steps under `policy`.
double run(const std::string& policy, int steps) {
  const Tensor x = random_normal(make_key(1), {32, 200, 4});
  const Tensor y = random_randint(make_key(2), {32}, 0, 2);
  SequenceClassifier model;
  nn::apply_policy(model, nn::parse_policy(policy));
  model.init(x);
  optim::Optimizer opt(model, optim::adam({.learning_rate = 1e-3}));
  nn::DynamicLossScale scaler;
  const auto step = [&] {
    Tensor loss = losses::softmax_cross_entropy(model(x), y, losses::Reduction::Mean);
    opt.zero_grad();
    scaler.scale(loss).backward();
    scaler.step(opt, model);
  };
  for (int i = 0; i < 5; ++i) step();  // warm-up: scratch buffers, OpenBLAS threads
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 200;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  set_num_threads(1);
  std::printf("CPU: %s; 1 thread; %d steps per run, %d interleaved rounds\n", cpu_model().c_str(), steps, rounds);
  const std::vector<std::string> policies{"params=float32", "params=float32,compute=bfloat16",
                                          "params=float32,compute=float16"};
  std::vector<std::vector<double>> seconds(policies.size());
  for (int r = 0; r < rounds; ++r)
    for (std::size_t p = 0; p < policies.size(); ++p) seconds[p].push_back(run(policies[p], steps));
  std::vector<double> median;
  for (auto& s : seconds) {
    std::sort(s.begin(), s.end());
    median.push_back(s[s.size() / 2]);
  }
  for (std::size_t p = 0; p < policies.size(); ++p)
    std::printf("%-34s median %.3f s (%.3f ms/step), %.2fx float32\n", policies[p].c_str(), median[p],
                1e3 * median[p] / steps, median[p] / median[0]);
}
