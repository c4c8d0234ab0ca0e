// The one tile engine behind the fast float32 convolutions (core/kernels/conv_tiles.*):
//  - the public ops and layers reach it for every configuration users write (the
//    ConvLocal suite of bench/: SAME, strides, kernel dilation, odd F, 1-D, 3-D), by a
//    dispatch counter;
//  - on a few hundred random configurations (explicit, SAME, SAME_LOWER and negative
//    paddings, strides, dilations, 1-D/2-D/3-D, odd feature counts, local and shared,
//    with and without bias) its values and all three gradients agree with the general
//    path, for the AVX2 and the AVX-512 tiles and at 1 and 2 threads;
//  - float16 and bfloat16 operands run on it too (widened to float32 once).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/kernels/conv/conv.hpp"
#include "core/kernels/conv/conv_fast_geometry.hpp"
#include "core/kernels/conv/conv_geometry.hpp"
#include "core/kernels/conv/conv_local_fast.hpp"
#include "core/kernels/conv/conv_tiles.hpp"
#include "core/threading.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

// RAII guards for the process-wide switches a test flips.
struct ThreadsGuard {
  int before = num_threads();
  ~ThreadsGuard() { set_num_threads(before); }
};
struct FastPathGuard {
  bool fast = kernels::tiles::fast_enabled();
  bool avx512 = kernels::conv_local_avx512_active();
  bool zmm_full_rate = kernels::tiles::zmm_at_full_rate();
  ~FastPathGuard() {
    kernels::tiles::set_fast_enabled(fast);
    kernels::tiles::set_zmm_at_full_rate(zmm_full_rate);
    kernels::tiles::set_avx512_allowed(avx512 || !kernels::tiles::cpu_has_avx512());
  }
};

bool engine_available() {
  if (kernels::tiles::cpu_supported()) return true;
  MESSAGE("this CPU has no AVX2/FMA: the fast conv kernels are not available, nothing to check");
  return false;
}

// The tile kinds this CPU can run.
std::vector<bool> avx512_settings() {
  if (kernels::tiles::cpu_has_avx512()) return {false, true};
  MESSAGE("this CPU has no AVX-512F/VL: only the AVX2 tiles are checked");
  return {false};
}

struct Case {
  std::string name;
  Shape input;  // (N, spatial..., C)
  std::vector<int> kernel;
  std::vector<int> strides, dilation;
  Padding padding;
  std::int64_t features;
};

// The ConvLocal suite of bench/conv_local_bench.cpp (batch reduced to keep the test fast).
std::vector<Case> suite() {
  return {
      {"A VALID", {2, 28, 28, 1}, {3, 3}, {1, 1}, {1, 1}, "VALID", 16},
      {"A SAME", {2, 28, 28, 1}, {3, 3}, {1, 1}, {1, 1}, "SAME", 16},
      {"B VALID", {2, 14, 14, 16}, {3, 3}, {1, 1}, {1, 1}, "VALID", 32},
      {"B SAME", {2, 14, 14, 16}, {3, 3}, {1, 1}, {1, 1}, "SAME", 32},
      {"B SAME stride 2", {2, 14, 14, 16}, {3, 3}, {2, 2}, {1, 1}, "SAME", 32},
      {"B dilation 2", {2, 14, 14, 16}, {3, 3}, {1, 1}, {2, 2}, "SAME", 32},
      {"B F 20", {2, 14, 14, 16}, {3, 3}, {1, 1}, {1, 1}, "SAME", 20},
      {"1-D", {1, 4096, 8}, {9}, {1}, {1}, "SAME", 16},
      {"3-D", {1, 16, 16, 16, 4}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, "SAME", 8},
  };
}

}  // namespace

