// Conv micro-benchmarks: ConvLocal (general path: position-major patches +
// per-position GEMMs) and Conv (patches + one GEMM) on LocalNet-sized layers,
// forward and forward + backward, float32, one thread.
// Usage: build/bench/conv_bench
#include <cstdio>

#include "bench/timing.hpp"
#include "xgrad.hpp"

extern "C" void openblas_set_num_threads(int);

using namespace xgrad;
using xgrad::bench::print_row;
using xgrad::bench::time_ms;

namespace {

struct Layer {
  const char* name;
  Shape input;
  std::int64_t features;
  bool input_needs_grad;  // the first layer's input does not
};

void run(const Layer& layer, bool shared, Precision precision = Precision::Default) {
  nn::ConvSpec spec{.features = layer.features, .kernel_size = {3, 3}, .padding = "SAME", .shared_weights = shared};
  const auto plan = nn::plan_conv(layer.input, spec);
  Tensor x = random_normal(make_key(1), layer.input);
  Tensor kernel = random_normal(make_key(2), plan.kernel_shape).requires_grad_();
  Tensor bias = zeros(plan.bias_shape).requires_grad_();
  if (layer.input_needs_grad) x.requires_grad_();
  const double flops = 2.0 * static_cast<double>(numel(plan.output_shape)) * 9.0 * static_cast<double>(layer.input.back());
  char label[128];
  const char* kind = shared ? "Conv" : "ConvLocal";
  const char* prec = precision == Precision::Highest ? " highest" : "";
  auto forward = time_ms([&] {
    NoGradGuard guard;
    nn::conv_apply(plan, x, kernel, bias, std::nullopt, std::nullopt, precision);
  }, 20, 3);
  std::snprintf(label, sizeof label, "%s %s%s forward", kind, layer.name, prec);
  print_row(label, 1, forward);
  std::printf("%46s        %.1f GFLOP/s\n", "", flops / forward.median * 1e-6);
  Tensor cot = random_normal(make_key(3), plan.output_shape);
  auto both = time_ms([&] {
    Tensor y = nn::conv_apply(plan, x, kernel, bias, std::nullopt, std::nullopt, precision);
    y.backward(cot);
  }, 20, 3);
  const double passes = layer.input_needs_grad ? 3.0 : 2.0;
  std::snprintf(label, sizeof label, "%s %s%s forward+backward", kind, layer.name, prec);
  print_row(label, 1, both);
  std::printf("%46s        %.1f GFLOP/s\n", "", passes * flops / both.median * 1e-6);
}

}  // namespace

int main() {
  openblas_set_num_threads(1);
  std::printf("xgrad conv benchmarks (medians; float32; 1 thread; 3x3 SAME)\n");
  const Layer first{"[128,28,28,1]->16", {128, 28, 28, 1}, 16, false};
  const Layer second{"[128,14,14,16]->32", {128, 14, 14, 16}, 32, true};
  for (const Layer& layer : {first, second}) {
    run(layer, false);
    run(layer, true);
  }
  run(second, false, Precision::Highest);
}
