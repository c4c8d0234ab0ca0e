// Every op's forward and backward give the same bits at 1, 2 and 3 threads. Shapes
// are large enough for each kernel to split its work (the convs over positions,
// rows or samples, pooling over samples, element-wise kernels past 2 x 32 Ki
// elements, the GEMMs into several pieces, fused Adam into several chunks), so a
// reduction whose order followed the thread split would show here.
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using test_support::ThreadCountGuard;

namespace {

Tensor normal(std::uint64_t seed, const Shape& shape, DType dtype = DType::Float32) {
  return random_normal(make_key(seed), shape).astype(dtype);
}

Tensor leaf(std::uint64_t seed, const Shape& shape, DType dtype = DType::Float32) {
  Tensor t = normal(seed, shape, dtype);
  t.requires_grad_();
  return t;
}

// The forward output and the gradients of <output, cotangent> in `inputs`.
std::vector<Tensor> output_and_gradients(const Tensor& output, const std::vector<Tensor>& inputs,
                                         std::uint64_t seed) {
  const Tensor cotangent = normal(seed, output.shape(), output.dtype());
  std::vector<Tensor> results = grad({output}, inputs, {cotangent});
  results.insert(results.begin(), output.detach());
  return results;
}

// Runs `compute` at 1, 2 and 3 threads and checks that each tensor it returns has
// the bits it had at 1 thread.
void check_thread_invariant(const std::string& what, const std::function<std::vector<Tensor>()>& compute) {
  INFO(what);
  ThreadCountGuard guard(1);
  const std::vector<Tensor> reference = compute();
  for (const int threads : {2, 3}) {
    CAPTURE(threads);
    set_num_threads(threads);
    const std::vector<Tensor> got = compute();
    REQUIRE(got.size() == reference.size());
    for (std::size_t r = 0; r < got.size(); ++r) {
      CAPTURE(r);  // 0: the output, then the gradients in input order
      const test_support::BitDifference d = test_support::bit_difference(got[r], reference[r]);
      CHECK_MESSAGE(d.count == 0, d.count << " of " << got[r].numel() << " elements differ, by up to " << d.largest);
    }
  }
}

void check_local_conv(const std::string& what, DType dtype, const Shape& x_shape, std::vector<std::int64_t> strides,
                      const char* padding, std::vector<std::int64_t> kernel_dilation = {}) {
  check_thread_invariant(what, [&] {
    const Tensor x = leaf(1, x_shape, dtype);
    const std::int64_t c = x_shape.back(), f = 16;
    // The output's spatial shape, from a forward on a kernel of any size.
    const Tensor probe = conv_general_dilated_patches(x.detach(), {3, 3}, strides, Padding(padding), {}, kernel_dilation);
    Shape kernel_shape(probe.shape().begin() + 1, probe.shape().end() - 1);
    Shape bias_shape = kernel_shape;
    kernel_shape.insert(kernel_shape.end(), {9 * c, f});
    bias_shape.push_back(f);
    const Tensor k = leaf(2, kernel_shape, dtype), b = leaf(3, bias_shape, dtype);
    const Tensor y = conv_general_dilated_local_bias(x, k, b, strides, Padding(padding), {3, 3}, {}, kernel_dilation);
    return output_and_gradients(y, {x, k, b}, 4);
  });
}

void check_shared_conv(const std::string& what, DType dtype) {
  check_thread_invariant(what, [&] {
    const Tensor x = leaf(1, {16, 16, 16, 8}, dtype), k = leaf(2, {3, 3, 8, 16}, dtype), b = leaf(3, {16}, dtype);
    const Tensor y = conv_general_dilated_bias(x, k, b, {1, 1}, Padding("SAME"));
    return output_and_gradients(y, {x, k, b}, 4);
  });
}

}  // namespace

