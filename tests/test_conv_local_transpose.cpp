// nn::ConvLocalTranspose and conv_local_transpose: a per-position scatter reference
// written plainly, the adjoint identity with ConvLocal, output shapes against
// nn::ConvTranspose for every padding form, gradcheck / gradgradcheck in float64,
// the float32 fast path, and the typed errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using test_support::error_of;

namespace {

using V = std::vector<double>;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

nn::Initializer fixed(const Tensor& t) {
  const V values = t.to_vector();
  return [values](Key, const Shape& shape, DType dtype) { return from_vector(values, shape, dtype); };
}

Tensor random64(std::uint64_t seed, const Shape& shape) { return random_normal(make_key(seed), shape, DType::Float64); }

using test_support::max_abs_diff;

double dot(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const V x = a.to_vector(), y = b.to_vector();
  double s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}

// One configuration: input (N, M..., C), the layer's options (features F).
struct Config {
  const char* name;
  Shape input;
  Shape kernel_size;
  std::vector<std::int64_t> strides, dilation;
  Padding padding;  // SAME, VALID, CIRCULAR or one (lo, hi) pair per dim
  std::int64_t features;
};

std::int64_t extent(const Config& c, std::size_t j) { return (c.kernel_size[j] - 1) * c.dilation[j] + 1; }

// The output size of every padding form, written out (the header's table).
Shape output_spatial(const Config& c) {
  Shape T;
  for (std::size_t j = 0; j < c.kernel_size.size(); ++j) {
    const std::int64_t M = c.input[j + 1], s = c.strides[j], K = extent(c, j);
    if (!c.padding.is_string()) {
      const auto [lo, hi] = c.padding.pairs()[j];
      T.push_back((M - 1) * s + 2 + lo + hi - K);
    } else if (c.padding.name() == "VALID") {
      T.push_back(M * s + std::max<std::int64_t>(K - s, 0));
    } else {
      T.push_back(M * s);
    }
  }
  return T;
}

// The padding of the ConvLocal that the transpose transposes, as nn::ConvLocal takes it.
Padding local_padding(const Config& c) {
  if (c.padding.is_string()) return c.padding;
  std::vector<std::pair<int, int>> pads;
  for (std::size_t j = 0; j < c.kernel_size.size(); ++j) {
    const auto [lo, hi] = c.padding.pairs()[j];
    const int K = static_cast<int>(extent(c, j));
    pads.emplace_back(K - 1 - lo, K - 1 - hi);
  }
  return Padding(pads);
}

// The per-position scatter, plainly: input position o, channel c sends
// x[b, o, c] * kernel[o, f*S + r(kappa), c] to the output element the ConvLocal's
// window at o reads at offset kappa, q = o*s + kappa*d - lo (wrapped for CIRCULAR,
// dropped where it reads padding).
Tensor scatter_reference(const Config& cfg, const Tensor& x, const Tensor& kernel) {
  const std::size_t n = cfg.kernel_size.size();
  const Shape T = output_spatial(cfg);
  const std::int64_t N = cfg.input[0], C = cfg.input.back(), F = cfg.features;
  const std::int64_t S = numel(cfg.kernel_size);
  std::vector<std::int64_t> lo(n);
  const bool wrap = cfg.padding.is_string() && cfg.padding.name() == "CIRCULAR";
  for (std::size_t j = 0; j < n; ++j) {
    const std::int64_t M = cfg.input[j + 1], s = cfg.strides[j], K = extent(cfg, j);
    if (!cfg.padding.is_string()) lo[j] = K - 1 - cfg.padding.pairs()[j].first;
    else if (cfg.padding.name() == "SAME") lo[j] = std::max<std::int64_t>((M - 1) * s + K - T[j], 0) / 2;
    else if (wrap) lo[j] = (K - 1) / 2;
    else lo[j] = 0;
  }
  const Shape M(cfg.input.begin() + 1, cfg.input.end() - 1);
  const std::int64_t positions = numel(M), outputs = numel(T);
  const V xv = x.to_vector(), kv = kernel.to_vector();
  V out(static_cast<std::size_t>(N * outputs * F), 0.0);
  for (std::int64_t b = 0; b < N; ++b)
    for (std::int64_t o = 0; o < positions; ++o) {
      std::vector<std::int64_t> oi(n);
      for (std::int64_t rest = o, j = static_cast<std::int64_t>(n) - 1; j >= 0; --j) {
        oi[j] = rest % M[j];
        rest /= M[j];
      }
      for (std::int64_t r = 0; r < S; ++r) {
        std::int64_t q = 0;
        bool inside = true;
        // kappa from r (row-major), q flattened row-major over T.
        std::vector<std::int64_t> kappa(n);
        for (std::int64_t rest = r, j = static_cast<std::int64_t>(n) - 1; j >= 0; --j) {
          kappa[j] = rest % cfg.kernel_size[j];
          rest /= cfg.kernel_size[j];
        }
        for (std::size_t j = 0; j < n; ++j) {
          std::int64_t qj = oi[j] * cfg.strides[j] + kappa[j] * cfg.dilation[j] - lo[j];
          if (wrap) qj = ((qj % T[j]) + T[j]) % T[j];
          if (qj < 0 || qj >= T[j]) inside = false;
          q = q * T[j] + qj;
        }
        if (!inside) continue;
        for (std::int64_t c = 0; c < C; ++c)
          for (std::int64_t f = 0; f < F; ++f)
            out[static_cast<std::size_t>((b * outputs + q) * F + f)] +=
                xv[static_cast<std::size_t>((b * positions + o) * C + c)] *
                kv[static_cast<std::size_t>((o * S * F + f * S + r) * C + c)];
      }
    }
  Shape shape{N};
  shape.insert(shape.end(), T.begin(), T.end());
  shape.push_back(F);
  return from_vector(out, shape, DType::Float64);
}

nn::ConvLocalTransposeOptions options_of(const Config& c, const Tensor& kernel, bool use_bias = false) {
  std::vector<std::int64_t> s(c.strides), d(c.dilation);
  return {.features = c.features, .kernel_size = c.kernel_size, .strides = s, .padding = c.padding,
          .kernel_dilation = d, .use_bias = use_bias, .param_dtype = DType::Float64, .kernel_init = fixed(kernel)};
}

Shape kernel_shape_of(const Config& c) {
  Shape k(c.input.begin() + 1, c.input.end() - 1);
  k.push_back(numel(c.kernel_size) * c.features);
  k.push_back(c.input.back());
  return k;
}

std::vector<Config> configs() {
  return {
      {"1-D SAME, stride 2, k 3", {2, 4, 3}, {3}, {2}, {1}, "SAME", 2},
      {"1-D VALID, stride 2, k 2 dilated by 2 (K 3 > s)", {2, 3, 2}, {2}, {2}, {2}, "VALID", 3},
      {"1-D VALID, k 1 < stride 3", {1, 3, 2}, {1}, {3}, {1}, "VALID", 2},
      {"1-D CIRCULAR, stride 2, k 3", {2, 4, 2}, {3}, {2}, {1}, "CIRCULAR", 2},
      {"1-D CIRCULAR, stride 1, even k 4, dilation 2", {1, 5, 1}, {4}, {1}, {2}, "CIRCULAR", 2},
      {"1-D explicit (1, 0)", {2, 3, 2}, {3}, {2}, {1}, Padding{{1, 0}}, 2},
      {"2-D SAME, strides (2, 1), k (3, 2)", {2, 3, 4, 2}, {3, 2}, {2, 1}, {1, 1}, "SAME", 3},
      {"2-D VALID, stride 2, dilation (1, 2)", {1, 3, 2, 2}, {2, 2}, {2, 2}, {1, 2}, "VALID", 2},
      {"2-D CIRCULAR, stride 2", {1, 3, 3, 2}, {3, 2}, {2, 2}, {1, 1}, "CIRCULAR", 2},
      {"2-D explicit ((1, 0), (2, -1))", {2, 3, 3, 1}, {3, 3}, {2, 1}, {1, 1}, Padding{{1, 0}, {2, -1}}, 2},
      {"3-D SAME, stride 2", {1, 2, 2, 2, 2}, {2, 2, 2}, {2, 2, 2}, {1, 1, 1}, "SAME", 2},
  };
}

}  // namespace

