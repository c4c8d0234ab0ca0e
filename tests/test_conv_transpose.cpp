// nn::ConvTranspose (flax.linen.ConvTranspose over jax.lax.conv_transpose):
// hand-computed 1-D values for every padding form, output shapes, the adjoint
// identity with Conv (transpose_kernel), gradchecks, dtypes and the errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "io_test_support.hpp"
#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

using V = std::vector<double>;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// An initializer that always returns these values (a fresh tensor per call).
nn::Initializer fixed(V values) {
  return [values](Key, const Shape& shape, DType dtype) { return from_vector(values, shape, dtype); };
}

nn::Initializer fixed(const Tensor& t) { return fixed(t.to_vector()); }

using test_support::max_abs_diff;

Tensor random64(std::uint64_t seed, const Shape& shape) { return random_normal(make_key(seed), shape, DType::Float64); }

// The 1-D layer of the hand-computed cases: one channel in and out, kernel
// w = [1, 10], kernel_dilation 2 (dilated extent K = 3), stride 2, no bias.
nn::ConvTransposeOptions hand_layer(Padding padding, bool transpose_kernel = false) {
  return {.features = 1, .kernel_size = {2}, .strides = 2, .padding = std::move(padding), .kernel_dilation = 2,
          .use_bias = false, .param_dtype = DType::Float64, .kernel_init = fixed({1, 10}),
          .transpose_kernel = transpose_kernel};
}

// x = [1, 2, 3] as (batch 1, 3, 1 channel).
Tensor hand_output(nn::ConvTransposeOptions options) {
  nn::ConvTranspose layer(std::move(options));
  return layer(from_vector({1, 2, 3}, {1, 3, 1}, DType::Float64));
}

}  // namespace

// lax.conv_transpose dilates x by the stride, xd = [1, 0, 2, 0, 3], pads it, and
// cross-correlates with the dilated kernel: y[o] = w0 * xp[o] + w1 * xp[o + 2].
TEST_CASE("ConvTranspose 1-D, stride 2, kernel_dilation 2: hand-computed values for every padding") {
  // VALID: pads (K - 1, max(K, s) - 1) = (2, 2): xp = [0 0 1 0 2 0 3 0 0], 7 outputs:
  // [0 + 10*1, 0 + 0, 1 + 10*2, 0, 2 + 10*3, 0, 3 + 0].
  CHECK(hand_output(hand_layer("VALID")).to_vector() == V{10, 0, 21, 0, 32, 0, 3});
  // SAME: K + s - 2 = 3 in total; s > K - 1 is false, so ceil(3/2) = 2 in front:
  // (2, 1), xp = [0 0 1 0 2 0 3 0], 6 = M*s outputs.
  CHECK(hand_output(hand_layer("SAME")).to_vector() == V{10, 0, 21, 0, 32, 0});
  // Explicit (1, 0): xp = [0 1 0 2 0 3], 4 outputs [0, 1 + 20, 0, 2 + 30].
  CHECK(hand_output(hand_layer(Padding{{1, 0}})).to_vector() == V{0, 21, 0, 32});
  // Explicit (-1, 2) crops the dilated input in front: xp = [0 2 0 3 0 0].
  CHECK(hand_output(hand_layer(Padding{{-1, 2}})).to_vector() == V{0, 32, 0, 3});
  // An int 1 is (1, 1): xp = [0 1 0 2 0 3 0].
  CHECK(hand_output(hand_layer(1)).to_vector() == V{0, 21, 0, 32, 0});
  // CIRCULAR: the VALID result (7 long) padded to an odd number of periods
  // P = M*s = 6: diff = -(7 - 6) mod 12 = 11, (6, 5) with the odd unit in front, so
  // out[j] = sum of y[i] with (i + 6) mod 6 = j: y[6] = 3 wraps onto y[0] = 10.
  CHECK(hand_output(hand_layer("CIRCULAR")).to_vector() == V{13, 0, 21, 0, 32, 0});

  // transpose_kernel flips the kernel to [10, 1]: y[o] = 10 xp[o] + xp[o + 2].
  CHECK(hand_output(hand_layer("VALID", true)).to_vector() == V{1, 0, 12, 0, 23, 0, 30});
  CHECK(hand_output(hand_layer("SAME", true)).to_vector() == V{1, 0, 12, 0, 23, 0});
  // CIRCULAR with transpose_kernel puts the odd unit behind: pads (5, 6), so
  // out[j] sums y[i] with (i + 5) mod 6 = j: y[0] = 1 and y[6] = 30 land on j = 5.
  CHECK(hand_output(hand_layer("CIRCULAR", true)).to_vector() == V{0, 12, 0, 23, 0, 31});

  // Flax's CIRCULAR offset makes transpose_kernel the exact transpose of a CIRCULAR
  // Conv only for some (K, s) (all K at s = 2; see the adjoint test). At s = 1 with
  // an even kernel it is that transpose rolled by one, as upstream: k = 2, w = [1, 10],
  // x = [1, 2, 3]. VALID with the flipped kernel [10, 1], pads (1, 1): [1, 12, 23, 30];
  // P = 3, diff = -(4 - 3) mod 6 = 5, pads (2, 3): [0 0 1 | 12 23 30 | 0 0 0] folds to
  // [12, 23, 31]. The CIRCULAR Conv (pads (0, 1)) has transpose
  // x -> [x0 + 10 x2, x1 + 10 x0, x2 + 10 x1] = [31, 12, 23].
  nn::ConvTranspose rolled({.features = 1, .kernel_size = {2}, .padding = "CIRCULAR", .use_bias = false,
                            .param_dtype = DType::Float64, .kernel_init = fixed({1, 10}), .transpose_kernel = true});
  CHECK(rolled(from_vector({1, 2, 3}, {1, 3, 1}, DType::Float64)).to_vector() == V{12, 23, 31});

  // SAME with s > K - 1: k = 2, no dilation (K = 2), stride 3, x = [1, 2]: total
  // K + s - 2 = 3 with K - 1 = 1 in front; xd = [1 0 0 2], xp = [0 1 0 0 2 0 0],
  // y[o] = xp[o] + 10 xp[o + 1]. VALID pads the same here (max(K - s, 0) = 0).
  for (const char* padding : {"SAME", "VALID"}) {
    nn::ConvTranspose layer({.features = 1, .kernel_size = {2}, .strides = 3, .padding = padding, .use_bias = false,
                             .param_dtype = DType::Float64, .kernel_init = fixed({1, 10})});
    CHECK(layer(from_vector({1, 2}, {1, 2, 1}, DType::Float64)).to_vector() == V{10, 1, 0, 20, 2, 0});
  }

  // The bias (F,) is added everywhere, after the CIRCULAR fold.
  auto with_bias = hand_layer("CIRCULAR");
  with_bias.use_bias = true;
  with_bias.bias_init = nn::initializers::constant(0.5);
  CHECK(hand_output(with_bias).to_vector() == V{13.5, 0.5, 21.5, 0.5, 32.5, 0.5});
}

