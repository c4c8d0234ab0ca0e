// libtorch twin of bench/conv_local_bench.cpp: the same locally connected layers (the
// ConvLocal suite) in libtorch's best formulations, forward + backward with a given
// output cotangent (weights and bias always get gradients; the input where the xgrad
// case computes it). Patches come from zero padding + Tensor::unfold along each
// spatial axis (a strided view; kernel dilation by slicing the window), channel-major
// as Flax's; then one GEMM per output position, either as one `bmm` over positions or
// as an `einsum`. Channels-last like xgrad ([N, spatial..., C] in, [N, O..., F] out).
//   usage: conv_local_torch_twin [steps=60] [torch_threads=1] [openblas_threads=1] [extra]
// (`extra`: conv_local_bench's larger layers seq_1ch, face_L4 and face_L5 instead of the suite)
// torch::set_num_threads does not reach OpenBLAS (which runs the GEMMs in Debian's
// build), so both are set. Lines starting with "RESULT" are parsed by run_conv_local.sh.
#include <dlfcn.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace {

void set_openblas_threads(int n) {
  using Setter = void (*)(int);
  if (auto set = reinterpret_cast<Setter>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(n);
  else std::fprintf(stderr, "warning: openblas_set_num_threads not found\n");
}

struct Stats {
  double median, p10, p90;
};

Stats time_steps(const std::function<void()>& step, int steps, int warmup = 5) {
  for (int i = 0; i < warmup; ++i) step();
  std::vector<double> ms;
  for (int i = 0; i < steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms[ms.size() / 10], ms[ms.size() * 9 / 10]};
}

// The same table as conv_local_bench.cpp.
struct Case {
  const char* name;
  int64_t batch;
  std::vector<int64_t> spatial;
  int64_t channels;
  std::vector<int64_t> kernel;
  int64_t stride, dilation;
  bool same;
  int64_t features;
  bool input_gradient;
};

const std::vector<Case> kSuite = {
    {"A_VALID", 64, {28, 28}, 1, {3, 3}, 1, 1, false, 16, false},
    {"A_SAME", 64, {28, 28}, 1, {3, 3}, 1, 1, true, 16, false},
    {"B_VALID", 64, {14, 14}, 16, {3, 3}, 1, 1, false, 32, true},
    {"B_SAME", 64, {14, 14}, 16, {3, 3}, 1, 1, true, 32, true},
    {"B_SAME_s2", 64, {14, 14}, 16, {3, 3}, 2, 1, true, 32, true},
    {"B_SAME_d2", 64, {14, 14}, 16, {3, 3}, 1, 2, true, 32, true},
    {"B_SAME_F20", 64, {14, 14}, 16, {3, 3}, 1, 1, true, 20, true},
    {"1D", 32, {4096}, 8, {9}, 1, 1, true, 16, true},
    {"3D", 4, {16, 16, 16}, 4, {3, 3, 3}, 1, 1, true, 8, true},
};

// conv_local_bench's larger layers, run with the `extra` argument instead of the suite.
const std::vector<Case> kExtra = {
    {"seq_1ch", 8, {60483}, 1, {20}, 1, 1, false, 16, true},
    {"face_L4", 8, {63, 63}, 16, {9, 9}, 1, 1, false, 16, true},
    {"face_L5", 8, {55, 55}, 16, {7, 7}, 2, 1, false, 16, true},
};

struct Geometry {
  std::vector<int64_t> out, pad_lo, pad_hi;
  int64_t positions = 1, patch = 1;
};

// lax's SAME / VALID (padtype_to_pads).
Geometry geometry_of(const Case& c) {
  Geometry g;
  g.patch = c.channels;
  for (std::size_t j = 0; j < c.spatial.size(); ++j) {
    const int64_t extent = (c.kernel[j] - 1) * c.dilation + 1, in = c.spatial[j];
    int64_t out = c.same ? (in + c.stride - 1) / c.stride : (in - extent) / c.stride + 1;
    const int64_t total = c.same ? std::max<int64_t>((out - 1) * c.stride + extent - in, 0) : 0;
    g.out.push_back(out);
    g.pad_lo.push_back(total / 2);
    g.pad_hi.push_back(total - total / 2);
    g.positions *= out;
    g.patch *= c.kernel[j];
  }
  return g;
}

// x [N, spatial..., C] -> patches [N, L, C·S], patch index c·S + r (r row-major over the window).
torch::Tensor patches_of(const Case& c, const Geometry& g, const torch::Tensor& x) {
  const int64_t rank = static_cast<int64_t>(c.spatial.size());
  std::vector<int64_t> pads;  // constant_pad_nd lists the last dim first
  pads.push_back(0);
  pads.push_back(0);
  for (int64_t j = rank - 1; j >= 0; --j) {
    pads.push_back(g.pad_lo[j]);
    pads.push_back(g.pad_hi[j]);
  }
  torch::Tensor p = torch::constant_pad_nd(x, pads);
  for (int64_t j = 0; j < rank; ++j) {
    const int64_t extent = (c.kernel[j] - 1) * c.dilation + 1;
    p = p.unfold(1 + j, extent, c.stride);  // appends the window axis
    if (c.dilation > 1) p = p.slice(-1, 0, extent, c.dilation);
  }
  // [N, O..., C, k...] -> [N, L, C·S]
  return p.reshape({c.batch, g.positions, g.patch});
}

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 60;
  const int torch_threads = argc > 2 ? std::atoi(argv[2]) : 1;
  const int blas_threads = argc > 3 ? std::atoi(argv[3]) : 1;
  torch::set_num_threads(torch_threads);
  set_openblas_threads(blas_threads);
  torch::manual_seed(0);

  const bool extra = argc > 4 && std::string(argv[4]) == "extra";
  for (const Case& c : extra ? kExtra : kSuite) {
    const Geometry g = geometry_of(c);
    std::vector<int64_t> in_shape{c.batch};
    in_shape.insert(in_shape.end(), c.spatial.begin(), c.spatial.end());
    in_shape.push_back(c.channels);
    auto x = torch::randn(in_shape).requires_grad_(c.input_gradient);
    auto w = (torch::randn({g.positions, g.patch, c.features}) * 0.1).requires_grad_();
    auto b = torch::randn({g.positions, c.features}).requires_grad_();
    const auto dy = torch::randn({c.batch, g.positions, c.features});
    const auto bmm = [&] {
      const auto p = patches_of(c, g, x).transpose(0, 1);              // [L, N, C·S]
      return torch::baddbmm(b.unsqueeze(1), p, w).transpose(0, 1);  // [N, L, F]
    };
    const auto einsum = [&] { return torch::einsum("nli,lif->nlf", {patches_of(c, g, x), w}) + b; };
    for (int variant = 0; variant < 2; ++variant) {
      const int n = std::max(5, c.batch * c.spatial[0] > 5000 ? steps / 3 : steps);
      const Stats st = time_steps(
          [&] {
            (variant == 0 ? bmm() : einsum()).backward(dy);
            if (c.input_gradient) x.mutable_grad().reset();
            w.mutable_grad().reset();
            b.mutable_grad().reset();
          },
          n);
      std::printf("RESULT workload=%s variant=%s torch_threads=%d blas_threads=%d median_ms=%.4f p10_ms=%.4f "
                  "p90_ms=%.4f\n",
                  c.name, variant == 0 ? "bmm" : "einsum", torch_threads, blas_threads, st.median, st.p10, st.p90);
      std::fflush(stdout);
    }
  }
}