TEST_CASE("nn::ConvLocal and nn::Conv reach the fast kernels for every case of the ConvLocal suite") {
  if (!engine_available()) return;
  FastPathGuard guard;
  kernels::tiles::set_fast_enabled(true);
  for (const Case& c : suite()) {
    for (const bool local : {true, false}) {
      CAPTURE(c.name);
      CAPTURE(local);
      nn::ConvOptions options{.features = c.features, .kernel_size = c.kernel, .strides = c.strides,
                              .padding = c.padding, .kernel_dilation = c.dilation};
      std::unique_ptr<nn::ConvBase> layer;
      if (local) layer = std::make_unique<nn::ConvLocal>(options);
      else layer = std::make_unique<nn::Conv>(options);
      Tensor x = random_normal(make_key(1), c.input).requires_grad_();
      const std::int64_t before = kernels::conv_fast_dispatch_count();
      const Tensor y = (*layer)(x);
      CHECK(kernels::conv_fast_dispatch_count() == before + 1);  // the biased forward
      y.backward(random_normal(make_key(2), y.shape()));
      // Local: one fused pass for dx, dkernel and dbias. Shared: the kernel VJP (with
      // the bias gradient) and the input VJP.
      CHECK(kernels::conv_fast_dispatch_count() == before + (local ? 2 : 3));
      CHECK(x.grad().defined());
    }
  }
}

TEST_CASE("the float32 conv ops reach the fast kernels, and the general-path switch turns them off") {
  if (!engine_available()) return;
  FastPathGuard guard;
  const Tensor x = random_normal(make_key(3), {2, 9, 7, 3});
  const Tensor k = random_normal(make_key(4), {5, 4, 27, 12});
  kernels::tiles::set_fast_enabled(true);
  std::int64_t before = kernels::conv_fast_dispatch_count();
  const Tensor fast = conv_general_dilated_local(x, k, {2, 2}, "SAME", {3, 3});
  CHECK(kernels::conv_fast_dispatch_count() == before + 1);
  kernels::tiles::set_fast_enabled(false);
  before = kernels::conv_fast_dispatch_count();
  const Tensor general = conv_general_dilated_local(x, k, {2, 2}, "SAME", {3, 3});
  CHECK(kernels::conv_fast_dispatch_count() == before);
  CHECK(max(abs(fast - general)).item() < 1e-4);
  // Float64, Highest and lhs dilation stay on the general path.
  kernels::tiles::set_fast_enabled(true);
  before = kernels::conv_fast_dispatch_count();
  (void)conv_general_dilated_local(cast(x, DType::Float64), cast(k, DType::Float64), {2, 2}, "SAME", {3, 3});
  (void)conv_general_dilated_local(x, k, {2, 2}, "SAME", {3, 3}, {}, {}, 1, Precision::Highest);
  CHECK(kernels::conv_fast_dispatch_count() == before);
}