TEST_CASE("ConvTranspose: lowercase 'same' reaches lax as a plain conv's SAME (allowed with strides 1 only)") {
  // k = 2, stride 1, x = [1, 2, 3], w = [1, 10]. 'SAME' (transposed): total K + s - 2
  // = 1, s > K - 1 false, ceil(1/2) = 1 in front: xp = [0 1 2 3] -> [10, 21, 32].
  // 'same' is padtype_to_pads' SAME: (0, 1): xp = [1 2 3 0] -> [21, 32, 3].
  auto layer_with = [](const char* padding) {
    return nn::ConvTransposeOptions{.features = 1, .kernel_size = {2}, .padding = padding, .use_bias = false,
                                    .param_dtype = DType::Float64, .kernel_init = fixed({1, 10})};
  };
  const Tensor x = from_vector({1, 2, 3}, {1, 3, 1}, DType::Float64);
  nn::ConvTranspose upper(layer_with("SAME")), lower(layer_with("same"));
  CHECK(upper(x).to_vector() == V{10, 21, 32});
  CHECK(lower(x).to_vector() == V{21, 32, 3});
  // The free function is lax.conv_transpose itself.
  CHECK(conv_transpose(x, from_vector({1, 10}, {2, 1, 1}, DType::Float64), {1}, "SAME").to_vector() ==
        V{10, 21, 32});
}

TEST_CASE("ConvTranspose output shapes: SAME = M*s, VALID = M*s + max(K - s, 0), CIRCULAR = M*s, pairs") {
  struct Case {
    std::int64_t M, k, s, d;
  };
  for (const Case c : {Case{5, 3, 2, 1}, Case{5, 2, 3, 1}, Case{4, 3, 2, 2}, Case{1, 4, 1, 1}, Case{3, 1, 4, 3},
                       Case{6, 5, 3, 2}}) {
    INFO("M ", c.M, " k ", c.k, " s ", c.s, " dilation ", c.d);
    const std::int64_t K = (c.k - 1) * c.d + 1;
    auto out_len = [&](Padding padding) {
      nn::ConvTranspose layer({.features = 2, .kernel_size = {static_cast<int>(c.k)}, .strides = static_cast<int>(c.s),
                               .padding = std::move(padding), .kernel_dilation = static_cast<int>(c.d)});
      const Tensor y = layer(ones({3, c.M, 2}));
      REQUIRE(y.shape().size() == 3);
      CHECK(y.shape()[2] == 2);
      return y.shape()[1];
    };
    CHECK(out_len("SAME") == c.M * c.s);
    CHECK(out_len("VALID") == c.M * c.s + std::max<std::int64_t>(K - c.s, 0));
    CHECK(out_len("CIRCULAR") == c.M * c.s);
    // Pairs pad the dilated input ((M - 1) s + 1) as they are.
    CHECK(out_len(Padding{{2, 1}}) == (c.M - 1) * c.s + 1 + 3 - K + 1);
  }

  // The Flax docstring examples.
  nn::ConvTranspose valid({.features = 4, .kernel_size = {3}, .padding = "VALID"});
  CHECK(valid(ones({1, 8, 3})).shape() == Shape{1, 10, 4});
  CHECK(valid.state_dict().at("kernel").shape() == Shape{3, 3, 4});
  CHECK(valid.state_dict().at("bias").shape() == Shape{4});
  nn::ConvTranspose circular(
      {.features = 4, .kernel_size = {6, 6}, .strides = {2, 2}, .padding = "CIRCULAR", .transpose_kernel = true});
  CHECK(circular(ones({1, 15, 15, 3})).shape() == Shape{1, 30, 30, 4});
  CHECK(circular.state_dict().at("kernel").shape() == Shape{6, 6, 4, 3});
  // tril(ones((3, 3, 4))): the lower triangle over the last two axes.
  V tril;
  for (int k = 0; k < 3; ++k)
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 4; ++j) tril.push_back(j <= i ? 1.0 : 0.0);
  nn::ConvTranspose masked(
      {.features = 4, .kernel_size = {3}, .padding = "VALID", .mask = from_vector(tril, {3, 3, 4})});
  CHECK(masked(ones({1, 8, 3})).shape() == Shape{1, 10, 4});

  // Batch axes: none (added and removed), or several (flattened and restored).
  nn::ConvTranspose up({.features = 5, .kernel_size = {3}, .strides = 2});
  CHECK(up(ones({4, 2})).shape() == Shape{8, 5});
  CHECK(up(ones({2, 3, 4, 2})).shape() == Shape{2, 3, 8, 5});
  // An empty batch, also through the CIRCULAR fold.
  nn::ConvTranspose wrap({.features = 5, .kernel_size = {3}, .strides = 2, .padding = "CIRCULAR"});
  CHECK(wrap(ones({0, 4, 2})).shape() == Shape{0, 8, 5});
  // 3-D, mixed per-dim strides.
  nn::ConvTranspose up3({.features = 2, .kernel_size = {2, 3, 1}, .strides = {1, 2, 3}, .padding = "VALID"});
  CHECK(up3(ones({1, 2, 3, 4, 1})).shape() == Shape{1, 3, 7, 12, 2});
}