TEST_CASE("ConvLocalTranspose equals the per-position scatter reference for every padding form (float64)") {
  std::uint64_t seed = 100;
  for (const Config& c : configs()) {
    INFO(c.name);
    const Tensor x = random64(++seed, c.input), kernel = random64(++seed, kernel_shape_of(c));
    nn::ConvLocalTranspose layer(options_of(c, kernel));
    const Tensor y = layer(x);
    const Tensor expected = scatter_reference(c, x, kernel);
    CHECK(y.shape() == expected.shape());
    CHECK(max_abs_diff(y, expected) < 1e-12);
    // The reference is not trivially zero.
    CHECK(dot(expected, expected) > 1e-3);
    // The lax-level op computes the same for the lax paddings.
    if (!(c.padding.is_string() && c.padding.name() == "CIRCULAR")) {
      const Tensor lax = conv_local_transpose(x, kernel, c.kernel_size, c.strides, c.padding, c.dilation);
      CHECK(max_abs_diff(lax, expected) < 1e-12);
    }
  }
}

TEST_CASE("ConvLocalTranspose: a hand-computed 1-D case") {
  // x = [1, 2] (M = 2, C = 1), k = 2, stride 2, VALID, F = 1: T = 2*2 + max(2 - 2, 0) = 4.
  // The ConvLocal on T = 4 reads window [0, 1] at o = 0 and [2, 3] at o = 1, so
  // y = [1 * w0[0], 1 * w0[1], 2 * w1[0], 2 * w1[1]] with kernel (2, 2, 1) = [[3, 5], [7, 11]].
  const Tensor kernel = from_vector({3, 5, 7, 11}, {2, 2, 1}, DType::Float64);
  nn::ConvLocalTranspose layer({.features = 1, .kernel_size = 2, .strides = 2, .padding = "VALID",
                                .use_bias = false, .param_dtype = DType::Float64, .kernel_init = fixed(kernel)});
  CHECK(layer(from_vector({1, 2}, {1, 2, 1}, DType::Float64)).to_vector() == V{3, 5, 14, 22});
  // Stride 1, k = 2, VALID: T = 3; position 0 writes y[0..1], position 1 writes y[1..2], overlap adds.
  nn::ConvLocalTranspose overlap({.features = 1, .kernel_size = 2, .strides = 1, .padding = "VALID",
                                  .use_bias = false, .param_dtype = DType::Float64, .kernel_init = fixed(kernel)});
  CHECK(overlap(from_vector({1, 2}, {1, 2, 1}, DType::Float64)).to_vector() == V{3, 5 + 14, 22});
  // With a bias of the output's shape (T, F) = (3, 1).
  nn::ConvLocalTranspose biased({.features = 1, .kernel_size = 2, .strides = 1, .padding = "VALID",
                                 .param_dtype = DType::Float64, .kernel_init = fixed(kernel),
                                 .bias_init = fixed(from_vector({100, 200, 300}, {3, 1}, DType::Float64))});
  CHECK(biased(from_vector({1, 2}, {2, 1}, DType::Float64)).to_vector() == V{103, 219, 322});
  CHECK(biased.state_dict().at("bias").shape() == Shape{3, 1});
}