namespace {

struct Config {
  bool local = true, bias = true, create_graph = false;
  Shape input;
  std::vector<std::int64_t> kernel, strides, dilation;
  Padding padding;
  std::int64_t features = 1;
  kernels::ConvGeometry geometry;
};

std::string describe(const Config& c) {
  std::string s = std::string(c.local ? "local" : "shared") + (c.bias ? " +bias" : "") +
                  (c.create_graph ? " create_graph" : "") + " input " + shape_str(c.input) + " kernel " +
                  shape_str(c.kernel) + " strides " + shape_str(c.strides) + " dilation " + shape_str(c.dilation) +
                  " pads";
  for (const auto& [lo, hi] : c.geometry.pads) s += " (" + std::to_string(lo) + "," + std::to_string(hi) + ")";
  return s + " F " + std::to_string(c.features);
}

// A random configuration with a non-empty output.
Config random_config(std::mt19937& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (;;) {
    Config c;
    c.local = pick(0, 2) > 0;
    c.bias = pick(0, 1) > 0;
    c.create_graph = pick(0, 5) == 0;
    const int rank = pick(1, 3);
    const int max_extent = rank == 1 ? 24 : rank == 2 ? 10 : 6;
    c.input = {pick(1, 5)};
    for (int j = 0; j < rank; ++j) {
      c.input.push_back(pick(1, max_extent));
      c.kernel.push_back(pick(1, 3));
      c.strides.push_back(pick(1, 3));
      c.dilation.push_back(pick(1, 2));
    }
    // C: partial blocks of 8 channels too, and runs (kernel width × C) past 40 floats,
    // which take the AVX-512 tiles of three zmm per row in the input gradient.
    c.input.push_back(pick(0, 3) == 0 ? pick(7, 17) : pick(1, 6));
    // F: whole and partial blocks for every tile width (AVX-512: 16, 32 and 48 columns
    // per row, with masked tails; 17–24 columns as 16 + a ymm).
    c.features = pick(0, 2) == 0 ? 8 * pick(1, 6) : pick(0, 2) == 0 ? pick(22, 50) : pick(1, 21);
    switch (pick(0, 4)) {
      case 0: c.padding = "SAME"; break;
      case 1: c.padding = "VALID"; break;
      case 2: c.padding = "SAME_LOWER"; break;
      default: {
        std::vector<Padding::Entry> pairs;
        for (int j = 0; j < rank; ++j) pairs.emplace_back(pick(-1, 2), pick(-1, 2));
        c.padding = Padding(pairs);
      }
    }
    try {
      c.geometry = kernels::make_conv_geometry(c.input, c.kernel, c.strides, c.padding, {}, c.dilation, "test");
    } catch (const std::exception&) {
      continue;
    }
    if (c.geometry.out_positions() > 0) return c;
  }
}

struct Outputs {
  std::vector<Tensor> values;  // y, dx, dkernel, (dbias)
};

Outputs run(const Config& c, const Tensor& x0, const Tensor& k0, const Tensor& b0, const Tensor& g) {
  Tensor x = x0.detach().requires_grad_(), k = k0.detach().requires_grad_(), b = b0.detach().requires_grad_();
  Tensor y;
  if (c.local)
    y = c.bias ? conv_general_dilated_local_bias(x, k, b, c.strides, c.padding, c.kernel, {}, c.dilation)
               : conv_general_dilated_local(x, k, c.strides, c.padding, c.kernel, {}, c.dilation);
  else
    y = c.bias ? conv_general_dilated_bias(x, k, b, c.strides, c.padding, {}, c.dilation)
               : conv_general_dilated(x, k, c.strides, c.padding, {}, c.dilation);
  std::vector<Tensor> inputs{x, k};
  if (c.bias) inputs.push_back(b);
  std::vector<Tensor> grads = grad({y}, inputs, {g}, {.create_graph = c.create_graph});
  Outputs out{{y}};
  for (const Tensor& t : grads) out.values.push_back(t.detach());
  return out;
}

// Worst |got − want| over 1 + max |want|: float32 rounding stays far below 1e-4, a
// wrong index or a missed tap gives O(1).
double worst_error(const Tensor& got, const Tensor& want) {
  const auto a = got.to_vector(), b = want.to_vector();
  REQUIRE(a.size() == b.size());
  double worst = 0, largest = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(a[i] - b[i]));
    largest = std::max(largest, std::abs(b[i]));
  }
  return worst / (1 + largest);
}

// Runs the case on the general path at one thread (the reference), then on the fast
// kernels with each tile kind and thread count given, and has check(got, want,
// fast_calls) compare them (fast_calls: the fast-kernel dispatches of that run).
template <class Check>
void fast_against_general(const Config& c, const Tensor& x, const Tensor& k, const Tensor& b, const Tensor& dy,
                          const std::vector<bool>& tile_kinds, std::initializer_list<int> thread_counts,
                          Check&& check) {
  kernels::tiles::set_fast_enabled(false);
  set_num_threads(1);
  const Outputs want = run(c, x, k, b, dy);
  kernels::tiles::set_fast_enabled(true);
  for (const bool avx512 : tile_kinds) {
    kernels::tiles::set_avx512_allowed(avx512);
    for (const int threads : thread_counts) {
      CAPTURE(avx512);
      CAPTURE(threads);
      set_num_threads(threads);
      const std::int64_t before = kernels::conv_fast_dispatch_count();
      const Outputs got = run(c, x, k, b, dy);
      check(got, want, kernels::conv_fast_dispatch_count() - before);
    }
  }
}

