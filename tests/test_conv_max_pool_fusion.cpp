// A Conv followed by a MaxPool (strides = window, VALID) inside nn::Sequential runs as
// one op (autograd/conv.hpp: conv_general_dilated_max_pool_resolved) whose values and
// gradients of every order must be bit for bit those of the two layers run apart:
//  - the fused op is taken (its tape node) wherever the fast kernels serve the conv;
//  - outputs, and the gradients of the input, kernel and bias, equal the unfused
//    composition exactly, at 1, 2 and 3 threads, with ties, NaNs, rows and columns
//    past the last whole window, 3×2 windows and several feature counts; also for an
//    input without gradient, where the backward builds the conv's cotangent a block
//    of samples at a time;
//  - the same with a ReLU before or after the MaxPool (one op for the three layers);
//  - second-order gradients (create_graph) and forward-mode tangents (in the input,
//    kernel and bias) equal too;
//  - where it does not apply (F not a multiple of 8, float64, strides ≠ window,
//    padding, a ConvLocal, a per-example capture, a summary, remat), the layers run
//    apart, with the same results;
//  - the pooling modules compute the pooling functions.
// (The fused op is float32 only; its float64 gradcheck is that of the two ops it
// replaces, which test_conv_gradcheck.cpp and test_layers_pooling.cpp run.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/kernels/conv/conv.hpp"
#include "core/kernels/conv/conv_tiles.hpp"
#include "core/threading.hpp"
#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

struct ThreadsGuard {
  int before = num_threads();
  ~ThreadsGuard() { set_num_threads(before); }
};

bool fast_kernels_available() {
  if (kernels::tiles::cpu_supported()) return true;
  MESSAGE("this CPU has no AVX2/FMA: the conv + max pool pass does not exist here, nothing to check");
  return false;
}

// Where a Net has a ReLU: none, or after the Conv or after the MaxPool.
enum class Relu { None, BeforePool, AfterPool };

struct Net {
  std::shared_ptr<nn::ConvBase> conv;  // a Conv or a ConvLocal
  std::shared_ptr<nn::MaxPool> pool;
  std::shared_ptr<nn::ReLU> relu;  // null for Relu::None
  Relu where = Relu::None;
  std::shared_ptr<nn::Sequential> seq;

  // The layers called one by one, as the Sequential would without the fusion.
  Tensor apart(const Tensor& x) const {
    Tensor h = (*conv)(x);
    if (where == Relu::BeforePool) h = (*relu)(h);
    h = (*pool)(h);
    return where == Relu::AfterPool ? (*relu)(h) : h;
  }
  // The name of the op the Sequential's output comes from when it runs them as one.
  const char* fused_op() const {
    if (!conv->shared_weights())
      return where == Relu::None ? "conv_general_dilated_local+max_pool" : "conv_general_dilated_local+max_pool+relu";
    return where == Relu::None ? "conv_general_dilated+max_pool" : "conv_general_dilated+max_pool+relu";
  }
};

Net make_net(std::int64_t features, const Shape& window, nn::PoolOptions pool_options = {},
             nn::ConvOptions conv_options = {}, Relu where = Relu::None, bool local = false) {
  Net n;
  conv_options.features = features;
  conv_options.kernel_size = {3, 3};
  if (local) n.conv = std::make_shared<nn::ConvLocal>(conv_options);
  else n.conv = std::make_shared<nn::Conv>(conv_options);
  if (pool_options.window_shape.empty()) pool_options = {.window_shape = window, .strides = window};
  n.pool = std::make_shared<nn::MaxPool>(pool_options);
  n.where = where;
  if (where == Relu::None) {
    n.seq = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{n.conv, n.pool});
    return n;
  }
  n.relu = std::make_shared<nn::ReLU>();
  n.seq = std::make_shared<nn::Sequential>(
      where == Relu::BeforePool ? std::initializer_list<std::shared_ptr<nn::Module>>{n.conv, n.relu, n.pool}
                                : std::initializer_list<std::shared_ptr<nn::Module>>{n.conv, n.pool, n.relu});
  return n;
}

// The op that made t (its tape node's name), "" for a leaf.
std::string op_of(const Tensor& t) { return t.grad_fn() ? t.grad_fn()->op : ""; }

// The same shape, dtype and bits (NaNs included: both sides compute them alike).
bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && test_support::bit_difference(a, b).count == 0;
}