TEST_CASE("ConvLocalTranspose is the adjoint of ConvLocal: <ConvLocal(z), x> = <z, ConvLocalTranspose(x)>") {
  std::uint64_t seed = 300;
  for (const Config& c : configs()) {
    INFO(c.name);
    const Tensor x = random64(++seed, c.input), kernel = random64(++seed, kernel_shape_of(c));
    nn::ConvLocalTranspose transpose(options_of(c, kernel));
    Shape z_shape{c.input[0]};
    const Shape T = output_spatial(c);
    z_shape.insert(z_shape.end(), T.begin(), T.end());
    z_shape.push_back(c.features);
    const Tensor z = random64(++seed, z_shape);
    std::vector<std::int64_t> s(c.strides), d(c.dilation);
    nn::ConvLocal local({.features = c.input.back(), .kernel_size = c.kernel_size, .strides = s,
                         .padding = local_padding(c), .kernel_dilation = d, .use_bias = false,
                         .param_dtype = DType::Float64, .kernel_init = fixed(kernel)});
    const Tensor lz = local(z);
    REQUIRE(lz.shape() == x.shape());
    const double lhs = dot(lz, x), rhs = dot(z, transpose(x));
    CHECK(std::abs(lhs - rhs) < 1e-10 * (1 + std::abs(lhs)));
    CHECK(std::abs(lhs) > 1e-6);
  }
}

