// The main job's training step (scripts/train's default model, LocalNet, batch 64,
// AdamW) cut into its phases: the forward of each layer, the loss, the backward, the
// optimizer step; medians over `steps` steps after 50 untimed ones, at 1 thread and
// at 2. One fixed random batch (the step's memory traffic is the real one; its data
// are not), so the figures compare from one run to the next; an epoch is 938 such
// steps plus evaluation. Where the 2-thread column does not halve the 1-thread one,
// bench/core_to_core tells whether the machine's two CPUs share an L3 at the time.
//
//   build/bench/main_job_step [steps=300] [threads: 1 or 2; both when absent]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench/placement_report.hpp"
#include "bench/timing.hpp"
#include "models.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Phases {
  std::vector<std::vector<double>> layers;
  std::vector<double> forward, loss, backward, optimizer, total;
};

Phases time_steps(int threads, int steps) {
  set_num_threads(threads);
  auto model = fashion::make_model("local");
  auto& layers = dynamic_cast<nn::Sequential&>(*model);
  const Tensor x = random_uniform(make_key(1), {64, 28, 28, 1});
  const Tensor labels = random_randint(make_key(2), {64}, 0, 10);
  model->init(x);
  optim::Optimizer optimizer(*model, optim::adamw({.learning_rate = 1e-3}));
  Phases p;
  p.layers.resize(layers.size());
  constexpr int warmup = 50;
  for (int s = 0; s < warmup + steps; ++s) {
    const auto start = Clock::now();
    Tensor h = x;
    // The layers one by one, as the Sequential runs them: each conv with the pool and
    // the ReLU after it as one pass (nn::MaxPoolFusion), timed as the conv's; the
    // pool's and the ReLU's times are then 0.
    std::vector<double> layer_ms;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const auto t = Clock::now();
      bool pooled = false;
      if (const auto* conv = dynamic_cast<const nn::ConvBase*>(&layers[i])) {
        nn::MaxPoolFusion fusion(*conv, {2, 2}, true);
        h = layers[i](h);
        pooled = fusion.granted();
      } else {
        h = layers[i](h);
      }
      layer_ms.push_back(ms_between(t, Clock::now()));
      if (pooled) layer_ms.insert(layer_ms.end(), {0.0, 0.0}), i += 2;
    }
    const auto forward_end = Clock::now();
    const Tensor loss = losses::softmax_cross_entropy(h, labels, losses::Reduction::Mean);
    const auto loss_end = Clock::now();
    optimizer.zero_grad();
    loss.backward();
    const auto backward_end = Clock::now();
    optimizer.step();
    const auto end = Clock::now();
    if (s < warmup) continue;
    for (std::size_t i = 0; i < layers.size(); ++i) p.layers[i].push_back(layer_ms[i]);
    p.forward.push_back(ms_between(start, forward_end));
    p.loss.push_back(ms_between(forward_end, loss_end));
    p.backward.push_back(ms_between(loss_end, backward_end));
    p.optimizer.push_back(ms_between(backward_end, end));
    p.total.push_back(ms_between(start, end));
  }
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::max(10, std::atoi(argv[1])) : 300;
  const std::vector<int> thread_counts = argc > 2 ? std::vector<int>{std::max(1, std::atoi(argv[2]))} : std::vector<int>{1, 2};
  std::printf("CPU: %s; LocalNet training step, batch 64, medians of %d steps (ms)\n",
              bench::cpu_model().c_str(), steps);
  std::printf("%-8s%9s%9s%8s%10s%11s   forward per layer (conv [+ pool + relu], pool, relu, ConvLocal [+ pool + relu], pool, relu, flatten, dense)\n",
              "threads", "step", "forward", "loss", "backward", "optimizer");
  for (int threads : thread_counts) {
    const Phases p = time_steps(threads, steps);
    std::printf("%-8d%9.3f%9.3f%8.3f%10.3f%11.3f  ", threads, median(p.total), median(p.forward), median(p.loss),
                median(p.backward), median(p.optimizer));
    for (const auto& layer : p.layers) std::printf(" %.3f", median(layer));
    std::printf("\n");
  }
  bench::print_placement();
  return 0;
}