TEST_CASE("ConvTranspose default init: lecun_normal with fan_in = prod(kernel_size) * kernel.shape[-2]") {
  // Kernel (3, 3, 64, 32): fan_in 576; with transpose_kernel (3, 3, 32, 64): fan_in 288.
  for (bool transposed : {false, true}) {
    nn::ConvTranspose layer({.features = 32, .kernel_size = {3, 3}, .transpose_kernel = transposed});
    layer.init(ones({1, 2, 2, 64}));
    const V w = layer.state_dict().at("kernel").to_vector();
    double sum_sq = 0;
    for (double v : w) sum_sq += v * v;
    const double expected = 1.0 / (transposed ? 288.0 : 576.0);
    CHECK(sum_sq / static_cast<double>(w.size()) == doctest::Approx(expected).epsilon(0.05));
  }
}

namespace {

// A Conv (no bias, float64) with kernel W, and the ConvTranspose with
// transpose_kernel and the same W: the latter must be the input-VJP of the former.
struct AdjointCase {
  const char* name;
  Shape z_shape;                        // Conv input (N, Z..., F)
  std::vector<int> kernel_size, strides, dilation;
  Padding conv_padding, transpose_padding;
  std::int64_t conv_features;           // C
};

void check_adjoint(const AdjointCase& c) {
  INFO(c.name);
  const std::int64_t F = c.z_shape.back();
  Shape w_shape(c.kernel_size.begin(), c.kernel_size.end());
  w_shape.insert(w_shape.end(), {F, c.conv_features});
  const Tensor W = random64(1, w_shape);
  nn::Conv conv({.features = c.conv_features, .kernel_size = c.kernel_size, .strides = c.strides,
                 .padding = c.conv_padding, .kernel_dilation = c.dilation, .use_bias = false,
                 .param_dtype = DType::Float64, .kernel_init = fixed(W)});
  nn::ConvTranspose convt({.features = F, .kernel_size = c.kernel_size, .strides = c.strides,
                           .padding = c.transpose_padding, .kernel_dilation = c.dilation, .use_bias = false,
                           .param_dtype = DType::Float64, .kernel_init = fixed(W), .transpose_kernel = true});
  Tensor z = random64(2, c.z_shape);
  z.requires_grad_();
  const Tensor out = conv(z);
  const Tensor y = random64(3, out.shape());
  const Tensor vjp = grad({out}, {z}, {y})[0];
  const Tensor back = convt(y);
  REQUIRE(back.shape() == z.shape());
  CHECK(max_abs_diff(back, vjp) < 1e-12);
  // <conv(z), y> = <z, convT(y)>
  const double lhs = sum(mul(out, y)).item(), rhs = sum(mul(z, back)).item();
  CHECK(lhs == doctest::Approx(rhs).epsilon(1e-12));
}

// The transposed-conv pads that make conv_transpose the input-VJP of a conv with
// pads (lo, hi) on an input of size Z: (K - 1 - lo, K - 1 - hi + r), where
// r = (Z + lo + hi - K) mod s are the trailing inputs the strided windows skip.
std::pair<int, int> vjp_pads(int Z, int lo, int hi, int K, int s) {
  return {K - 1 - lo, K - 1 - hi + (Z + lo + hi - K) % s};
}

}  // namespace