TEST_CASE("thread invariance: the local conv, fast path and general path") {
  check_local_conv("fast, VALID", DType::Float32, {16, 14, 14, 8}, {1, 1}, "VALID");
  check_local_conv("fast, SAME, stride 2", DType::Float32, {16, 16, 16, 8}, {2, 2}, "SAME");
  // Too few output rows for two bands of d_x (kernel dilation 2: footprints of 5 rows
  // in 14; stride 2, 7 rows: two bands would take fewer than kMinBandRows = 4 rows
  // each): d_x split by samples, 7 of them, so 3 threads split unevenly. Stride 2, 9
  // rows: two uneven bands (4 and 5 rows).
  check_local_conv("fast, SAME, kernel dilation 2", DType::Float32, {7, 14, 14, 8}, {1, 1}, "SAME", {2, 2});
  check_local_conv("fast, SAME, stride 2, 7 output rows", DType::Float32, {7, 14, 14, 8}, {2, 2}, "SAME");
  check_local_conv("fast, SAME, stride 2, 9 output rows", DType::Float32, {7, 18, 18, 8}, {2, 2}, "SAME");
  check_local_conv("general (float64), VALID", DType::Float64, {16, 14, 14, 8}, {1, 1}, "VALID");
  check_local_conv("general (float64), SAME, stride 2", DType::Float64, {16, 16, 16, 8}, {2, 2}, "SAME");
}

TEST_CASE("thread invariance: the 1-D local conv (output-stationary input gradient, streamed output)") {
  // d_x by blocks of 16 floats, split into uneven ranges at 3 threads; y of 4 MiB
  // (7 × 4682 × 32 floats) written with streaming stores.
  check_thread_invariant("1-D, SAME, kernel 9, 8 channels", [] {
    const Tensor x = leaf(1, {7, 4682, 8}), k = leaf(2, {4682, 72, 32}), b = leaf(3, {4682, 32});
    const Tensor y = conv_general_dilated_local_bias(x, k, b, {1}, Padding("SAME"), {9});
    return output_and_gradients(y, {x, k, b}, 4);
  });
  check_thread_invariant("1-D, stride 3, 3 channels, a crop", [] {
    const Tensor x = leaf(1, {5, 700, 3}), k = leaf(2, {233, 15, 20}), b = leaf(3, {233, 20});
    const Tensor y = conv_general_dilated_local_bias(x, k, b, {3}, Padding({{2, -1}}), {5});
    return output_and_gradients(y, {x, k, b}, 4);
  });
}

TEST_CASE("thread invariance: the local conv's general path with feature groups, and in float16") {
  check_thread_invariant("general, 2 feature groups", [] {
    const Tensor x = leaf(1, {16, 14, 14, 8}), k = leaf(2, {12, 12, 36, 16});
    const Tensor y = conv_general_dilated_local(x, k, {1, 1}, Padding("VALID"), {3, 3}, {}, {}, 2, Precision::Default);
    return output_and_gradients(y, {x, k}, 3);
  });
  check_local_conv("general (float16), VALID", DType::Float16, {16, 14, 14, 8}, {1, 1}, "VALID");
}

TEST_CASE("thread invariance: the shared conv, fast path and general path") {
  check_shared_conv("fast", DType::Float32);
  check_shared_conv("general (float64)", DType::Float64);
  check_thread_invariant("transposed (the input VJP as an op), stride 2", [] {
    const Tensor g = leaf(1, {16, 8, 8, 16}), k = leaf(2, {3, 3, 8, 16});
    const Tensor dx = conv_general_dilated_input_vjp(g, k, {16, 16, 16, 8}, {2, 2}, Padding("SAME"));
    return output_and_gradients(dx, {g, k}, 3);
  });
}

TEST_CASE("thread invariance: pooling, disjoint and overlapping windows") {
  for (const auto& [what, window, strides, padding] :
       std::vector<std::tuple<std::string, Shape, Shape, const char*>>{
           {"2x2 / 2", {2, 2}, {2, 2}, "VALID"}, {"3x3 / 1 SAME", {3, 3}, {1, 1}, "SAME"}}) {
    check_thread_invariant("max_pool " + what, [&] {
      const Tensor x = leaf(1, {32, 16, 16, 16});
      return output_and_gradients(nn::max_pool(x, window, strides, Padding(padding)), {x}, 2);
    });
    check_thread_invariant("avg_pool " + what, [&] {
      const Tensor x = leaf(1, {32, 16, 16, 16});
      return output_and_gradients(nn::avg_pool(x, window, strides, Padding(padding)), {x}, 2);
    });
  }
}

