// Forward-mode cost: a jvp of the CNN forward against the plain forward (issue 17's
// target: jvp <= 2x forward). The CNN is models_bench's (conv3x3(1->16) relu maxpool2
// -> conv3x3(16->32) relu maxpool2 -> dense(800->10), VALID), batch 64, float32, no
// tape (NoGradGuard) in both runs. Two jvps: along the input only, and along the
// input and every parameter (each conv then computes conv(dx, w) + conv(x, dw)); and
// the linear map linearize returns, along the input.
//   usage: jvp_bench [threads=1] [reps=30]
// Lines starting with "RESULT" follow models_bench's format (wall clock); the ratios
// are also given in process CPU time, which other processes' load does not inflate.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_models.hpp"
#include "bench/timing.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using xgrad::bench::make_cnn;
using xgrad::bench::Stats;
using xgrad::bench::time_ms;

namespace {

void result(const char* workload, int threads, Stats s) {
  xgrad::bench::print_row(workload, threads, s);
  std::printf("RESULT workload=%s threads=%d median=%.5f p10=%.5f p90=%.5f unit=ms\n", workload, threads, s.median,
              s.p10, s.p90);
  std::fflush(stdout);
}

// CPU milliseconds per call of `body` (the process's CPU clock: on a shared machine
// a wall-clock run longer than a scheduler slice also counts other processes' turns).
template <class F>
double cpu_ms(F&& body, int reps) {
  body();
  timespec t0{}, t1{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
  for (int i = 0; i < reps; ++i) body();
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
  return ((t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6) / reps;
}

// The median over `reps` pairs of (CPU time of `b`) / (CPU time of `a`), a and b run
// back to back in each pair: on a shared machine the load (and a busy SMT sibling)
// changes during a run, and a ratio of two calls made together moves less than two
// medians taken one after the other.
template <class A, class B>
double interleaved_ratio(A&& a, B&& b, int reps) {
  const auto once = [](auto& body) {
    timespec t0{}, t1{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    body();
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    return (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6;
  };
  a();
  b();
  std::vector<double> ratios;
  for (int i = 0; i < reps; ++i) {
    const double ta = once(a);
    ratios.push_back(once(b) / ta);
  }
  std::sort(ratios.begin(), ratios.end());
  return ratios[ratios.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 30;
  set_num_threads(threads);
  auto model = make_cnn();
  const Tensor x = random_normal(make_key(1), {64, 28, 28, 1});
  (*model)(x);  // creates the parameters
  const nn::StateDict params = model->state_dict();
  std::vector<std::string> names;
  std::vector<Tensor> primals{x}, input_tangent{random_normal(make_key(2), x.shape())}, all_tangents = input_tangent;
  std::uint64_t seed = 3;
  for (const auto& [name, value] : params) {
    names.push_back(name);
    primals.push_back(value);
    input_tangent.emplace_back();
    all_tangents.push_back(random_normal(make_key(seed++), value.shape()));
  }
  const MultiFunction forward = [&](const std::vector<Tensor>& in) {
    nn::StateDict substitutes;
    for (std::size_t i = 0; i < names.size(); ++i) substitutes[names[i]] = in[i + 1];
    return std::vector<Tensor>{model->functional_call(substitutes, in[0])};
  };
  NoGradGuard no_tape;
  const Stats plain = time_ms([&] { forward(primals); }, reps, 3);
  const Stats along_input = time_ms([&] { jvp(forward, primals, input_tangent); }, reps, 3);
  const Stats along_all = time_ms([&] { jvp(forward, primals, all_tangents); }, reps, 3);
  result("cnn_forward_b64", threads, plain);
  result("cnn_jvp_input_b64", threads, along_input);
  result("cnn_jvp_input_and_params_b64", threads, along_all);
  const double cpu_plain = cpu_ms([&] { forward(primals); }, reps);
  const double cpu_input = cpu_ms([&] { jvp(forward, primals, input_tangent); }, reps);
  const double cpu_all = cpu_ms([&] { jvp(forward, primals, all_tangents); }, reps);
  std::printf("CPU time per call: forward %.3f ms, jvp along the input %.3f ms, along the input and parameters %.3f ms\n",
              cpu_plain, cpu_input, cpu_all);
  std::printf("jvp / forward (CPU time): %.2fx along the input, %.2fx along the input and the parameters\n",
              cpu_input / cpu_plain, cpu_all / cpu_plain);
  const auto run_forward = [&] { forward(primals); };
  const auto run_input = [&] { jvp(forward, primals, input_tangent); };
  const auto run_all = [&] { jvp(forward, primals, all_tangents); };
  std::printf("jvp / forward (median of interleaved pairs, CPU time): %.2fx along the input, %.2fx along the input "
              "and the parameters\n",
              interleaved_ratio(run_forward, run_input, reps), interleaved_ratio(run_forward, run_all, reps));
  // linearize: f runs once; each call of its map is J v without the primal computation.
  const LinearizeResult linearized = linearize(forward, primals);
  const auto run_linear = [&] { linearized.jvp(input_tangent); };
  std::printf("linearize's map / forward (median of interleaved pairs, CPU time): %.2fx along the input\n",
              interleaved_ratio(run_forward, run_linear, reps));
  // On a shared machine the medians carry other processes' load; the 10th
  // percentiles and the CPU times are the closer estimates of the cost itself.
  std::printf("jvp / forward (median): %.2fx along the input, %.2fx along the input and the parameters (target <= 2x)\n",
              along_input.median / plain.median, along_all.median / plain.median);
  std::printf("jvp / forward (p10):    %.2fx along the input, %.2fx along the input and the parameters\n",
              along_input.p10 / plain.p10, along_all.p10 / plain.p10);
  return 0;
}