TEST_CASE("ConvTranspose with transpose_kernel is the input-VJP of the strided Conv (adjoint identity)") {
  // 1-D: Z = 7, k = 2 dilated by 2 (K = 3), s = 2: VALID windows fit exactly ((7 - 3) % 2 == 0).
  check_adjoint({"1-D VALID", {2, 7, 2}, {2}, {2}, {2}, "VALID", "VALID", 3});
  // 1-D explicit (1, 2): vjp pads (1, 0 + 1).
  const auto p1 = vjp_pads(7, 1, 2, 3, 2);
  CHECK(p1 == std::pair<int, int>{1, 1});
  check_adjoint({"1-D explicit", {2, 7, 2}, {2}, {2}, {2}, Padding{{1, 2}}, Padding{p1}, 3});
  // 2-D: Z = (7, 5), k = (3, 2), dilation (1, 2) (K = (3, 3)), s = (2, 1).
  check_adjoint({"2-D VALID", {2, 7, 5, 3}, {3, 2}, {2, 1}, {1, 2}, "VALID", "VALID", 2});
  // 2-D explicit ((1, 0), (2, 1)), Z = (6, 5), s = (2, 3): vjp pads (1, 2) and (0, 3).
  const auto q0 = vjp_pads(6, 1, 0, 3, 2), q1 = vjp_pads(5, 2, 1, 3, 3);
  CHECK(q0 == std::pair<int, int>{1, 2});
  CHECK(q1 == std::pair<int, int>{0, 3});
  check_adjoint({"2-D explicit", {1, 6, 5, 2}, {3, 2}, {2, 3}, {1, 2}, Padding{{1, 0}, {2, 1}}, Padding{q0, q1}, 3});
  // CIRCULAR: Flax's wrap offsets make ConvTranspose(transpose_kernel) the exact
  // transpose of a CIRCULAR Conv for stride 2 (odd and even kernels), when s | Z.
  check_adjoint({"1-D CIRCULAR", {2, 6, 2}, {2}, {2}, {2}, "CIRCULAR", "CIRCULAR", 3});
  check_adjoint({"2-D CIRCULAR", {1, 6, 4, 2}, {4, 3}, {2, 2}, {1, 1}, "CIRCULAR", "CIRCULAR", 3});
}

TEST_CASE("ConvTranspose gradcheck (float64): inputs, kernel and bias") {
  struct Config {
    const char* name;
    Shape input;
    nn::ConvTransposeOptions options;
  };
  const Tensor mask = from_vector({1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1}, {2, 2, 2, 2}, DType::Float64);
  std::vector<Config> configs;
  configs.push_back({"1-D SAME, stride 2, dilation 2, bias", {2, 4, 2},
                     {.features = 3, .kernel_size = {3}, .strides = 2, .kernel_dilation = 2}});
  configs.push_back({"1-D CIRCULAR, transpose_kernel, stride 3, no batch dim", {4, 2},
                     {.features = 2, .kernel_size = {3}, .strides = 3, .padding = "CIRCULAR",
                      .transpose_kernel = true}});
  configs.push_back({"2-D VALID, strides (2, 1), transpose_kernel, no bias", {1, 3, 3, 2},
                     {.features = 2, .kernel_size = {2, 3}, .strides = {2, 1}, .padding = "VALID", .use_bias = false,
                      .transpose_kernel = true}});
  configs.push_back({"2-D explicit pairs, dilation 2, mask, two batch axes", {2, 1, 3, 3, 2},
                     {.features = 2, .kernel_size = {2, 2}, .strides = 2, .padding = Padding{{1, -1}, {0, 2}},
                      .kernel_dilation = 2, .mask = mask}});
  configs.push_back({"2-D int padding 1, strides (1, 2)", {1, 2, 3, 1},
                     {.features = 2, .kernel_size = {2, 2}, .strides = {1, 2}, .padding = 1}});
  configs.push_back({"3-D CIRCULAR, stride 2", {1, 2, 2, 2, 1},
                     {.features = 2, .kernel_size = {2, 2, 2}, .strides = 2, .padding = "CIRCULAR"}});
  for (auto& config : configs) {
    INFO(config.name);
    config.options.param_dtype = DType::Float64;
    nn::ConvTranspose layer(config.options);
    const Tensor x = random64(7, config.input);
    layer.init(x);
    std::vector<std::string> params{"kernel"};
    if (config.options.use_bias) params.push_back("bias");
    test_support::check_module_gradients(layer, x, params);
  }
}

TEST_CASE("conv_transpose (lax) passes gradgradcheck in lhs and rhs") {
  const Tensor x = random64(11, {1, 3, 2}), w = random64(12, {2, 3, 2});  // (k, F, C): transpose_kernel
  test_support::check_first_and_second_order(
      "conv_transpose 1-D SAME stride 2 transpose_kernel",
      [](const std::vector<Tensor>& in) { return conv_transpose(in[0], in[1], {2}, "SAME", {2}, true); }, {x, w});
}

TEST_CASE("ConvTranspose dtypes: promote_dtype as Conv, the mask multiplies first") {
  nn::ConvTranspose f32({.features = 2, .kernel_size = {2}, .strides = 2});
  CHECK(f32(ones({1, 3, 2})).dtype() == DType::Float32);
  nn::ConvTranspose from_bf16({.features = 2, .kernel_size = {2}, .strides = 2});
  CHECK(from_bf16(ones({1, 3, 2}, DType::BFloat16)).dtype() == DType::Float32);  // bf16 x f32 params
  nn::ConvTranspose f64_mask({.features = 2, .kernel_size = {2}, .mask = ones({2, 2, 2}, DType::Float64)});
  CHECK(f64_mask(ones({1, 3, 2})).dtype() == DType::Float64);  // f32 kernel * f64 mask (x64)
  nn::ConvTranspose forced({.features = 2, .kernel_size = {2}, .dtype = DType::BFloat16});
  CHECK(forced(ones({1, 3, 2})).dtype() == DType::BFloat16);
}