// Runs configuration c (operands drawn from `seed`) on the general path and on the
// fast kernels (each tile kind, 1 and 2 threads) and checks that the fast kernels
// served it and that the values and all gradients agree; returns the runs they served.
int check_against_general(const Config& c, std::uint64_t seed, const std::vector<bool>& tile_kinds) {
  CAPTURE(describe(c));
  const auto& g = c.geometry;
  Shape kernel_shape = c.local ? g.out_spatial : Shape(c.kernel.begin(), c.kernel.end());
  const std::int64_t C = c.input.back();
  kernel_shape.push_back(c.local ? g.window_size() * C : C);
  kernel_shape.push_back(c.features);
  Shape out_shape{c.input[0]};
  out_shape.insert(out_shape.end(), g.out_spatial.begin(), g.out_spatial.end());
  out_shape.push_back(c.features);
  Shape bias_shape = c.local ? Shape(out_shape.begin() + 1, out_shape.end()) : Shape{c.features};
  const Tensor x = random_normal(make_key(seed), c.input), k = random_normal(make_key(seed + 1), kernel_shape);
  const Tensor b = random_normal(make_key(seed + 2), bias_shape), dy = random_normal(make_key(seed + 3), out_shape);
  int reached = 0;
  fast_against_general(c, x, k, b, dy, tile_kinds, {1, 2}, [&](const Outputs& got, const Outputs& want, std::int64_t fast_calls) {
    CHECK(fast_calls > 0);
    reached += fast_calls > 0;
    REQUIRE(got.values.size() == want.values.size());
    for (std::size_t i = 0; i < want.values.size(); ++i) {
      CAPTURE(i);  // y, dx, dkernel, dbias
      CHECK(worst_error(got.values[i], want.values[i]) < 1e-4);
    }
  });
  return reached;
}

// check_against_general on `count` random configurations drawn from `seed` (operands
// from operand_seed + 4·trial), each first changed by adjust(c, trial) if given (its
// geometry then recomputed); every run must reach the fast kernels.
void check_random_configs(std::uint32_t seed, int count, std::uint64_t operand_seed, const std::vector<bool>& tile_kinds,
                          const std::function<void(Config&, int)>& adjust = {}) {
  std::mt19937 rng(seed);
  int reached = 0;
  for (int trial = 0; trial < count; ++trial) {
    CAPTURE(trial);
    Config c = random_config(rng);
    if (adjust) {
      adjust(c, trial);
      c.geometry = kernels::make_conv_geometry(c.input, c.kernel, c.strides, c.padding, {}, c.dilation, "test");
    }
    reached += check_against_general(c, operand_seed + static_cast<std::uint64_t>(4 * trial), tile_kinds);
  }
  CHECK(reached == count * static_cast<int>(tile_kinds.size()) * 2);
}

}  // namespace

TEST_CASE("the fast conv kernels match the general path on random configurations") {
  if (!engine_available()) return;
  ThreadsGuard threads_guard;
  FastPathGuard guard;
  check_random_configs(2026, 300, 0, avx512_settings());
}

// The local kernels take a batch in groups of at most 32 samples (the forward's
// outputs and the backward's cotangent rows, see kMaxStreams in conv_local_fast.cpp):
// two groups, even or not (33: 17 + 16, 40: 20 + 20, 64: 32 + 32), three (65: 22 + 22 + 21)
// and four (97: 25 + 25 + 25 + 22).
TEST_CASE("local convs over more than 32 samples (several sample groups) match the general path") {
  if (!engine_available()) return;
  ThreadsGuard threads_guard;
  FastPathGuard guard;
  const std::int64_t batches[] = {33, 40, 64, 65, 97};
  check_random_configs(33, 15, 1000, avx512_settings(), [&](Config& c, int trial) {
    c.local = true;
    c.input[0] = batches[trial % 5];
  });
}

