// The fused local-conv backward (one fast-kernel pass for dx, dkernel and dbias,
// taken when the backward records nothing) and the biased local conv op the layers
// use, against the general path (fast kernels switched off): random shapes, with
// and without bias, every subset of required gradients, and create_graph (which
// keeps the differentiable VJP ops).
#include <array>
#include <cmath>
#include <random>
#include <string>

#include <doctest/doctest.h>

#include "core/kernels/conv/conv_local_fast.hpp"
#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using test_support::error_of;

namespace {

using test_support::max_abs_diff;

// Restores the fast kernels when a test ends, also on failure.
struct GeneralPathGuard {
  explicit GeneralPathGuard(bool general) { kernels::set_conv_local_fast_enabled(!general); }
  ~GeneralPathGuard() { kernels::set_conv_local_fast_enabled(true); }
};

struct Case {
  std::int64_t n, h, w, c, kh, kw, dil, f;
};

struct Result {
  Tensor y, dx, dk, db;  // undefined where no gradient was asked for
};

// y = local conv of x, k (+ b) and the gradients of <y, g> for the leaves flagged
// in `wants` (x, k, b), through the engine without create_graph.
Result run(const Case& s, bool with_bias, std::array<bool, 3> wants, bool general, std::uint64_t seed) {
  const GeneralPathGuard path(general);
  const std::int64_t oh = s.h - (s.kh - 1) * s.dil, ow = s.w - (s.kw - 1) * s.dil;
  Tensor x = random_normal(make_key(seed), {s.n, s.h, s.w, s.c});
  Tensor k = random_normal(make_key(seed + 1), {oh, ow, s.kh * s.kw * s.c, s.f});
  Tensor b = random_normal(make_key(seed + 2), {oh, ow, s.f});
  const Tensor g = random_normal(make_key(seed + 3), {s.n, oh, ow, s.f});
  if (wants[0]) x.requires_grad_();
  if (wants[1]) k.requires_grad_();
  if (wants[2]) b.requires_grad_();
  const std::vector<std::int64_t> window{s.kh, s.kw}, dilation{s.dil, s.dil};
  Tensor y = with_bias ? conv_general_dilated_local_bias(x, k, b, {1, 1}, "VALID", window, {}, dilation)
                       : conv_general_dilated_local(x, k, {1, 1}, "VALID", window, {}, dilation);
  if (y.requires_grad()) y.backward(g);
  return {y.detach(), x.grad(), k.grad(), with_bias ? b.grad() : Tensor()};
}

void check_close(const Tensor& fused, const Tensor& general, const char* what) {
  CAPTURE(what);
  REQUIRE(fused.defined() == general.defined());
  if (fused.defined()) CHECK(max_abs_diff(fused, general) < 1e-4);
}

// Six random shapes, each with and without bias and with several subsets of
// required gradients: the fast path (fused backward) against the general path.
void check_random_shapes() {
  std::mt19937 rng(2026);
  auto pick = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
  for (int trial = 0; trial < 6; ++trial) {
    Case s{pick(1, 7), pick(5, 11), pick(5, 11), pick(1, 9), pick(1, 3), pick(1, 3), pick(1, 2), 8 * pick(1, 3)};
    CAPTURE(trial);
    CAPTURE(s.n);
    CAPTURE(s.h);
    CAPTURE(s.w);
    CAPTURE(s.c);
    CAPTURE(s.kh);
    CAPTURE(s.kw);
    CAPTURE(s.dil);
    CAPTURE(s.f);
    for (const bool with_bias : {false, true})
      for (const std::array<bool, 3> wants : {std::array{true, true, true}, std::array{true, false, false},
                                              std::array{false, true, false}, std::array{false, false, true},
                                              std::array{false, true, true}}) {
        if (!with_bias && !wants[0] && !wants[1]) continue;
        CAPTURE(with_bias);
        CAPTURE(wants[0]);
        CAPTURE(wants[1]);
        CAPTURE(wants[2]);
        const auto seed = static_cast<std::uint64_t>(10 * trial);
        const Result fused = run(s, with_bias, wants, false, seed), general = run(s, with_bias, wants, true, seed);
        check_close(fused.y, general.y, "y");
        check_close(fused.dx, general.dx, "dx");
        check_close(fused.dk, general.dk, "dk");
        check_close(fused.db, general.db, "db");
      }
  }
}

}  // namespace

TEST_CASE("Fused ConvLocal backward equals the general path: random shapes, bias, any subset of gradients") {
  // With the AVX-512 tiles where the CPU has them, then with the AVX2 ones.
  const bool has_avx512 = kernels::conv_local_avx512_active();
  for (const bool avx512 : {true, false}) {
    if (avx512 && !has_avx512) continue;
    CAPTURE(avx512);
    kernels::set_conv_local_avx512_allowed(avx512);
    check_random_shapes();
  }
  kernels::set_conv_local_avx512_allowed(has_avx512);
}

TEST_CASE("Biased ConvLocal op: db is g summed over the batch; y is conv + bias") {
  // N = 2, 3×3×1 input, 2×2 kernel, F = 8: y[n, o, f] = b[o, f] + Σ_i patch · k.
  const Tensor x = arange(1.0, 19.0, 1.0).reshape({2, 3, 3, 1});
  const Tensor k = full({2, 2, 4, 8}, 0.5);
  Tensor b = arange(0.0, 32.0, 1.0).reshape({2, 2, 8}).detach().requires_grad_();
  const Tensor y = conv_general_dilated_local_bias(x, k, b, {1, 1}, "VALID", {2, 2});
  // Sample 0, position (0, 0): patch 1, 2, 4, 5 -> 0.5 · 12 = 6, plus b[0, 0, f] = f.
  CHECK(y.at({0, 0, 0, 0}) == doctest::Approx(6.0));
  CHECK(y.at({0, 0, 0, 7}) == doctest::Approx(13.0));
  // Sample 1, position (1, 1): patch 14, 15, 17, 18 -> 32, plus b[1, 1, 3] = 27.
  CHECK(y.at({1, 1, 1, 3}) == doctest::Approx(59.0));
  y.backward(ones(y.shape()));
  CHECK(b.grad().at({1, 0, 5}) == doctest::Approx(2.0));  // two samples
}