namespace {

struct Net : nn::Module {
  nn::ConvTranspose up;
  explicit Net(nn::ConvTransposeOptions options) : up(std::move(options)) { register_module("up", up); }
  Tensor forward(const Tensor& x) override { return up(x); }
};

}  // namespace

TEST_CASE("ConvTranspose errors: typed, with the module path, raised before any parameter exists") {
  using test_support::error_of;
  // kernel_size makes a 2-d conv, the input has no room for it.
  nn::ConvTranspose two_d({.features = 4, .kernel_size = {3, 3}});
  std::string msg = error_of<ShapeError>([&] { two_d(ones({5, 3})); });
  CHECK(contains(msg, "ConvTranspose, features=4, kernel_size=[3, 3]: input of shape [5, 3] has rank 2, but "
                      "kernel_size [3, 3] makes a 2-d "
                      "convolution, which needs (batch..., 2 spatial dims, features): rank >= 3"));
  CHECK(two_d.named_parameters().empty());

  // Options are checked at construction (one rule for every conv layer).
  msg = error_of<ValueError>([] { nn::ConvTranspose({.features = 4, .kernel_size = {3, 3}, .strides = {1, 2, 3}}); });
  CHECK(contains(msg, "ConvTranspose: strides [1, 2, 3] has 3 entries but kernel_size [3, 3] makes a 2-d "
                      "convolution"));
  msg = error_of<ValueError>([] { nn::ConvTranspose({.features = 4, .kernel_size = {3}, .kernel_dilation = 0}); });
  CHECK(contains(msg, "ConvTranspose: kernel_dilation [0] must be positive"));

  // Padding strings.
  msg = error_of<ValueError>([] { nn::ConvTranspose({.features = 4, .kernel_size = {3}, .padding = "FULL"}); });
  CHECK(contains(msg, "ConvTranspose: padding 'FULL' is not one of the accepted forms: 'SAME', 'VALID', 'CIRCULAR' "
                      "(upper case), 'SAME_LOWER' or lower-case 'same' / 'valid'"));
  msg = error_of<ValueError>([] { nn::ConvTranspose({.features = 4, .kernel_size = {3}, .padding = "REFLECT"}); });
  CHECK(contains(msg, "padding 'REFLECT' is not one of the accepted forms"));
  msg = error_of<ValueError>(
      [] { nn::ConvTranspose({.features = 4, .kernel_size = {3}, .strides = 2, .padding = "same"}); });
  CHECK(contains(msg, "ConvTranspose: padding 'same' is a plain convolution's padding, which lax allows only with "
                      "strides 1 (got strides [2])"));
  msg = error_of<ValueError>(
      [] { nn::ConvTranspose({.features = 4, .kernel_size = {3}, .padding = Padding{{1, 2}, {3, 4}}}); });
  CHECK(contains(msg, "ConvTranspose: Invalid padding format"));
  nn::ConvTranspose too_negative({.features = 4, .kernel_size = {3}, .padding = Padding{{-6, -4}}});
  msg = error_of<ValueError>([&] { too_negative(ones({1, 5, 2})); });
  CHECK(contains(msg, "Negative padding is larger than the size of the corresponding dimension"));

  // Mask: the kernel is (k, F, C) with transpose_kernel.
  Net net({.features = 4, .kernel_size = {3}, .mask = ones({3, 3, 4}), .transpose_kernel = true});
  msg = error_of<ValueError>([&] { net(ones({1, 8, 3})); });
  CHECK(contains(msg, "up (ConvTranspose, features=4, kernel_size=[3]): Mask needs to have the same "
                      "shape as weights. Shapes are: (3, 3, 4), (3, 4, 3)"));
  CHECK(net.named_parameters().empty());

  // The lax op names the kernel layout it expects.
  msg = error_of<ShapeError>([] { conv_transpose(ones({1, 3, 2}), ones({2, 2, 3}), {2}, "SAME", {}, true); });
  CHECK(contains(msg, "conv_transpose: rhs [2, 2, 3] must be (k..., F, C) (transpose_kernel) with C = 2, the "
                      "channels of lhs [1, 3, 2]"));

  msg = error_of<ValueError>([] { nn::ConvTranspose({.features = 4, .kernel_size = {}}); });
  CHECK(contains(msg, "ConvTranspose: kernel_size is empty"));
  msg = error_of<ValueError>([] { nn::ConvTranspose({.features = 0, .kernel_size = {3}}); });
  CHECK(contains(msg, "ConvTranspose: features must be positive, got 0"));
}

