// Per-example gradients through the layers whose batched rules came last (issue 17):
// LSTM and GRU RNNs (fused sequences), ConvLocalTranspose, BatchNorm with running
// statistics and SelfAttention, each followed by a Dense classifier at batch 64:
// per_example_grads (one batched forward and backward plus the rules) against the
// loop over single examples that was their fallback, and against one training step.
// The report of each run is checked: every parameter took a batched rule.
//
//   build/bench/per_example_layers_bench [reps]
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "bench/timing.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

Tensor per_example_loss(const Tensor& logits, const Tensor& labels) {
  return losses::softmax_cross_entropy_with_integer_labels(logits, labels);
}

std::shared_ptr<nn::Module> flatten() {
  return std::make_shared<nn::Lambda>("flatten", [](const Tensor& h) { return reshape(h, {h.size(0), -1}); });
}

std::shared_ptr<nn::Module> classifier() { return std::make_shared<nn::Dense>(nn::DenseOptions{.features = 10}); }

std::shared_ptr<nn::Sequential> sequential(std::initializer_list<std::shared_ptr<nn::Module>> layers) {
  return std::make_shared<nn::Sequential>(layers);
}

struct Case {
  std::string name;
  Shape input;  // batch 64 first
  std::function<std::shared_ptr<nn::Sequential>()> make;
};

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 10;
  std::printf("CPU: %s, %d threads\n", bench::cpu_model().c_str(), num_threads());
  const std::vector<Case> cases{
      {"RNN(LSTMCell 64) over 28 steps of 28", {64, 28, 28},
       [] {
         return sequential({
             std::make_shared<nn::RNN>(std::make_shared<nn::LSTMCell>(nn::LSTMCellOptions{.features = 64})), flatten(),
             classifier()});
       }},
      {"RNN(GRUCell 64) over 28 steps of 28", {64, 28, 28},
       [] {
         return sequential({
             std::make_shared<nn::RNN>(std::make_shared<nn::GRUCell>(nn::GRUCellOptions{.features = 64})), flatten(),
             classifier()});
       }},
      {"ConvLocalTranspose 7x7x8 -> 14x14x4", {64, 7, 7, 8},
       [] {
         return sequential({
             std::make_shared<nn::ConvLocalTranspose>(
                 nn::ConvLocalTransposeOptions{.features = 4, .kernel_size = {3, 3}, .strides = 2}),
             flatten(), classifier()});
       }},
      {"Conv 16 + BatchNorm (eval) on 14x14", {64, 14, 14, 1},
       [] {
         return sequential({
             std::make_shared<nn::Conv>(nn::ConvOptions{.features = 16, .kernel_size = {3, 3}}),
             std::make_shared<nn::BatchNorm>(), flatten(), classifier()});
       }},
      {"SelfAttention 4 heads, 16 tokens of 32", {64, 16, 32},
       [] {
         return sequential({
             std::make_shared<nn::SelfAttention>(nn::MultiHeadDotProductAttentionOptions{.num_heads = 4}), flatten(),
             classifier()});
       }},
  };
  const Tensor labels = random_randint(make_key(2), {64}, 0, 10);
  for (const Case& c : cases) {
    const Tensor x = random_normal(make_key(1), c.input);
    auto model = c.make();
    model->init(slice(x, 0, 0, 1));
    model->eval();  // BatchNorm on its running statistics
    PerExampleReport report;
    per_example_grads(*model, per_example_loss, x, labels, &report);
    if (!report.looped.empty()) {
      std::printf("%s: %zu parameters took the loop (first %s)\n", c.name.c_str(), report.looped.size(),
                  report.looped.front().c_str());
      return 1;
    }
    const bench::Stats step = bench::time_ms([&] {
      const Tensor loss = mean(per_example_loss((*model)(x), labels));
      model->zero_grad();
      loss.backward();
    }, reps, 2);
    const bench::Stats batched =
        bench::time_ms([&] { per_example_grads(*model, per_example_loss, x, labels); }, reps, 2);
    const bench::Stats loop = bench::time_ms([&] {
      for (std::int64_t b = 0; b < 64; ++b) {
        const Tensor loss = sum(per_example_loss((*model)(slice(x, 0, b, b + 1)), slice(labels, 0, b, b + 1)));
        grad({loss}, model->parameters());
      }
    }, std::max(reps / 4, 2), 1);
    bench::print_row((c.name + ": step").c_str(), num_threads(), step);
    bench::print_row((c.name + ": per_example_grads").c_str(), num_threads(), batched);
    bench::print_row((c.name + ": loop over 64 examples").c_str(), num_threads(), loop);
    std::printf("%s: per_example_grads / step = %.2fx, loop / per_example_grads = %.2fx\n", c.name.c_str(),
                batched.median / step.median, loop.median / batched.median);
  }
  return 0;
}