// Where zmm FMAs run at full rate (Intel), blocks of 17–24 columns take two zmm per
// row instead of three ymm (conv_tiles.cpp): both settings on every machine with
// AVX-512, local and shared, on the same configurations.
TEST_CASE("blocks of 17-24 feature columns: the ymm and the zmm tiles match the general path") {
  if (!engine_available()) return;
  if (!kernels::tiles::cpu_has_avx512()) {
    MESSAGE("this CPU has no AVX-512F/VL: blocks of 17-24 columns take the AVX2 tiles (16 + a partial 8)");
    return;
  }
  ThreadsGuard threads_guard;
  FastPathGuard guard;
  for (const bool full_rate : {false, true}) {
    CAPTURE(full_rate);
    kernels::tiles::set_zmm_at_full_rate(full_rate);
    check_random_configs(1724, 16, 3000, {true}, [](Config& c, int trial) { c.features = 17 + trial % 8; });
  }
}

// Where a run of the patch (C = 16: a kernel row of 3 taps, 48 values; with a dilated
// last axis one tap, 16) fills the vector lanes better than the features do (F = 20–24
// in two zmm at full rate; in three ymm they fill enough), the kernel gradient takes
// the features as rows and the runs as columns and transposes the result
// (d_kernel_by_runs). Each sum then takes the same products in the same order as by
// features: d_kernel and d_bias have the same bits either way (and d_x, computed
// apart), at 1 and 2 threads, ungrouped and in two sample groups (N = 40: the second
// group adds into d_kernel), with d_kernel on a line boundary (where either form
// stages a position's block and streams it out as whole lines) or off it; and
// d_kernel is the definition's.
TEST_CASE("the kernel gradient by runs has the bits of the kernel gradient by features") {
  if (!engine_available()) return;
  if (!kernels::tiles::cpu_has_avx512()) {
    MESSAGE("this CPU has no AVX-512F/VL: 20 features take 24 lanes, the kernel gradient is never taken by runs");
    return;
  }
  ThreadsGuard threads_guard;
  FastPathGuard guard;
  kernels::tiles::set_avx512_allowed(true);
  struct Case {
    Shape input;
    Shape kernel;
    std::vector<std::int64_t> strides, dilation;
    Padding padding;
    std::int64_t features;
  };
  const std::vector<Case> cases{
      {{5, 14, 14, 16}, {3, 3}, {1, 1}, {1, 1}, "SAME", 20},  // suite layer B with F = 20
      {{40, 6, 6, 16}, {3, 3}, {1, 1}, {1, 1}, "VALID", 24},  // two sample groups
      {{3, 9, 9, 16}, {2, 3}, {2, 1}, {1, 2}, "SAME", 21},    // runs of one tap (dilated last axis)
      {{4, 30, 16}, {3}, {1}, {1}, "SAME", 22},                // 1-D
  };
  std::mt19937 rng(20);
  std::normal_distribution<float> normal;
  for (const Case& one : cases) {
    const auto g = kernels::make_conv_geometry(one.input, one.kernel, one.strides, one.padding, {}, one.dilation, "test");
    const std::int64_t F = one.features, C = one.input.back(), positions = numel(g.out_spatial);
    CAPTURE(F);
    auto draw = [&](std::int64_t count) {
      std::vector<float> v(static_cast<std::size_t>(count));
      for (float& e : v) e = normal(rng);
      return v;
    };
    const std::vector<float> x = draw(numel(one.input)), kernel = draw(positions * g.window_size() * C * F),
                             dy = draw(one.input[0] * positions * F);
    struct Gradients {
      std::vector<float> d_x, d_kernel, d_bias;
    };
    // d_kernel written at a 64-byte boundary (where by runs streams whole lines out) or
    // one float past it (where it stores them).
    std::vector<float> d_kernel_space(kernel.size() + 16);
    float* const line = d_kernel_space.data() + (16 - reinterpret_cast<std::uintptr_t>(d_kernel_space.data()) % 64 / 4) % 16;
    auto backward = [&](bool full_rate, int threads, bool aligned) {
      kernels::tiles::set_zmm_at_full_rate(full_rate);
      set_num_threads(threads);
      CHECK(kernels::conv_local_d_kernel_by_runs(g, F) == full_rate);
      Gradients out{std::vector<float>(x.size()), {}, std::vector<float>(static_cast<std::size_t>(positions * F))};
      float* d_kernel = aligned ? line : line + 1;
      kernels::conv_local_backward_fast(g, F, x.data(), kernel.data(), dy.data(), out.d_x.data(), d_kernel,
                                        out.d_bias.data());
      out.d_kernel.assign(d_kernel, d_kernel + kernel.size());
      return out;
    };
    const Gradients by_features = backward(false, 1, true);
    CHECK(backward(false, 2, false).d_kernel == by_features.d_kernel);
    for (const int threads : {1, 2})
      for (const bool aligned : {true, false}) {
        CAPTURE(threads);
        CAPTURE(aligned);
        const Gradients by_runs = backward(true, threads, aligned);
        CHECK(by_runs.d_kernel == by_features.d_kernel);
        CHECK(by_runs.d_bias == by_features.d_bias);
        CHECK(by_runs.d_x == by_features.d_x);
      }
    // And the definition, d_kernel[o, c·S + r, f] = Σ_n xp[n, source(o, r), c] · dy[n, o, f],
    // in double precision for every entry.
    const std::vector<std::int64_t> source = kernels::patch_source_table(g);
    const std::int64_t S = g.window_size(), sample = g.in_positions() * C;
    double worst = 0;
    for (std::int64_t o = 0; o < positions; ++o)
      for (std::int64_t i = 0; i < S * C; ++i)
        for (std::int64_t f = 0; f < F; ++f) {
          const std::int64_t from = source[static_cast<std::size_t>(o * S + i % S)];
          double want = 0;
          for (std::int64_t n = 0; from >= 0 && n < one.input[0]; ++n)
            want += static_cast<double>(x[static_cast<std::size_t>(n * sample + from + i / S)]) *
                    dy[static_cast<std::size_t>((n * positions + o) * F + f)];
          const float got = by_features.d_kernel[static_cast<std::size_t>((o * S * C + i) * F + f)];
          worst = std::max(worst, std::abs(got - want) / (1 + std::abs(want)));
        }
    CHECK(worst < 1e-5);
  }
}