TEST_CASE("ConvTranspose matches torch.nn.functional.conv_transpose2d (VALID, transpose_kernel; needs torch)") {
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
    MESSAGE("skipped: /usr/bin/python3 cannot import torch");
    return;
  }
  // conv_transpose2d is the input-gradient of conv2d with weight (C_in, F, kH, kW),
  // Flax's transpose_kernel form with kernel[h, w, f, c] = weight[c, f, h, w].
  const Tensor x = random64(21, {2, 3, 4, 3}), kernel = random64(22, {3, 2, 2, 3});
  nn::ConvTranspose layer({.features = 2, .kernel_size = {3, 2}, .strides = {2, 3}, .padding = "VALID",
                           .kernel_dilation = {1, 2}, .use_bias = false, .param_dtype = DType::Float64,
                           .kernel_init = fixed(kernel), .transpose_kernel = true});
  const Tensor y = layer(x);
  auto list = [](const Tensor& t) { return fmt::format("[{}]", fmt::join(t.to_vector(), ", ")); };
  const std::string script = fmt::format(R"(import sys, torch
x = torch.tensor({}, dtype=torch.float64).reshape({}, {}, {}, {}).permute(0, 3, 1, 2)
k = torch.tensor({}, dtype=torch.float64).reshape({}, {}, {}, {}).permute(3, 2, 0, 1)
y = torch.tensor({}, dtype=torch.float64).reshape({}, {}, {}, {}).permute(0, 3, 1, 2)
t = torch.nn.functional.conv_transpose2d(x, k, stride=(2, 3), dilation=(1, 2))
sys.exit(0 if t.shape == y.shape and torch.allclose(t, y, rtol=0, atol=1e-12) else 1)
)",
                                         list(x), x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3],
                                         list(kernel), kernel.shape()[0], kernel.shape()[1], kernel.shape()[2],
                                         kernel.shape()[3], list(y), y.shape()[0], y.shape()[1], y.shape()[2],
                                         y.shape()[3]);
  io_test::TempDir dir;
  CHECK(io_test::run_python(dir, script));
}

// ---- The fast path (the input-VJP of the strided conv) against lax's own form.

namespace {

// lax.conv_transpose as lax runs it: conv_general_dilated on the input dilated by
// the strides, with the kernel flipped and I/O-swapped under transpose_kernel. It
// multiplies the zeros of the dilation; conv_transpose must equal it.
Tensor dilated_reference(const Tensor& x, const Tensor& w, const std::vector<std::int64_t>& s,
                         const Padding& lax_padding, const std::vector<std::int64_t>& d, bool transpose_kernel,
                         Precision precision = Precision::Default) {
  Tensor kernel = w;
  if (transpose_kernel) {
    for (std::int64_t axis = 0; axis < w.dim() - 2; ++axis)
      kernel = slice(kernel, axis, std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min(),
                     -1);
    kernel = swapaxes(kernel, -2, -1);
  }
  return conv_general_dilated(x, kernel, {}, lax_padding, s, d, 1, precision);
}

// jax's _conv_transpose_padding: the dilated input's pads for 'SAME' / 'VALID'.
Padding transposed_pads(const std::string& name, const Shape& k, const std::vector<std::int64_t>& s,
                        const std::vector<std::int64_t>& d) {
  std::vector<std::pair<int, int>> pads;
  for (std::size_t j = 0; j < k.size(); ++j) {
    const int K = static_cast<int>((k[j] - 1) * d[j] + 1), sj = static_cast<int>(s[j]);
    const int total = name == "SAME" ? K + sj - 2 : K + sj - 2 + std::max(K - sj, 0);
    const int front = name == "SAME" ? (sj > K - 1 ? K - 1 : (total + 1) / 2) : K - 1;
    pads.emplace_back(front, total - front);
  }
  return Padding(pads);
}

struct TransposeCase {
  Shape x_shape, w_shape;  // (N, M..., C) and (k..., C, F), or (k..., F, C) with transpose_kernel
  std::vector<std::int64_t> s, d;
  Padding padding;         // what conv_transpose gets
  Padding lax_padding;     // what the reference gets
  bool transpose_kernel = false;
  std::string text;
};

// A random 1-, 2- or 3-d case: empty spatial dims now and then, strides 1..3,
// dilations 1..2, and SAME, VALID, explicit pairs (negative ones too) or, with
// strides 1, a plain conv's padding string.
TransposeCase random_case(std::mt19937& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  TransposeCase c;
  const int n = pick(1, 3);
  const std::int64_t C = pick(1, 3), F = pick(1, 3);
  c.transpose_kernel = pick(0, 1) == 1;
  c.x_shape = {pick(1, 2)};
  Shape k;
  for (int j = 0; j < n; ++j) {
    c.x_shape.push_back(pick(0, 15) == 0 ? 0 : pick(1, n == 3 ? 3 : 5));
    k.push_back(pick(1, 3));
    c.s.push_back(pick(1, 3));
    c.d.push_back(pick(1, 2));
  }
  c.x_shape.push_back(C);
  c.w_shape = k;
  c.w_shape.push_back(c.transpose_kernel ? F : C);
  c.w_shape.push_back(c.transpose_kernel ? C : F);
  const bool unit_strides = std::all_of(c.s.begin(), c.s.end(), [](auto v) { return v == 1; });
  const int form = pick(0, 3);
  if (form == 0 || form == 1) {
    c.padding = form == 0 ? "SAME" : "VALID";
    c.lax_padding = transposed_pads(c.padding.name(), k, c.s, c.d);
  } else if (form == 3 && unit_strides) {
    const char* names[] = {"same", "SAME_LOWER", "valid"};
    c.padding = c.lax_padding = names[pick(0, 2)];
  } else {
    std::vector<std::pair<int, int>> pairs;
    for (int j = 0; j < n; ++j) {
      const int K = static_cast<int>((k[j] - 1) * c.d[j] + 1);
      pairs.emplace_back(pick(-2, K + 1), pick(-2, K + 1));
    }
    c.padding = c.lax_padding = Padding(pairs);
  }
  c.text = fmt::format("x {} w {} strides [{}] dilation [{}] padding {} transpose_kernel {}", shape_str(c.x_shape),
                       shape_str(c.w_shape), fmt::join(c.s, ", "), fmt::join(c.d, ", "), c.padding.to_string(),
                       c.transpose_kernel);
  return c;
}

// conv_transpose equals the reference in value and in the gradients of both operands.
void check_against_reference(const TransposeCase& c, DType dtype, double tol, std::uint64_t seed) {
  INFO(c.text);
  const Tensor x = random_normal(make_key(seed), c.x_shape, dtype).requires_grad_();
  const Tensor w = random_normal(make_key(seed + 1), c.w_shape, dtype).requires_grad_();
  Tensor ref;
  try {
    ref = dilated_reference(x, w, c.s, c.lax_padding, c.d, c.transpose_kernel);
  } catch (const ValueError&) {  // negative pads that crop more than the dilated input
    CHECK_THROWS_AS(conv_transpose(x, w, c.s, c.padding, c.d, c.transpose_kernel), ValueError);
    return;
  }
  const Tensor y = conv_transpose(x, w, c.s, c.padding, c.d, c.transpose_kernel);
  REQUIRE(y.shape() == ref.shape());
  CHECK(y.dtype() == dtype);
  CHECK(max_abs_diff(y, ref) <= tol);
  const Tensor cot = random_normal(make_key(seed + 2), ref.shape(), dtype);
  const auto fast = grad({y}, {x, w}, {cot}), slow = grad({ref}, {x, w}, {cot});
  CHECK(max_abs_diff(fast[0], slow[0]) <= tol);
  CHECK(max_abs_diff(fast[1], slow[1]) <= tol);
}

// Flax's CIRCULAR fold of a VALID result y (N, O..., F): zero-pad each spatial dim
// to an odd number of periods P (the odd unit in front, behind with
// transpose_kernel) and sum the periods.
Tensor circular_fold(Tensor y, const Shape& periods, bool transpose_kernel) {
  for (std::size_t j = 0; j < periods.size(); ++j) {
    const auto axis = static_cast<std::int64_t>(j + 1);
    const std::int64_t P = periods[j], O = y.size(axis);
    const std::int64_t diff = ((P - O) % (2 * P) + 2 * P) % (2 * P);
    const std::int64_t front = transpose_kernel ? diff / 2 : (diff + 1) / 2;
    PadPairs pads(static_cast<std::size_t>(y.dim()), {0, 0});
    pads[j + 1] = {front, diff - front};
    y = pad(y, pads);
    Shape split = y.shape();
    split[j + 1] = P;
    split.insert(split.begin() + axis, y.size(axis) / P);
    y = sum(reshape(y, split), {axis});
  }
  return y;
}

}  // namespace