TEST_CASE("ConvLocalTranspose output shapes equal nn::ConvTranspose's for every padding form") {
  struct Case {
    Shape input;
    Shape kernel_size;
    std::int64_t stride, dilation;
    Padding padding;
  };
  const std::vector<Case> cases{
      {{2, 5, 3}, {3}, 2, 1, "SAME"},        {{2, 5, 3}, {3}, 2, 1, "VALID"},
      {{2, 5, 3}, {1}, 3, 1, "VALID"},       {{2, 5, 3}, {3}, 2, 2, "CIRCULAR"},
      {{2, 5, 3}, {3}, 2, 1, 1},             {{2, 5, 3}, {3}, 2, 1, Padding{{2, 0}}},
      {{1, 4, 3, 2}, {3, 2}, 2, 1, "SAME"},  {{1, 4, 3, 2}, {3, 2}, 3, 2, "VALID"},
      {{1, 4, 3, 2}, {2, 2}, 2, 1, "CIRCULAR"}, {{1, 4, 3, 2}, {3, 2}, 2, 1, Padding{{1, 2}, {0, -1}}},
      {{3, 4, 3, 2}, {2, 2}, 1, 1, 0},       {{2, 2, 2, 2, 1}, {2, 2, 2}, 2, 1, "SAME"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.padding.to_string());
    CAPTURE(shape_str(c.input));
    const std::int64_t F = 4;
    nn::ConvTranspose reference({.features = F, .kernel_size = c.kernel_size, .strides = static_cast<int>(c.stride),
                                 .padding = c.padding, .kernel_dilation = static_cast<int>(c.dilation)});
    nn::ConvLocalTranspose layer({.features = F, .kernel_size = c.kernel_size,
                                  .strides = static_cast<int>(c.stride), .padding = c.padding,
                                  .kernel_dilation = static_cast<int>(c.dilation)});
    const Tensor x = random_normal(make_key(5), c.input);
    const Tensor y = layer(x);
    CHECK(y.shape() == reference(x).shape());
    Shape kernel(c.input.begin() + 1, c.input.end() - 1);
    kernel.insert(kernel.end(), {numel(c.kernel_size) * F, c.input.back()});
    CHECK(layer.state_dict().at("kernel").shape() == kernel);
    const Shape bias(y.shape().begin() + 1, y.shape().end());
    CHECK(layer.state_dict().at("bias").shape() == bias);
  }
  // Batch axes: none, or several, as every conv layer.
  nn::ConvLocalTranspose layer({.features = 2, .kernel_size = {2}, .strides = 2});
  CHECK(layer(ones({3, 4})).shape() == Shape{6, 2});
  nn::ConvLocalTranspose several({.features = 2, .kernel_size = {2}, .strides = 2});
  CHECK(several(ones({2, 3, 3, 4})).shape() == Shape{2, 3, 6, 2});
}

