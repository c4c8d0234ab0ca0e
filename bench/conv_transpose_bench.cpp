// ConvTranspose cost: it runs as the input-VJP of the strided Conv it transposes,
// so it does the same useful arithmetic as that Conv (forward: the same products;
// forward + backward: three times them). For comparison, the form lax itself runs:
// conv_general_dilated on the stride-dilated input, which with stride s multiplies
// s^n times more (mostly zero) products. GFLOP/s count the useful products only.
// float32, one thread.
// Usage: build/bench/conv_transpose_bench
#include <cstdio>
#include <limits>

#include "bench/timing.hpp"
#include "xgrad.hpp"

extern "C" void openblas_set_num_threads(int);

using namespace xgrad;
using xgrad::bench::print_row;
using xgrad::bench::time_ms;

int main() {
  openblas_set_num_threads(1);
  std::printf("xgrad ConvTranspose vs the strided Conv it transposes (medians; float32; 1 thread; 3x3, stride 2)\n");
  // Decoder layer [128,7,7,32] -> [128,14,14,16], and the Conv [128,14,14,16] -> [128,7,7,32] it transposes.
  const Shape small{128, 7, 7, 32}, large{128, 14, 14, 16};
  const double flops = 2.0 * static_cast<double>(numel(small)) * 9.0 * 16.0;
  auto report = [&](const char* label, xgrad::bench::Stats s, double passes) {
    print_row(label, 1, s);
    std::printf("%46s        %.1f GFLOP/s (useful)\n", "", passes * flops / s.median * 1e-6);
  };

  nn::ConvTranspose up({.features = 16, .kernel_size = {3, 3}, .strides = 2, .transpose_kernel = true});
  Tensor x = random_normal(make_key(1), small);
  up.init(x);
  report("ConvTranspose SAME forward", time_ms([&] {
           NoGradGuard guard;
           up(x);
         }, 20, 3), 1);
  x.requires_grad_();
  const Tensor cot_up = random_normal(make_key(2), large);
  report("ConvTranspose SAME forward+backward", time_ms([&] {
           up(x).backward(cot_up);
         }, 20, 3), 3);

  // lax's form of the same transposed conv: the kernel flipped and I/O-swapped
  // (transpose_kernel), SAME pads (K - 1, K + s - 2 - (K - 1)) = (2, 1) on the dilated input.
  const Tensor kernel = up.state_dict().at("kernel").detach();
  constexpr auto last = std::numeric_limits<std::int64_t>::max();
  constexpr auto before_first = std::numeric_limits<std::int64_t>::min();
  Tensor flipped = swapaxes(slice(slice(kernel, 0, last, before_first, -1), 1, last, before_first, -1), -2, -1);
  Tensor xd = x.detach();
  auto dilated_form = [&] { return conv_general_dilated(xd, flipped, {}, Padding{{2, 1}, {2, 1}}, {2, 2}); };
  report("lhs-dilated form (lax's) forward", time_ms([&] {
           NoGradGuard guard;
           dilated_form();
         }, 10, 2), 1);
  xd.requires_grad_();
  flipped.requires_grad_();
  report("lhs-dilated form (lax's) forward+backward", time_ms([&] {
           dilated_form().backward(cot_up);
         }, 10, 2), 3);

  nn::Conv down({.features = 32, .kernel_size = {3, 3}, .strides = 2});
  Tensor z = random_normal(make_key(3), large);
  down.init(z);
  report("Conv stride 2 forward", time_ms([&] {
           NoGradGuard guard;
           down(z);
         }, 20, 3), 1);
  z.requires_grad_();
  const Tensor cot_down = random_normal(make_key(4), small);
  report("Conv stride 2 forward+backward", time_ms([&] {
           down(z).backward(cot_down);
         }, 20, 3), 3);
}
