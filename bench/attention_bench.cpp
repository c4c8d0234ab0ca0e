// A self-attention block, forward + backward (issue 16): nn::MultiHeadDotProductAttention
// on x [64, 16, 64] (batch 64, 16 tokens, width 64, 4 heads), loss sum(out * c), backward
// to the input and the eight parameters. The libtorch twin (attention_torch_twin.cpp)
// runs torch::nn::MultiheadAttention on the same shapes.
//   usage: attention_bench [threads=1] [steps=0 (0: timed run; n: n untimed steps, for profilers)]
// Lines starting with "RESULT" are parsed by bench/run_all.sh.
#include <cstdio>
#include <cstdlib>

#include "bench/placement_report.hpp"
#include "bench/timing.hpp"
#include "xgrad.hpp"

using namespace xgrad;

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const int profile_steps = argc > 2 ? std::atoi(argv[2]) : 0;
  set_num_threads(threads);
  nn::MultiHeadDotProductAttention attention({.num_heads = 4});
  Tensor x = random_normal(make_key(1), {64, 16, 64}).requires_grad_();
  const Tensor cotangent = random_normal(make_key(2), {64, 16, 64});
  attention.init(x);
  const auto step = [&] {
    attention.zero_grad();
    x.zero_grad();
    (attention(x) * cotangent).sum().backward();
  };
  if (profile_steps > 0) {
    for (int i = 0; i < profile_steps; ++i) step();
    return 0;
  }
  const char* workload = "self_attention_b64_l16_e64_h4";
  const bench::Stats s = bench::time_ms(step, 300, 20);
  bench::print_row(workload, threads, s);
  std::printf("RESULT workload=%s threads=%d median=%.5f p10=%.5f p90=%.5f unit=ms\n", workload, threads, s.median,
              s.p10, s.p90);
  if (threads > 1) bench::print_placement();
}