TEST_CASE("conv_transpose equals lax's lhs-dilated form on random 1-/2-/3-d configs (values and gradients)") {
  std::mt19937 rng(20261126);
  for (int i = 0; i < 150; ++i) check_against_reference(random_case(rng), DType::Float64, 1e-11, 1000 + 3 * i);
  for (int i = 0; i < 60; ++i) check_against_reference(random_case(rng), DType::Float32, 2e-4, 5000 + 3 * i);
}

TEST_CASE("conv_transpose degenerate sizes: an empty input or an empty output, and an empty batch") {
  // M = 0 padded out to O = 6 (all zeros); M = 2 cropped to O = 0; stride 2 with
  // an output emptied by negative pads.
  const std::vector<TransposeCase> cases{
      {{1, 0, 2}, {1, 2, 3}, {1}, {1}, Padding{{3, 3}}, Padding{{3, 3}}, false, "M = 0"},
      {{1, 2, 1}, {3, 1, 2}, {1}, {1}, Padding{{-1, -1}}, Padding{{-1, -1}}, false, "O = 0"},
      {{2, 2, 2}, {2, 1, 2}, {2}, {2}, Padding{{-2, -1}}, Padding{{-2, -1}}, true, "O = 0, stride 2"},
      {{0, 3, 2, 2}, {3, 2, 2, 4}, {2, 1}, {1, 2}, "SAME", transposed_pads("SAME", {3, 2}, {2, 1}, {1, 2}), false,
       "empty batch"}};
  for (std::size_t i = 0; i < cases.size(); ++i) check_against_reference(cases[i], DType::Float64, 1e-12, 77 + i);
  const Tensor empty_out = conv_transpose(ones({1, 2, 1}, DType::Float64), ones({3, 1, 2}, DType::Float64), {1},
                                          Padding{{-1, -1}});
  CHECK(empty_out.shape() == Shape{1, 0, 2});
  const Tensor zeros_out = conv_transpose(ones({1, 0, 2}, DType::Float64), ones({1, 2, 3}, DType::Float64), {1},
                                          Padding{{3, 3}});
  CHECK(zeros_out.shape() == Shape{1, 6, 3});
  CHECK(zeros_out.to_vector() == V(18, 0.0));

  // The layer with an empty batch: shapes, and a kernel gradient of zeros.
  nn::ConvTranspose up({.features = 4, .kernel_size = {3, 3}, .strides = 2, .param_dtype = DType::Float64});
  const Tensor x = zeros({0, 3, 2, 2}, DType::Float64).requires_grad_();
  up.init(x);
  const Tensor y = up(x);
  CHECK(y.shape() == Shape{0, 6, 4, 4});
  sum(y).backward();
  CHECK(x.grad().shape() == Shape{0, 3, 2, 2});
}