TEST_CASE("float16 and bfloat16 convs compute in float32 on the fast kernels and match the general path") {
  if (!engine_available()) return;
  FastPathGuard guard;
  // Both paths widen to float32, accumulate in float32 and round each result once, so
  // they differ by at most an ulp of the 16-bit result (float32 sums in another order).
  struct Dtype16 {
    DType dtype;
    double ulp;  // relative spacing at 1: 2^-10 (float16), 2^-7 (bfloat16)
  };
  for (const Dtype16 d : {Dtype16{DType::Float16, 0x1p-10}, Dtype16{DType::BFloat16, 0x1p-7}}) {
    for (const bool local : {true, false}) {
      for (const Padding& padding : {Padding("SAME"), Padding("VALID")}) {
        Config c;
        c.local = local;
        c.input = {3, 9, 8, 5};
        c.kernel = {3, 3};
        c.strides = {2, 1};
        c.dilation = {1, 2};
        c.padding = padding;
        c.features = 11;
        c.geometry = kernels::make_conv_geometry(c.input, c.kernel, c.strides, c.padding, {}, c.dilation, "test");
        CAPTURE(dtype_name(d.dtype));
        CAPTURE(describe(c));
        const auto& g = c.geometry;
        Shape kernel_shape = local ? g.out_spatial : Shape{3, 3};
        kernel_shape.push_back(local ? g.window_size() * 5 : 5);
        kernel_shape.push_back(c.features);
        Shape out_shape{3};
        out_shape.insert(out_shape.end(), g.out_spatial.begin(), g.out_spatial.end());
        out_shape.push_back(c.features);
        const Shape bias_shape = local ? Shape(out_shape.begin() + 1, out_shape.end()) : Shape{c.features};
        const Tensor x = cast(random_normal(make_key(1), c.input), d.dtype);
        const Tensor k = cast(random_normal(make_key(2), kernel_shape), d.dtype);
        const Tensor b = cast(random_normal(make_key(3), bias_shape), d.dtype);
        const Tensor dy = cast(random_normal(make_key(4), out_shape), d.dtype);
        for (const bool bias : {false, true}) {
          c.bias = bias;
          CAPTURE(bias);
          kernels::tiles::set_fast_enabled(false);
          const Outputs want = run(c, x, k, b, dy);
          kernels::tiles::set_fast_enabled(true);
          const std::int64_t before = kernels::conv_fast_dispatch_count();
          const Outputs got = run(c, x, k, b, dy);
          CHECK(kernels::conv_fast_dispatch_count() > before);
          REQUIRE(got.values.size() == want.values.size());
          for (std::size_t i = 0; i < want.values.size(); ++i) {
            CAPTURE(i);  // y, dx, dkernel, dbias
            CHECK(got.values[i].dtype() == d.dtype);
            CHECK(worst_error(got.values[i], want.values[i]) <= 2 * d.ulp);
          }
        }
      }
    }
  }
}