// y, dx, dkernel, dbias of the Sequential and of the two layers called apart.
struct Run {
  Tensor y, dx, dkernel, dbias;
};

// With `input_grad` false (an image input) the fused op's backward takes the kernel
// and bias gradients straight from the pooled cotangent.
Run run(const Net& n, const Tensor& x0, const Tensor& dy, bool fused, bool input_grad = true) {
  Tensor x = x0.detach();
  if (input_grad) x.requires_grad_();
  n.conv->zero_grad();
  Tensor y = fused ? (*n.seq)(x) : n.apart(x);
  y.backward(dy);
  return {y.detach(), input_grad ? x.grad() : Tensor(), n.conv->named_parameters().at(0).second.grad(),
          n.conv->named_parameters().at(1).second.grad()};
}

void check_same(const Run& a, const Run& b) {
  CHECK(same_bits(a.y, b.y));
  CHECK(a.dx.defined() == b.dx.defined());
  if (a.dx.defined()) CHECK(same_bits(a.dx, b.dx));
  CHECK(same_bits(a.dkernel, b.dkernel));
  CHECK(same_bits(a.dbias, b.dbias));
}

// Calls body(local, where) for a Conv and a ConvLocal, each without a ReLU and with one
// before and after the pool (both named in the messages of failed checks).
template <class Body>
void for_each_variant(Body&& body) {
  for (const bool local : {false, true})
    for (const Relu where : {Relu::None, Relu::BeforePool, Relu::AfterPool}) {
      CAPTURE(local);
      CAPTURE(static_cast<int>(where));
      body(local, where);
    }
}

}  // namespace

TEST_CASE("a Conv or ConvLocal, a MaxPool and a ReLU in a Sequential run as one op with the layers' values and gradients") {
  if (!fast_kernels_available()) return;
  ThreadsGuard guard;
  struct Shape_ {
    Shape input, window;
    std::int64_t features;
    const char* why;
    nn::ConvOptions conv = {};
  };
  for (const Shape_& c :
       {Shape_{{5, 13, 11, 3}, {2, 2}, 16, "odd sizes: a row and a column past the last window"},
        Shape_{{4, 12, 12, 1}, {2, 2}, 8, "one channel, F = 8 (ymm tiles)"},
        Shape_{{3, 10, 9, 4}, {3, 2}, 24, "3×2 windows, F = 24"},
        Shape_{{2, 8, 8, 16}, {2, 2}, 64, "F = 64"},
        Shape_{{3, 17, 15, 2}, {2, 2}, 16, "conv strides 2, VALID", {.strides = {2, 2}, .padding = "VALID"}},
        Shape_{{3, 12, 11, 2}, {2, 2}, 8, "kernel dilation 2, explicit padding",
               {.padding = std::vector<std::pair<int, int>>{{1, 2}, {0, 1}}, .kernel_dilation = {2, 2}}},
        Shape_{{5, 6, 7, 3}, {2, 2}, 8, "4 output rows: ConvLocal's d_x by samples (from a written-out dy)",
               {.padding = "VALID"}},
        Shape_{{64, 28, 28, 1}, {2, 2}, 16, "the main job's first layer"},
        Shape_{{64, 14, 14, 16}, {2, 2}, 32, "the main job's second layer", {.padding = "VALID"}}})
    for_each_variant([&](bool local, Relu where) {
      CAPTURE(c.why);
      const Net n = make_net(c.features, c.window, {}, c.conv, where, local);
      const Tensor x = random_normal(make_key(1), c.input);
      n.seq->init(x);
      for (const int threads : {1, 2, 3}) {
        CAPTURE(threads);
        set_num_threads(threads);
        const Tensor probe = (*n.seq)(x);
        CHECK(op_of(probe) == n.fused_op());
        if (where != Relu::None) {  // the relu zeroed some outputs and kept others
          const auto y = probe.to_vector();
          CHECK(std::count(y.begin(), y.end(), 0.0) > 0);
          CHECK(std::count_if(y.begin(), y.end(), [](double v) { return v > 0; }) > 0);
        }
        const Tensor dy = random_normal(make_key(2), probe.shape());
        for (const bool input_grad : {true, false}) {
          CAPTURE(input_grad);
          check_same(run(n, x, dy, true, input_grad), run(n, x, dy, false, input_grad));
        }
      }
    });
}