TEST_CASE("conv_transpose Precision::Highest (float32 accumulated in float64) matches the float64 reference") {
  const Tensor x = random_normal(make_key(31), {2, 5, 4, 6}), w = random_normal(make_key(32), {3, 3, 6, 5});
  const Tensor y = conv_transpose(x, w, {2, 2}, "SAME", {1, 2}, false, Precision::Highest);
  CHECK(y.dtype() == DType::Float32);
  const Tensor ref = dilated_reference(cast(x, DType::Float64), cast(w, DType::Float64), {2, 2},
                                       transposed_pads("SAME", {3, 3}, {2, 2}, {1, 2}), {1, 2}, false);
  CHECK(max_abs_diff(cast(y, DType::Float64), ref) <= 1e-5);
}

TEST_CASE("ConvTranspose CIRCULAR equals the folded VALID reference on random configs (values, input gradient)") {
  std::mt19937 rng(7);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int i = 0; i < 40; ++i) {
    const int n = pick(1, 2);
    const bool tk = pick(0, 1) == 1;
    const std::int64_t C = pick(1, 2), F = pick(1, 3);
    Shape x_shape{2}, k, periods;
    std::vector<std::int64_t> s, d;
    for (int j = 0; j < n; ++j) {
      x_shape.push_back(pick(1, 4));
      k.push_back(pick(1, 4));
      s.push_back(pick(1, 3));
      d.push_back(pick(1, 2));
      periods.push_back(x_shape.back() * s.back());
    }
    x_shape.push_back(C);
    Shape w_shape = k;
    w_shape.push_back(tk ? F : C);
    w_shape.push_back(tk ? C : F);
    INFO(fmt::format("x {} w {} strides [{}] dilation [{}] transpose_kernel {}", shape_str(x_shape),
                     shape_str(w_shape), fmt::join(s, ", "), fmt::join(d, ", "), tk));
    const Tensor x = random64(400 + 2 * i, x_shape).requires_grad_(), w = random64(401 + 2 * i, w_shape);
    const std::vector<int> kernel_size(k.begin(), k.end()), strides(s.begin(), s.end()), dilation(d.begin(), d.end());
    nn::ConvTranspose layer({.features = F, .kernel_size = kernel_size, .strides = strides,
                             .padding = "CIRCULAR", .kernel_dilation = dilation, .use_bias = false,
                             .param_dtype = DType::Float64, .kernel_init = fixed(w), .transpose_kernel = tk});
    const Tensor y = layer(x);
    const Tensor ref = circular_fold(dilated_reference(x, w, s, transposed_pads("VALID", k, s, d), d, tk), periods, tk);
    REQUIRE(y.shape() == ref.shape());
    CHECK(max_abs_diff(y, ref) <= 1e-11);
    const Tensor cot = random64(900 + i, ref.shape());
    CHECK(max_abs_diff(grad({y}, {x}, {cot})[0], grad({ref}, {x}, {cot})[0]) <= 1e-11);
  }
}

TEST_CASE("conv_general_dilated_input_vjp is the lhs gradient of conv_general_dilated, and checks its arguments") {
  // Strides, a negative pad, rhs dilation and two feature groups.
  const Padding pads{{1, 0}, {2, -1}};
  const Tensor x = random64(51, {2, 7, 5, 4}).requires_grad_(), w = random64(52, {3, 2, 2, 6});
  const Tensor y = conv_general_dilated(x, w, {2, 1}, pads, {}, {1, 2}, 2);
  const Tensor g = random64(53, y.shape());
  const Tensor vjp = conv_general_dilated_input_vjp(g, w, x.shape(), {2, 1}, pads, {}, {1, 2}, 2);
  CHECK(max_abs_diff(vjp, grad({y}, {x}, {g})[0]) <= 1e-12);
  test_support::check_first_and_second_order(
      "conv_general_dilated_input_vjp",
      [](const std::vector<Tensor>& in) {
        return conv_general_dilated_input_vjp(in[0], in[1], {1, 5, 2}, {2}, "SAME", {}, {2});
      },
      {random64(54, {1, 3, 3}), random64(55, {2, 2, 3})});

  using test_support::error_of;
  std::string msg =
      error_of<ShapeError>([&] { conv_general_dilated_input_vjp(g, w, {2, 7, 6, 4}, {2, 1}, pads, {}, {1, 2}, 2); });
  CHECK(contains(msg, "conv_general_dilated_input_vjp: g has shape [2, 3, 4, 6] but the convolution of an input "
                      "of shape [2, 7, 6, 4] has output shape [2, 3, 5, 6]"));
  msg = error_of<DTypeError>([&] { conv_general_dilated_input_vjp(cast(g, DType::Float32), w, x.shape(), {2}, pads); });
  CHECK(contains(msg, "conv_general_dilated_input_vjp: g [2, 3, 4, 6] is float32 but rhs [3, 2, 2, 6] is float64"));
  msg = error_of<DTypeError>([] { conv_transpose(ones({1, 3, 2}), ones({2, 2, 3}, DType::Float64), {2}, "SAME"); });
  CHECK(contains(msg, "conv_transpose: lhs [1, 3, 2] is float32 but rhs [2, 2, 3] is float64"));
}