TEST_CASE("ConvLocalTranspose gradcheck and gradgradcheck (float64): input, kernel and bias") {
  const std::vector<Config> small{
      {"1-D SAME stride 2", {2, 3, 2}, {3}, {2}, {1}, "SAME", 2},
      {"1-D CIRCULAR stride 2", {1, 3, 2}, {2}, {2}, {1}, "CIRCULAR", 2},
      {"2-D VALID dilation", {1, 2, 3, 2}, {2, 2}, {1, 2}, {2, 1}, "VALID", 2},
      {"2-D explicit", {1, 2, 2, 1}, {2, 2}, {2, 1}, {1, 1}, Padding{{1, 0}, {0, 1}}, 2},
  };
  std::uint64_t seed = 500;
  for (const Config& c : small) {
    INFO(c.name);
    const Tensor x = random64(++seed, c.input), kernel = random64(++seed, kernel_shape_of(c));
    nn::ConvLocalTranspose layer(options_of(c, kernel, true));
    layer.init(x);
    const Tensor bias = random64(++seed, layer.state_dict().at("bias").shape());
    // Through the layer: input, kernel and bias, first and second order.
    test_support::check_first_and_second_order(
        c.name,
        [&layer](const std::vector<Tensor>& in) {
          return layer.functional_call({{"kernel", in[1]}, {"bias", in[2]}}, in[0]);
        },
        {x, kernel, bias});
    if (c.padding.is_string() && c.padding.name() == "CIRCULAR") continue;  // the lax op takes lax paddings
    test_support::check_first_and_second_order(
        c.name,
        [c](const std::vector<Tensor>& in) {
          return conv_local_transpose(in[0], in[1], c.kernel_size, c.strides, c.padding, c.dilation);
        },
        {x, kernel});
  }
}

TEST_CASE("ConvLocalTranspose float32 (fast kernels) matches float64 and the mask multiplies the kernel") {
  const Config c{"2-D SAME stride 2", {2, 4, 5, 3}, {3, 3}, {2, 2}, {1, 1}, "SAME", 4};
  const Tensor x = random64(700, c.input), kernel = random64(701, kernel_shape_of(c));
  const Tensor expected = scatter_reference(c, x, kernel);
  const Tensor y32 =
      conv_local_transpose(cast(x, DType::Float32), cast(kernel, DType::Float32), c.kernel_size, c.strides, "SAME");
  CHECK(y32.dtype() == DType::Float32);
  CHECK(max_abs_diff(cast(y32, DType::Float64), expected) < 1e-4);

  // A mask zeroing every other kernel entry equals the reference on the masked kernel.
  V m(static_cast<std::size_t>(kernel.numel()));
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<double>(i % 2);
  const Tensor mask = from_vector(m, kernel.shape(), DType::Float64);
  auto options = options_of(c, kernel);
  options.mask = mask;
  nn::ConvLocalTranspose masked(options);
  CHECK(max_abs_diff(masked(x), scatter_reference(c, x, mul(kernel, mask))) < 1e-12);
}