TEST_CASE("the fused conv + max pool selects as max_pool does: ties go to the first element, NaN wins") {
  if (!fast_kernels_available()) return;
  for_each_variant([&](bool local, Relu where) {
    const Net n = make_net(8, {2, 2}, {}, {}, where, local);
    Tensor x = random_normal(make_key(3), {3, 9, 9, 2});
    n.seq->init(x);
    const Tensor dy = random_normal(make_key(4), (*n.seq)(x).shape());
    // NaN in the input reaches some windows.
    std::vector<double> values = x.to_vector();
    values[40] = std::numeric_limits<double>::quiet_NaN();
    values[100] = std::numeric_limits<double>::quiet_NaN();
    const Tensor x_nan = from_vector(values, x.shape(), DType::Float32);
    const Run fused_nan = run(n, x_nan, dy, true);
    check_same(fused_nan, run(n, x_nan, dy, false));
    check_same(run(n, x_nan, dy, true, false), run(n, x_nan, dy, false, false));
    const auto y_nan = fused_nan.y.to_vector();
    CHECK(std::count_if(y_nan.begin(), y_nan.end(), [](double v) { return std::isnan(v); }) > 0);

    // Ties: a zero kernel makes every window's four outputs the bias (for a ConvLocal,
    // one bias for every position).
    n.conv->named_parameters().at(0).second.fill_(0.0);
    Tensor bias = n.conv->named_parameters().at(1).second;
    const std::vector<double> per_feature{0.5, -0.25, 1.0, -1.0, 0.0, 2.0, -3.0, 0.75};
    std::vector<double> bias_values;
    while (bias_values.size() < static_cast<std::size_t>(bias.numel()))
      bias_values.insert(bias_values.end(), per_feature.begin(), per_feature.end());
    bias.copy_(from_vector(bias_values, bias.shape(), DType::Float32));
    const Run fused = run(n, x, dy, true), apart = run(n, x, dy, false);
    check_same(fused, apart);
    check_same(run(n, x, dy, true, false), run(n, x, dy, false, false));
    // Each window's gradient went to its first element only: dbias = Σ dy per feature
    // (a ConvLocal's: per feature at each window's first position, zero at the others),
    // and with a relu only for the features whose bias is positive.
    const auto db = fused.dbias.to_vector(), g = dy.to_vector();
    const std::size_t features = per_feature.size();
    std::vector<double> want(db.size(), 0.0);
    REQUIRE(dy.shape() == Shape{3, 4, 4, 8});  // the conv's 9×9 positions (SAME), windows from (0, 0)
    for (std::size_t i = 0; i < g.size(); ++i) {
      const std::size_t f = i % features, q = i / features % 16, row = q / 4 * 2, column = q % 4 * 2;
      want[local ? (row * 9 + column) * features + f : f] += g[i];
    }
    for (std::size_t j = 0; j < db.size(); ++j) {
      CAPTURE(j);
      const double expected = where != Relu::None && per_feature[j % features] <= 0 ? 0.0 : want[j];
      CHECK(db[j] == doctest::Approx(expected).epsilon(1e-5));
    }
  });
}

TEST_CASE("the fused conv + max pool has the second-order gradients and the tangents of the two layers") {
  if (!fast_kernels_available()) return;
  for_each_variant([&](bool local, Relu where) {
    const Net n = make_net(16, {2, 2}, {}, {}, where, local);
    const Tensor x0 = random_normal(make_key(5), {3, 10, 10, 2});
    n.seq->init(x0);
    const Tensor kernel = n.conv->named_parameters().at(0).second;
    const auto grad_grad = [&](bool fused) {
      Tensor x = x0.detach().requires_grad_();
      Tensor y = fused ? (*n.seq)(x) : n.apart(x);
      if (fused) CHECK(op_of(y) == n.fused_op());
      const Tensor gk = grad({sum(y * y)}, {kernel}, {}, {.create_graph = true})[0];
      return grad({sum(gk * gk)}, {x})[0];
    };
    CHECK(same_bits(grad_grad(true), grad_grad(false)));

    const Tensor v = random_normal(make_key(6), x0.shape());
    const auto tangent = [&](bool fused) {
      return jvp([&](const std::vector<Tensor>& in) {
               return std::vector<Tensor>{fused ? (*n.seq)(in[0]) : n.apart(in[0])};
             },
                 {x0}, {v})
          .output_tangents[0];
    };
    const Tensor fused_tangent = tangent(true), apart_tangent = tangent(false);
    CHECK(fused_tangent.shape() == Shape{3, 5, 5, 16});
    CHECK(same_bits(fused_tangent, apart_tangent));
  });
}

