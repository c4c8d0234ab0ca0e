// Per-example gradients of the Fashion-MNIST CNN and LocalNet at batch 64 against a
// normal training step's forward and backward (target: <= 3x), and against the
// loop over examples they replace.
//
//   build/bench/per_example_bench [reps]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bench/timing.hpp"
#include "models.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

using xgrad::bench::cpu_model;

Tensor per_example_loss(const Tensor& logits, const Tensor& labels) { return losses::softmax_cross_entropy(logits, labels); }

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 20;
  std::printf("CPU: %s, %d threads\n", cpu_model().c_str(), num_threads());
  const Tensor x = random_uniform(make_key(1), {64, 28, 28, 1});
  const Tensor labels = random_randint(make_key(2), {64}, 0, 10);
  for (const char* name : {"cnn", "local"}) {
    auto model = fashion::make_model(name);
    model->init(slice(x, 0, 0, 1));
    const bench::Stats step = bench::time_ms([&] {
      const Tensor loss = losses::softmax_cross_entropy((*model)(x), labels, losses::Reduction::Mean);
      model->zero_grad();
      loss.backward();
    }, reps, 3);
    const bench::Stats batched = bench::time_ms([&] { per_example_grads(*model, per_example_loss, x, labels); }, reps, 3);
    const bench::Stats loop = bench::time_ms([&] {
      for (std::int64_t b = 0; b < 64; ++b) {
        const Tensor loss = sum(per_example_loss((*model)(slice(x, 0, b, b + 1)), slice(labels, 0, b, b + 1)));
        grad({loss}, model->parameters());
      }
    }, std::max(reps / 4, 3), 1);
    const std::string label = std::string(name) + " batch 64: ";
    bench::print_row((label + "forward+backward step").c_str(), num_threads(), step);
    bench::print_row((label + "per_example_grads").c_str(), num_threads(), batched);
    bench::print_row((label + "loop over 64 examples").c_str(), num_threads(), loop);
    std::printf("%s per_example_grads / step = %.2fx (target <= 3x), loop / step = %.2fx\n", name,
                batched.median / step.median, loop.median / step.median);
  }
  return 0;
}