TEST_CASE("tile engine: pads far larger than the input take the general path (no giant padded copy)") {
  using kernels::tiles::fast_geometry_supported;
  // A 1-D input of 5 positions, kernel 3, stride 2^20, pads of 2^30: legal in lax, and
  // all but a few outputs read only padding. The padded copy would hold 2^31 positions.
  const int huge = 1 << 30;
  const kernels::ConvGeometry far = kernels::make_conv_geometry(
      {2, 5, 3}, {3}, {std::int64_t{1} << 20}, Padding({{huge, huge}}), {}, {}, "test");
  CHECK_FALSE(fast_geometry_supported(far, 4));
  // SAME's border is small beside the input: the engine takes it.
  const kernels::ConvGeometry same = kernels::make_conv_geometry({2, 5, 3}, {3}, {}, Padding("SAME"), {}, {}, "test");
  CHECK(fast_geometry_supported(same, 4));
}

TEST_CASE("1-D local convs: the output-stationary input gradient and the streamed output match the general path") {
  // 1-D layers with patch origins ≥ 8 floats apart compute d_x as one register sum per
  // 16 floats (several chunks of 32 blocks here, a masked last block, crops), and a
  // forward output of ≥ 4 MiB (the last case: 16 × 4096 × 16 floats) is written with
  // streaming stores. Values and all three gradients against the general path, both
  // tile kinds, 1 to 3 threads (3: uneven block ranges).
  if (!engine_available()) return;
  ThreadsGuard threads_guard;
  FastPathGuard guard;
  struct OneD {
    Shape input;
    std::int64_t kernel, stride;
    Padding padding;
    std::int64_t features;
  };
  const std::vector<OneD> cases{
      {{3, 1000, 8}, 9, 1, "SAME", 16},
      {{2, 301, 3}, 5, 3, Padding({{2, -1}}), 20},
      {{2, 257, 12}, 4, 1, "SAME_LOWER", 7},
      {{2, 100, 8}, 3, 2, "VALID", 16},
      {{2, 64, 16}, 2, 1, Padding({{-3, 4}}), 8},
      {{16, 4096, 8}, 9, 1, "SAME", 16},
  };
  const std::vector<bool> tile_kinds = avx512_settings();
  std::uint64_t seed = 100;
  for (const OneD& one : cases) {
    Config c;
    c.input = one.input;
    c.kernel = {one.kernel};
    c.strides = {one.stride};
    c.dilation = {1};
    c.padding = one.padding;
    c.features = one.features;
    c.geometry = kernels::make_conv_geometry(c.input, c.kernel, c.strides, c.padding, {}, c.dilation, "test");
    CAPTURE(describe(c));
    const std::int64_t n = c.input[0], positions = c.geometry.out_spatial[0], patch = one.kernel * c.input[2];
    const Tensor x = random_normal(make_key(seed), c.input), k = random_normal(make_key(seed + 1), {positions, patch, one.features});
    const Tensor b = random_normal(make_key(seed + 2), {positions, one.features});
    const Tensor dy = random_normal(make_key(seed + 3), {n, positions, one.features});
    seed += 4;
    fast_against_general(c, x, k, b, dy, tile_kinds, {1, 2, 3}, [](const Outputs& got, const Outputs& want, std::int64_t fast_calls) {
      CHECK(fast_calls == 2);  // the forward and the fused backward
      REQUIRE(got.values.size() == 4);
      for (std::size_t i = 0; i < 4; ++i) {
        CAPTURE(i);  // y, dx, dkernel, dbias
        CHECK(worst_error(got.values[i], want.values[i]) < 1e-4);
      }
    });
  }
}