TEST_CASE("where the one-pass conv + max pool does not apply, a Sequential runs the two layers") {
  if (!fast_kernels_available()) return;
  const Tensor x = random_normal(make_key(7), {4, 9, 9, 3});
  const auto check_apart = [&](const Net& n, const Tensor& input) {
    n.seq->init(input);
    const Tensor y = (*n.seq)(input);
    CHECK(op_of(y) != "conv_general_dilated+max_pool");
    CHECK(same_bits(y, (*n.pool)((*n.conv)(input))));
  };
  SUBCASE("F not a multiple of 8") { check_apart(make_net(12, {2, 2}), x); }
  SUBCASE("float64") { check_apart(make_net(8, {2, 2}), cast(x, DType::Float64)); }
  SUBCASE("strides other than the window") {
    check_apart(make_net(8, {}, {.window_shape = {2, 2}, .strides = {1, 1}}), x);
  }
  SUBCASE("a padded pool") {
    check_apart(make_net(8, {}, {.window_shape = {2, 2}, .strides = {2, 2}, .padding = "SAME"}), x);
  }
  SUBCASE("no bias") { check_apart(make_net(8, {2, 2}, {}, {.use_bias = false}), x); }
  SUBCASE("CIRCULAR padding (a pre-padded input)") { check_apart(make_net(8, {2, 2}, {}, {.padding = "CIRCULAR"}), x); }
  SUBCASE("two batch axes") { check_apart(make_net(8, {2, 2}), reshape(x, {2, 2, 9, 9, 3})); }
  SUBCASE("the fast kernels switched off") {
    const bool before = kernels::tiles::fast_enabled();
    kernels::tiles::set_fast_enabled(false);
    check_apart(make_net(8, {2, 2}), x);
    kernels::tiles::set_fast_enabled(before);
  }
  SUBCASE("a ConvLocal with F not a multiple of 8") {
    const Net n = make_net(12, {2, 2}, {}, {}, Relu::None, true);
    n.seq->init(x);
    const Tensor y = (*n.seq)(x);
    CHECK(op_of(y) != n.fused_op());
    CHECK(same_bits(y, n.apart(x)));
  }
  SUBCASE("remat") {
    const Net n = make_net(8, {2, 2});
    n.conv->set_remat(true);
    check_apart(n, x);
  }
  SUBCASE("a ReLU under remat, or a relu in a Lambda: the conv and the pool only") {
    const Net remat = make_net(8, {2, 2}, {}, {}, Relu::AfterPool);
    remat.relu->set_remat(true);
    const Net lambda = make_net(8, {2, 2});
    lambda.seq->add(std::make_shared<nn::Lambda>("relu", [](const Tensor& t) { return relu(t); }));
    for (const Net* n : {&remat, &lambda}) {
      n->seq->init(x);
      const Tensor y = (*n->seq)(x);
      REQUIRE(y.grad_fn());
      CHECK(op_of(y) != "conv_general_dilated+max_pool+relu");
      CHECK(op_of(y.grad_fn()->inputs.at(0)) == "conv_general_dilated+max_pool");
      CHECK(same_bits(y, relu(n->apart(x))));
    }
  }
  SUBCASE("a summary records both layers") {
    const Net n = make_net(8, {2, 2});
    n.seq->init(x);
    const std::string table = n.seq->summary(x);
    CHECK(table.find("Conv") != std::string::npos);
    CHECK(table.find("MaxPool") != std::string::npos);
    CHECK(table.find("[4, 4, 4, 8]") != std::string::npos);  // the pool's output shape
  }
}