TEST_CASE("thread invariance: matmul, reductions, softmax cross-entropy, element-wise ops") {
  check_thread_invariant("matmul", [] {
    const Tensor a = leaf(1, {300, 257}), b = leaf(2, {257, 200});
    return output_and_gradients(matmul(a, b), {a, b}, 3);
  });
  // A weight-gradient shape: C is 64 x 48, k = 2048, so the product is cut along k
  // (core/kernels/gemm.cpp) in both products of the backward.
  check_thread_invariant("matmul cut along k", [] {
    const Tensor a = leaf(1, {64, 2048}), b = leaf(2, {2048, 48});
    return output_and_gradients(matmul(a, b), {a, b}, 3);
  });
  check_thread_invariant("sum, mean, var, logsumexp", [] {
    const Tensor x = leaf(1, {96, 1001});
    const Tensor y = stack({sum(x, {1}), mean(x, {0}).sum() * ones({96}), var(x, {1}), logsumexp(x, {1})});
    return output_and_gradients(y, {x}, 2);
  });
  check_thread_invariant("softmax cross-entropy", [] {
    const Tensor logits = leaf(1, {512, 100});
    const Tensor labels = softmax(normal(2, {512, 100}));
    return output_and_gradients(losses::softmax_cross_entropy(logits, labels, losses::Reduction::Mean), {logits}, 3);
  });
  // An odd length, so the thread split cuts vectorised loops at odd places.
  check_thread_invariant("exp, tanh, gelu, sigmoid, relu, mul", [] {
    const Tensor x = leaf(1, {3 * 65536 + 5});
    const Tensor y = exp(x) + tanh(x) + gelu(x) + sigmoid(x) * relu(x) + x * normal(2, {3 * 65536 + 5});
    return output_and_gradients(y, {x}, 3);
  });
}

TEST_CASE("thread invariance: the fused AdamW step") {
  check_thread_invariant("adamw", [] {
    optim::NamedTensors params{{"a", normal(1, {70001})}, {"b", normal(2, {300, 257})}, {"c", normal(3, {7})}};
    optim::Optimizer opt(params, optim::adamw({.learning_rate = 1e-2, .weight_decay = 0.1}));
    for (std::uint64_t step = 0; step < 3; ++step) {
      for (std::size_t k = 0; k < params.size(); ++k)
        params[k].second.set_grad(normal(10 * step + k + 10, params[k].second.shape()));
      opt.step();
    }
    std::vector<Tensor> result;
    for (const auto& [name, p] : params) result.push_back(p);
    return result;
  });
}

TEST_CASE("set_deterministic(false): the general local conv's input gradient follows the thread count, to rounding") {
  CHECK(deterministic());  // the default
  struct DeterministicOff {
    DeterministicOff() { set_deterministic(false); }
    ~DeterministicOff() { set_deterministic(true); }
  } off;
  const auto input_gradient = [](int threads) {
    ThreadCountGuard guard(threads);
    const Tensor x = leaf(1, {16, 14, 14, 8}, DType::Float64), k = leaf(2, {12, 12, 72, 16}, DType::Float64);
    const Tensor y = conv_general_dilated_local(x, k, {1, 1}, Padding("VALID"), {3, 3});
    return grad({y}, {x}, {normal(4, y.shape(), DType::Float64)})[0];
  };
  const Tensor one = input_gradient(1), two = input_gradient(2);
  // One slot per thread: the same terms grouped otherwise, so some last bits move.
  CHECK(test_support::bit_difference(one, two).count > 0);
  CHECK(test_support::bit_difference(one, two).largest < 1e-12);
}
