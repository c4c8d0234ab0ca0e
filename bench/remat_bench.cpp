// Rematerialisation on a 32-block MLP: peak memory of a training step's
// activations (allocator statistics) and its time, plain against nn::remat on
// every block (target: peak >= 4x lower for <= 1.4x the step time).
//
//   build/bench/remat_bench [reps]
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "bench/timing.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

using xgrad::bench::cpu_model;

constexpr std::int64_t kWidth = 256, kHidden = 1024, kBatch = 256;

// A transformer-style MLP block: x + Dense(gelu(Dense(LayerNorm(x)))), with dropout.
struct Block : nn::Module {
  nn::LayerNorm norm;
  nn::Dense up{{.features = kHidden}}, down{{.features = kWidth}};
  nn::Dropout drop{{.rate = 0.1}};
  Block() {
    register_module("norm", norm);
    register_module("up", up);
    register_module("down", down);
    register_module("drop", drop);
  }
  Tensor forward(const Tensor& x) override { return x + drop(down(nn::gelu(up(norm(x))))); }
};

std::shared_ptr<nn::Sequential> make_stack(bool remat) {
  auto model = std::make_shared<nn::Sequential>();
  for (int i = 0; i < 32; ++i) {
    auto block = std::make_shared<Block>();
    model->add(remat ? nn::remat(block) : block);
  }
  return model;
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 10;
  std::printf("CPU: %s, %d threads; 32 blocks of [%ld] -> %ld -> [%ld], batch %ld\n", cpu_model().c_str(), num_threads(),
              static_cast<long>(kWidth), static_cast<long>(kHidden), static_cast<long>(kWidth), static_cast<long>(kBatch));
  const Tensor x = random_normal(make_key(1), {kBatch, kWidth});
  double kept[2], peaks[2], medians[2];
  for (int remat = 0; remat < 2; ++remat) {
    auto model = make_stack(remat == 1);
    model->init(x);
    auto step = [&] {
      const Tensor loss = mean(square((*model)(x)));
      model->zero_grad();
      loss.backward();
    };
    step();
    model->zero_grad();
    // Memory above what is held before the step (parameters, input): what the tape
    // keeps for backward at the end of the forward (the activations), and the peak
    // over the whole step (activations plus the parameter gradients being built).
    const std::size_t before = memory_stats().bytes_in_use;
    reset_peak_memory_stats();
    {
      const Tensor loss = mean(square((*model)(x)));
      kept[remat] = static_cast<double>(memory_stats().bytes_in_use - before) / (1 << 20);
      loss.backward();
    }
    peaks[remat] = static_cast<double>(memory_stats().peak_bytes_in_use - before) / (1 << 20);
    model->zero_grad();
    const bench::Stats s = bench::time_ms(step, reps, 2);
    medians[remat] = s.median;
    bench::print_row(remat ? "32-block MLP step, nn::remat on every block" : "32-block MLP step, plain", num_threads(), s);
    std::printf("  activations kept by the forward: %.1f MiB; peak during the step: %.1f MiB\n", kept[remat],
                peaks[remat]);
  }
  std::printf("remat: activations kept %.2fx lower, step peak %.2fx lower (target >= 4x), step time %.2fx "
              "(target <= 1.4x)\n",
              kept[0] / kept[1], peaks[0] / peaks[1], medians[1] / medians[0]);
  return 0;
}
