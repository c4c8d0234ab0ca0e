// Training-step workloads of the side-by-side suite (bench/run_all.sh), each with a
// libtorch twin in models_torch_twin.cpp:
//   tiny ops        1-element add with and without the tape (µs per op)
//   chain           1000 dependent adds, forward + backward (ms per chain)
//   MLP             784-256-128-10, Adam step (zero_grad + fwd + loss + bwd + step), B = 1, 64, 256
//   CNN             conv3x3(1→16) relu maxpool2 → conv3x3(16→32) relu maxpool2 → dense(800→10), VALID, B = 64
//   LocalNet        Conv 3x3 SAME 16 → relu → maxpool2 → ConvLocal 3x3 VALID 32 → relu → maxpool2 → Dense 10, B = 64
//   Adam 1M         optimizer update of one 1M-element float32 parameter with a given gradient
//                   (adam_1M_chain, only when named: the same through the unfused chain)
//   usage: models_bench [threads=1] [workload=all] [steps=0 (0: timed run; n: n untimed steps, for profilers)]
// Lines starting with "RESULT" are parsed by bench/run_all.sh.
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "bench/bench_models.hpp"
#include "bench/placement_report.hpp"
#include "bench/timing.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using xgrad::bench::make_cnn;
using xgrad::bench::pool2;
using xgrad::bench::relu_layer;
using xgrad::bench::Stats;
using xgrad::bench::time_ms;

namespace {

int g_threads = 1;

void result(const char* workload, Stats s, double scale, const char* unit) {
  xgrad::bench::print_row(workload, g_threads, s, scale, unit);
  std::printf("RESULT workload=%s threads=%d median=%.5f p10=%.5f p90=%.5f unit=%s\n", workload, g_threads,
              s.median * scale, s.p10 * scale, s.p90 * scale, unit);
  std::fflush(stdout);
}

std::shared_ptr<nn::Module> make_mlp() {
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Dense>(nn::DenseOptions{.features = 256}), relu_layer(),
      std::make_shared<nn::Dense>(nn::DenseOptions{.features = 128}), relu_layer(),
      std::make_shared<nn::Dense>(nn::DenseOptions{.features = 10})});
}

std::shared_ptr<nn::Module> make_localnet() {
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv>(nn::ConvOptions{.features = 16, .kernel_size = {3, 3}}), relu_layer(), pool2(),
      std::make_shared<nn::ConvLocal>(nn::ConvOptions{.features = 32, .kernel_size = {3, 3}, .padding = "VALID"}),
      relu_layer(), pool2(), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Dense>(nn::DenseOptions{.features = 10})});
}

// 28 steps of 28 inputs through an LSTM of 128 units, the last hidden state into Dense 10
// (the fashion_mnist --model lstm network).
class RowLSTM : public nn::Module {
 public:
  RowLSTM() {
    register_module("rnn", rnn_);
    register_module("head", head_);
  }

 protected:
  Tensor forward(const Tensor& x) override { return head_(rnn_(x, {.return_carry = true}).carry[1]); }

 private:
  nn::RNN rnn_{std::make_shared<nn::LSTMCell>(nn::LSTMCellOptions{.features = 128})};
  nn::Dense head_{{.features = 10}};
};

// Runs `step` `profile_steps` times untimed (for callgrind), or times it.
void run(const char* workload, const std::function<void()>& step, int reps, int profile_steps, double scale = 1.0,
         const char* unit = "ms") {
  if (profile_steps > 0) {
    for (int i = 0; i < profile_steps; ++i) step();
    return;
  }
  result(workload, time_ms(step, reps, 5), scale, unit);
}

void training_step(const char* workload, nn::Module& model, const Shape& input_shape, int reps, int profile_steps) {
  const std::int64_t batch = input_shape[0];
  const Tensor x = random_normal(make_key(1), input_shape);
  const Tensor labels = random_uniform(make_key(2), {batch}, DType::Float32, 0.0, 10.0).astype(DType::Int32);
  model.init(x);
  optim::Optimizer opt(model, optim::adam({.learning_rate = 1e-3}));
  run(workload,
      [&] {
        opt.zero_grad();
        const Tensor loss = losses::softmax_cross_entropy(model(x), labels, losses::Reduction::Mean);
        loss.backward();
        opt.step();
      },
      reps, profile_steps);
}

void tiny_ops(int profile_steps) {
  constexpr int kOps = 1000;
  const Tensor a = ones({1}), b = ones({1});
  run("tiny_add_nograd", [&] {
    NoGradGuard guard;
    for (int i = 0; i < kOps; ++i) a + b;
  }, 50, profile_steps, 1000.0 / kOps, "us/op");
  Tensor ga = ones({1}).requires_grad_(), gb = ones({1}).requires_grad_();
  run("tiny_add_grad", [&] {
    for (int i = 0; i < kOps; ++i) ga + gb;
  }, 50, profile_steps, 1000.0 / kOps, "us/op");
  run("chain1000_fwd_bwd", [&] {
    Tensor y = ga;
    for (int i = 0; i < kOps; ++i) y = y + gb;
    y.backward();
    ga.zero_grad();
    gb.zero_grad();
  }, 50, profile_steps);
}

// adam_1M_chain (only on request) runs the same update through the unfused optax
// chain, for comparison with the fused step.
void adam_1m(const char* workload, bool fused, int profile_steps) {
  Tensor w = random_normal(make_key(3), {1 << 20}).requires_grad_();
  w.set_grad(random_normal(make_key(4), {1 << 20}));
  optim::GradientTransformation tx = optim::adam({.learning_rate = 1e-3});
  if (!fused) tx.fused_step = nullptr;
  optim::Optimizer opt(optim::NamedTensors{{"w", w}}, tx);
  run(workload, [&] { opt.step(); }, 100, profile_steps);
}

}  // namespace

int main(int argc, char** argv) {
  g_threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const std::string only = argc > 2 ? argv[2] : "all";
  const int profile_steps = argc > 3 ? std::atoi(argv[3]) : 0;
  set_num_threads(g_threads);
  const auto want = [&](const char* name) { return only == "all" || only == name; };

  if (want("tiny")) tiny_ops(profile_steps);
  const struct { const char* name; std::int64_t batch; int reps; } mlps[] = {
      {"mlp_b1", 1, 300}, {"mlp_b64", 64, 200}, {"mlp_b256", 256, 100}};
  for (const auto& m : mlps)
    if (want(m.name)) training_step(m.name, *make_mlp(), {m.batch, 784}, m.reps, profile_steps);
  if (want("cnn_b64")) training_step("cnn_b64", *make_cnn(), {64, 28, 28, 1}, 60, profile_steps);
  if (want("localnet_b64")) training_step("localnet_b64", *make_localnet(), {64, 28, 28, 1}, 60, profile_steps);
  if (want("lstm_b64")) {
    RowLSTM lstm;
    training_step("lstm_b64", lstm, {64, 28, 28}, 60, profile_steps);
  }
  if (want("adam_1M")) adam_1m("adam_1M", true, profile_steps);
  if (only == "adam_1M_chain") adam_1m("adam_1M_chain", false, profile_steps);
  if (g_threads > 1) bench::print_placement();
}