TEST_CASE("ConvLocal create_graph keeps differentiable VJPs with the fast kernels on") {
  // Second order: d/dk of |∂L/∂x|² (L = <y, g>), fast kernels versus the general path.
  const Case s{3, 7, 6, 2, 3, 3, 1, 8};
  auto second_order = [&](bool general) {
    const GeneralPathGuard path(general);
    Tensor x = random_normal(make_key(7), {s.n, s.h, s.w, s.c}).requires_grad_();
    Tensor k = random_normal(make_key(8), {5, 4, 18, 8}).requires_grad_();
    Tensor b = random_normal(make_key(9), {5, 4, 8}).requires_grad_();
    const Tensor g = random_normal(make_key(10), {s.n, 5, 4, 8});
    const Tensor y = conv_general_dilated_local_bias(x, k, b, {1, 1}, "VALID", {3, 3});
    const auto first = grad({y}, {x, k, b}, {g}, {.create_graph = true});
    CHECK(first[0].requires_grad());
    CHECK(first[1].requires_grad());
    const Tensor loss = (first[0] * first[0]).sum() + (first[1] * first[1]).sum();
    return grad({loss}, {k, x}, {}, {.allow_unused = true});
  };
  const auto fast = second_order(false), general = second_order(true);
  check_close(fast[0], general[0], "d2/dk");
  check_close(fast[1], general[1], "d2/dx");
}

TEST_CASE("ConvLocal layer: one op for conv + bias; gradients match the general path") {
  for (const bool use_bias : {true, false}) {
    CAPTURE(use_bias);
    auto run_layer = [&](bool general) {
      const GeneralPathGuard path(general);
      nn::ConvLocal layer({.features = 16, .kernel_size = {3, 3}, .padding = "CIRCULAR", .use_bias = use_bias,
                           .bias_init = nn::initializers::normal(1.0)});
      Tensor x = random_normal(make_key(21), {2, 3, 6, 5, 4}).requires_grad_();  // two batch axes
      const Tensor y = layer(x);
      // (batch..., spatial..., F) is restored by a reshape over the conv op.
      REQUIRE(y.grad_fn() != nullptr);
      REQUIRE(y.grad_fn()->inputs.size() == 1);
      const auto& conv = y.grad_fn()->inputs[0].grad_fn();
      CHECK(std::string(conv->op) == "conv_general_dilated_local");
      CHECK(conv->inputs.size() == (use_bias ? 3u : 2u));
      y.backward(random_normal(make_key(22), y.shape()));
      std::vector<Tensor> out{y.detach(), x.grad()};
      for (const auto& [name, p] : layer.named_parameters()) out.push_back(p.grad());
      return out;
    };
    const auto fast = run_layer(false), general = run_layer(true);
    REQUIRE(fast.size() == general.size());
    for (std::size_t i = 0; i < fast.size(); ++i) check_close(fast[i], general[i], "layer tensor");
  }
}

TEST_CASE("Biased ConvLocal op keeps the dtype rules: float16 and Highest take the general path exactly") {
  const Tensor x = random_normal(make_key(31), {3, 6, 6, 2}, DType::Float16);
  const Tensor k = random_normal(make_key(32), {4, 4, 18, 8}, DType::Float16);
  const Tensor b = random_normal(make_key(33), {4, 4, 8}, DType::Float16);
  const Tensor fused = conv_general_dilated_local_bias(x, k, b, {1, 1}, "VALID", {3, 3});
  const Tensor separate = add(conv_general_dilated_local(x, k, {1, 1}, "VALID", {3, 3}), b);
  CHECK(fused.dtype() == DType::Float16);
  CHECK(max_abs_diff(fused, separate) == 0.0);
  const Tensor x32 = x.astype(DType::Float32), k32 = k.astype(DType::Float32), b32 = b.astype(DType::Float32);
  const Tensor highest =
      conv_general_dilated_local_bias(x32, k32, b32, {1, 1}, "VALID", {3, 3}, {}, {}, 1, Precision::Highest);
  const Tensor highest_separate =
      add(conv_general_dilated_local(x32, k32, {1, 1}, "VALID", {3, 3}, {}, {}, 1, Precision::Highest), b32);
  CHECK(max_abs_diff(highest, highest_separate) == 0.0);
}

TEST_CASE("Biased ConvLocal op: bias errors name the op, the shapes and the dtypes") {
  const Tensor x = zeros({2, 5, 5, 1}), k = zeros({3, 3, 9, 8});
  CHECK(error_of<ShapeError>([&] { conv_general_dilated_local_bias(x, k, zeros({3, 8}), {1, 1}, "VALID", {3, 3}); }) ==
        "conv_general_dilated_local: bias has shape [3, 8] but must be [3, 3, 8] (the output [2, 3, 3, 8] without "
        "the batch)");
  CHECK(error_of<DTypeError>([&] {
          conv_general_dilated_local_bias(x, k, zeros({3, 3, 8}, DType::Float64), {1, 1}, "VALID", {3, 3});
        }) == "conv_general_dilated_local: bias [3, 3, 8] is float64 but lhs is float32; both must have the same dtype");
}