TEST_CASE("ConvLocalTranspose errors: typed, naming the layer, the shapes and the options") {
  // Construction-time option checks (as every conv layer).
  CHECK(error_of<ValueError>([] { nn::ConvLocalTranspose({.features = 0, .kernel_size = {3}}); }) ==
        "ConvLocalTranspose: features must be positive, got 0");
  CHECK(contains(error_of<ValueError>([] { nn::ConvLocalTranspose({.features = 2, .kernel_size = {}}); }),
                 "ConvLocalTranspose: kernel_size is empty"));
  CHECK(contains(error_of<ValueError>(
                     [] { nn::ConvLocalTranspose({.features = 2, .kernel_size = {3, 3}, .strides = {1, 2, 3}}); }),
                 "ConvLocalTranspose: strides [1, 2, 3] has 3 entries but kernel_size [3, 3] makes a 2-d convolution"));
  CHECK(contains(error_of<ValueError>(
                     [] { nn::ConvLocalTranspose({.features = 2, .kernel_size = {3}, .kernel_dilation = 0}); }),
                 "ConvLocalTranspose: kernel_dilation [0] must be positive"));
  for (const char* p : {"REFLECT", "same", "SAME_LOWER", "CAUSAL", "FULL"}) {
    CAPTURE(p);
    CHECK(contains(error_of<ValueError>([p] { nn::ConvLocalTranspose({.features = 2, .kernel_size = {3}, .padding = p}); }),
                   "ConvLocalTranspose: padding '" + std::string(p) + "' is not one of the accepted forms"));
  }
  CHECK(contains(error_of<ValueError>([] {
                   nn::ConvLocalTranspose({.features = 2, .kernel_size = {3}, .padding = Padding{{1, 2}, {3, 4}}});
                 }),
                 "ConvLocalTranspose: Invalid padding format"));

  // At the first call: the input's rank, the mask's shape; no parameter is created.
  nn::ConvLocalTranspose two_d({.features = 2, .kernel_size = {3, 3}});
  CHECK(contains(error_of<ShapeError>([&] { two_d(ones({5, 3})); }), "input of shape [5, 3] has rank 2"));
  CHECK(two_d.named_parameters().empty());
  nn::ConvLocalTranspose masked({.features = 2, .kernel_size = {2}, .strides = 2, .mask = ones({3, 4, 2})});
  CHECK(contains(error_of<ValueError>([&] { masked(ones({1, 4, 2})); }),
                 "Mask needs to have the same shape as weights. Shapes are: (3, 4, 2), (4, 4, 2)"));
  CHECK(masked.named_parameters().empty());
  // Explicit pads that crop the output below zero.
  nn::ConvLocalTranspose cropped({.features = 2, .kernel_size = {3}, .padding = Padding{{-4, -4}}});
  CHECK(contains(error_of<ValueError>([&] { cropped(ones({1, 2, 1})); }),
                 "ConvLocalTranspose, features=2, kernel_size=[3]: padding [(-4, -4)] makes spatial dim 0 of the output "
                 "negative (-8)"));
  // A kernel initialised for one input size cannot run on another.
  nn::ConvLocalTranspose sized({.features = 2, .kernel_size = {2}, .strides = 2});
  sized(ones({1, 3, 2}));
  CHECK(contains(error_of<ShapeError>([&] { sized(ones({1, 4, 2})); }), "input spatial size changed?"));

  // The lax op: dtypes, the kernel's layout, the padding.
  CHECK(contains(error_of<DTypeError>([] {
                   conv_local_transpose(ones({1, 3, 2}), ones({3, 4, 2}, DType::Float64), {2}, {2}, "SAME");
                 }),
                 "conv_local_transpose: lhs [1, 3, 2] is float32 but rhs [3, 4, 2] is float64"));
  CHECK(contains(error_of<DTypeError>([] {
                   conv_local_transpose(ones({1, 3, 2}, DType::Int32), ones({3, 4, 2}, DType::Int32), {2}, {2}, "SAME");
                 }),
                 "conv_local_transpose: lhs [1, 3, 2] has dtype int32"));
  CHECK(contains(error_of<ShapeError>([] { conv_local_transpose(ones({1, 3, 2}), ones({3, 5, 2}), {2}, {2}, "SAME"); }),
                 "its axis 1 (5) is not a multiple of S = 2"));
  CHECK(contains(error_of<ShapeError>([] { conv_local_transpose(ones({1, 3, 2}), ones({4, 4, 2}), {2}, {2}, "SAME"); }),
                 "rhs has shape [4, 4, 2] but an input of shape [1, 6, 2] needs a kernel of shape [3, 4, 2]"));
  CHECK(contains(error_of<ShapeError>([] { conv_local_transpose(ones({1, 3, 2}), ones({3, 4, 3}), {2}, {2}, "SAME"); }),
                 "needs a kernel of shape [3, 4, 2]"));
  CHECK(contains(error_of<ShapeError>([] { conv_local_transpose(ones({3, 2}), ones({3, 4, 2}), {2}, {2}, "SAME"); }),
                 "conv_local_transpose: lhs [3, 2] must be (N, M..., C)"));
  CHECK(contains(error_of<ValueError>([] { conv_local_transpose(ones({1, 3, 2}), ones({3, 4, 2}), {2}, {2}, "CIRCULAR"); }),
                 "conv_local_transpose: Unrecognized padding type"));
  CHECK(contains(error_of<ValueError>([] { conv_local_transpose(ones({1, 3, 2}), ones({3, 4, 2}), {2}, {2}, 1); }),
                 "one (low, high) pair per spatial dim"));
  CHECK(contains(error_of<ValueError>([] { conv_local_transpose(ones({1, 3, 2}), ones({3, 4, 2}), {2}, {0}, "SAME"); }),
                 "conv_local_transpose: strides [0] must be positive"));
}