TEST_CASE("per-example gradients through a Sequential with a Conv and a MaxPool match the loop over examples") {
  if (!fast_kernels_available()) return;
  auto model = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv>(nn::ConvOptions{.features = 8, .kernel_size = {3, 3}}),
      std::make_shared<nn::MaxPool>(nn::PoolOptions{.window_shape = {2, 2}, .strides = {2, 2}}),
      std::make_shared<nn::Flatten>(), std::make_shared<nn::Dense>(nn::DenseOptions{.features = 3})});
  const Tensor x = random_normal(make_key(8), {4, 8, 8, 2});
  const Tensor labels = random_randint(make_key(9), {4}, 0, 3);
  model->init(x);
  const auto loss = [](const Tensor& out, const Tensor& targets) { return losses::softmax_cross_entropy(out, targets); };
  const nn::StateDict batched = per_example_grads(*model, loss, x, labels);
  for (std::int64_t b = 0; b < 4; ++b) {
    CAPTURE(b);
    const Tensor xb = slice(x, 0, b, b + 1), yb = slice(labels, 0, b, b + 1);
    model->zero_grad();
    mean(loss((*model)(xb), yb)).backward();
    for (const auto& [path, p] : model->named_parameters()) {
      CAPTURE(path);
      const auto want = p.grad().to_vector(), got = slice(batched.at(path), 0, b, b + 1).to_vector();
      REQUIRE(want.size() == got.size());
      for (std::size_t i = 0; i < want.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-4).scale(1e-3));
    }
  }
}

TEST_CASE("MaxPool, MinPool and AvgPool modules compute the pooling functions") {
  const Tensor x = random_normal(make_key(10), {2, 7, 6, 3});
  const nn::PoolOptions o{.window_shape = {3, 2}, .strides = {2, 2}, .padding = "SAME"};
  nn::MaxPool max_pool(o);
  nn::MinPool min_pool(o);
  nn::AvgPool avg_pool({.window_shape = {3, 2}, .strides = {2, 2}, .padding = "SAME", .count_include_pad = false});
  CHECK(same_bits(max_pool(x), nn::max_pool(x, {3, 2}, {2, 2}, "SAME")));
  CHECK(same_bits(min_pool(x), nn::min_pool(x, {3, 2}, {2, 2}, "SAME")));
  CHECK(same_bits(avg_pool(x), nn::avg_pool(x, {3, 2}, {2, 2}, "SAME", false)));
  CHECK(max_pool.describe() == "MaxPool, window_shape=[3, 2], strides=[2, 2], padding='SAME'");
  CHECK(nn::AvgPool({.window_shape = {2}}).describe() == "AvgPool, window_shape=[2], strides=1, padding='VALID'");
  CHECK_THROWS_AS(max_pool(random_normal(make_key(11), {7, 6})), ShapeError);
}

TEST_CASE("conv_max_pool_apply's tangents in the input, kernel and bias are those of conv_apply then max_pool") {
  if (!fast_kernels_available()) return;
  for (const bool shared : {true, false}) {
    CAPTURE(shared);
    const nn::ConvPlan plan = nn::plan_conv({3, 9, 8, 2}, {.features = 8, .kernel_size = {3, 3}, .shared_weights = shared});
    const Tensor x = random_normal(make_key(12), plan.input_shape);
    const Tensor k = random_normal(make_key(13), plan.kernel_shape);
    const Tensor b = random_normal(make_key(14), plan.bias_shape);
    const Shape window{2, 2};
    const Tensor vx = random_normal(make_key(15), x.shape()), vk = random_normal(make_key(16), k.shape());
    const Tensor vb = random_normal(make_key(17), b.shape());
    const Tensor none_x = zeros(x.shape()), none_k = zeros(k.shape()), none_b = zeros(b.shape());
    for (const bool with_relu : {false, true}) {
      CAPTURE(with_relu);
      const auto fused = [&](const std::vector<Tensor>& in) {
        const Tensor y = nn::conv_max_pool_apply(plan, in[0], in[1], in[2], window, std::nullopt,
                                                 Precision::Default, with_relu);
        REQUIRE(y.defined());  // the one-pass op applies (outside a jvp it records under its own name)
        return std::vector<Tensor>{y};
      };
      const auto apart = [&](const std::vector<Tensor>& in) {
        const Tensor y = nn::max_pool(nn::conv_apply(plan, in[0], in[1], in[2]), window, window);
        return std::vector<Tensor>{with_relu ? relu(y) : y};
      };
      for (const std::vector<Tensor>& v : {std::vector<Tensor>{vx, vk, vb}, std::vector<Tensor>{none_x, none_k, vb},
                                           std::vector<Tensor>{none_x, vk, none_b}}) {
        const JvpResult a = jvp(fused, {x, k, b}, v), want = jvp(apart, {x, k, b}, v);
        CHECK(same_bits(a.outputs[0], want.outputs[0]));
        CHECK(same_bits(a.output_tangents[0], want.output_tangents[0]));
      }
    }
  }
}