TEST_CASE("one input channel, kernel rows longer than 8 taps: the input gradient's kernel transpose") {
  // With C = 1 the input gradient transposes each position's kernel 8 taps of a kernel
  // row at a time (a 1-channel sequence, an image's first layer): rows of 20, 11 and 9
  // taps (two or three blocks, the last partial), 1-D and 2-D, strides 1 and 3 (the
  // 1-D output-stationary d_x needs stride · C ≥ 8 and is not taken), F whole and odd.
  // Values and all three gradients against the general path, both tile kinds, 1 and 2 threads.
  if (!engine_available()) return;
  ThreadsGuard threads_guard;
  FastPathGuard guard;
  struct Case {
    Shape input;
    std::vector<std::int64_t> kernel, strides;
    Padding padding;
    std::int64_t features;
  };
  const std::vector<Case> cases{
      {{2, 90, 1}, {20}, {1}, "VALID", 16},
      {{3, 61, 1}, {20}, {3}, "SAME", 5},
      {{2, 7, 30, 1}, {2, 11}, {1, 1}, "SAME", 9},
      {{2, 12, 12, 1}, {3, 9}, {2, 1}, "VALID", 24},
  };
  const std::vector<bool> tile_kinds = avx512_settings();
  std::uint64_t seed = 200;
  for (const Case& one : cases) {
    Config c;
    c.local = true;
    c.bias = true;
    c.input = one.input;
    c.kernel = one.kernel;
    c.strides = one.strides;
    c.dilation = std::vector<std::int64_t>(one.kernel.size(), 1);
    c.padding = one.padding;
    c.features = one.features;
    c.geometry = kernels::make_conv_geometry(c.input, c.kernel, c.strides, c.padding, {}, c.dilation, "test");
    CAPTURE(describe(c));
    const auto& g = c.geometry;
    Shape kernel_shape = g.out_spatial, out_shape{c.input[0]};
    kernel_shape.insert(kernel_shape.end(), {g.window_size(), c.features});
    out_shape.insert(out_shape.end(), g.out_spatial.begin(), g.out_spatial.end());
    out_shape.push_back(c.features);
    const Tensor x = random_normal(make_key(seed), c.input), k = random_normal(make_key(seed + 1), kernel_shape);
    const Tensor b = random_normal(make_key(seed + 2), Shape(out_shape.begin() + 1, out_shape.end()));
    const Tensor dy = random_normal(make_key(seed + 3), out_shape);
    seed += 4;
    fast_against_general(c, x, k, b, dy, tile_kinds, {1, 2}, [](const Outputs& got, const Outputs& want, std::int64_t fast_calls) {
      CHECK(fast_calls == 2);  // the forward and the fused backward
      REQUIRE(got.values.size() == 4);
      for (std::size_t i = 0; i < 4; ++i) {
        CAPTURE(i);  // y, dx, dkernel, dbias
        CHECK(worst_error(got.values[i], want.values[i]) < 1e-4);
      }
    });
  }
}
