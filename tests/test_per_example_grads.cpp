// per_example_grads against a loop over single examples (the definition: example
// b's gradient is that of its own loss), for every layer with a batched rule, for
// the loop fallback and a whole model; a hand-computed Dense case; the errors.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

// Sum of squared errors per example: [B, ...] -> [B].
Tensor squared_error(const Tensor& out, const Tensor& target) {
  Axes rest;
  for (std::int64_t a = 1; a < out.dim(); ++a) rest.push_back(a);
  return sum(square(out - target), rest);
}

// The definition: one forward and backward per example, on a batch of one.
nn::StateDict loop_reference(nn::Module& model, const PerExampleLoss& loss_fn, const Tensor& x, const Tensor& y) {
  const nn::NamedTensors params = model.named_parameters();
  std::vector<Tensor> leaves;
  for (const auto& [path, p] : params) leaves.push_back(p);
  std::vector<std::vector<Tensor>> rows(params.size());
  for (std::int64_t b = 0; b < x.size(0); ++b) {
    const Tensor loss = sum(loss_fn(model(slice(x, 0, b, b + 1)), slice(y, 0, b, b + 1)));
    const std::vector<Tensor> g = grad({loss}, leaves, {}, {.allow_unused = true});
    for (std::size_t i = 0; i < g.size(); ++i) rows[i].push_back(g[i].defined() ? g[i] : zeros_like(leaves[i]));
  }
  nn::StateDict out;
  for (std::size_t i = 0; i < params.size(); ++i) out[params[i].first] = stack(rows[i]);
  return out;
}

void check_close(const nn::StateDict& got, const nn::StateDict& want, double tolerance) {
  REQUIRE(got.size() == want.size());
  for (const auto& [path, w] : want) {
    INFO(path);
    REQUIRE(got.count(path) == 1);
    const Tensor& g = got.at(path);
    REQUIRE(g.shape() == w.shape());
    CHECK(g.dtype() == w.dtype());
    const std::vector<double> a = g.to_vector(), b = w.to_vector();
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / (1.0 + std::abs(b[i])));
    CHECK(worst <= tolerance);
  }
}

double tolerance_for(DType dtype) { return dtype == DType::Float64 ? 1e-12 : 1e-6; }

// Runs both and compares; also checks the batch gradient is the per-example sum.
void check_against_loop(nn::Module& model, const PerExampleLoss& loss_fn, const Tensor& x, const Tensor& y) {
  model.init(slice(x, 0, 0, 1));
  const nn::StateDict got = per_example_grads(model, loss_fn, x, y);
  for (const auto& [path, p] : model.named_parameters()) CHECK_FALSE(p.grad().defined());  // untouched
  const DType dtype = model.named_parameters().front().second.dtype();
  check_close(got, loop_reference(model, loss_fn, x, y), tolerance_for(dtype));
  sum(loss_fn(model(x), y)).backward();
  nn::StateDict summed;
  for (const auto& [path, g] : got) summed[path] = sum(g, {0});
  nn::StateDict batch_grads;
  for (const auto& [path, p] : model.named_parameters()) batch_grads[path] = p.grad();
  check_close(summed, batch_grads, dtype == DType::Float64 ? 1e-11 : 1e-5);
  model.zero_grad();
}

Tensor normal(std::uint64_t seed, const Shape& shape, DType dtype) { return random_normal(make_key(seed), shape, dtype); }

// Asserts that every parameter took a batched rule, none the loop.
void check_all_batched(nn::Module& model, const PerExampleLoss& loss_fn, const Tensor& x, const Tensor& y) {
  PerExampleReport report;
  per_example_grads(model, loss_fn, x, y, &report);
  CHECK(report.looped.empty());
  for (const std::string& path : report.looped) INFO("looped: " << path);
  CHECK(report.batched.size() == model.named_parameters().size());
}

}  // namespace

TEST_CASE("per_example_grads: Dense by hand, x W + b under a squared error") {
  // One feature, W = [1, 2], b = 0.5: example b's kernel gradient is 2 (y_b - t_b) x_b.
  nn::Dense dense({.features = 1, .param_dtype = DType::Float64});
  const Tensor x = from_vector({1, 0, 2, -1, 0, 3}, {3, 2}, DType::Float64);
  const Tensor t = from_vector({0, 1, 2}, {3, 1}, DType::Float64);
  dense.init(x);
  dense.state_dict().at("kernel").copy_(from_vector({1, 2}, {2, 1}, DType::Float64));
  dense.state_dict().at("bias").copy_(from_vector({0.5}, {1}, DType::Float64));
  // y = [1.5, 0.5, 6.5]; residuals r = y - t = [1.5, -0.5, 4.5]
  const nn::StateDict g = per_example_grads(dense, squared_error, x, t);
  CHECK(g.at("kernel").shape() == Shape{3, 2, 1});
  CHECK(g.at("kernel").to_vector() == std::vector<double>{3, 0, -2, 1, 0, 27});
  CHECK(g.at("bias").to_vector() == std::vector<double>{3, -1, 9});
}

TEST_CASE("per_example_grads: Dense equals a loop over examples") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    nn::Dense dense({.features = 4, .param_dtype = dtype});
    check_against_loop(dense, squared_error, normal(1, {5, 3}, dtype), normal(2, {5, 4}, dtype));
    nn::Dense over_rows({.features = 2, .param_dtype = dtype});  // middle axes are summed per example
    check_against_loop(over_rows, squared_error, normal(3, {4, 3, 5}, dtype), normal(4, {4, 3, 2}, dtype));
  }
}

TEST_CASE("per_example_grads: Conv equals a loop over examples") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    nn::Conv same({.features = 3, .kernel_size = {3, 3}, .param_dtype = dtype});
    check_against_loop(same, squared_error, normal(5, {4, 6, 5, 2}, dtype), normal(6, {4, 6, 5, 3}, dtype));
    nn::Conv strided({.features = 2, .kernel_size = {2, 3}, .strides = {2, 1}, .padding = "VALID",
                      .kernel_dilation = {1, 2}, .param_dtype = dtype});
    check_against_loop(strided, squared_error, normal(7, {3, 7, 8, 3}, dtype), normal(8, {3, 3, 4, 2}, dtype));
    nn::Conv conv1d({.features = 2, .kernel_size = 3, .use_bias = false, .param_dtype = dtype});
    check_against_loop(conv1d, squared_error, normal(9, {3, 9, 2}, dtype), normal(10, {3, 9, 2}, dtype));
  }
}

TEST_CASE("per_example_grads: ConvLocal equals a loop over examples") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    nn::ConvLocal local({.features = 3, .kernel_size = {3, 3}, .padding = "VALID", .param_dtype = dtype});
    check_against_loop(local, squared_error, normal(11, {4, 5, 6, 2}, dtype), normal(12, {4, 3, 4, 3}, dtype));
    nn::ConvLocal strided({.features = 2, .kernel_size = {3, 2}, .strides = 2, .padding = "SAME", .param_dtype = dtype});
    check_against_loop(strided, squared_error, normal(13, {3, 6, 5, 2}, dtype), normal(14, {3, 3, 3, 2}, dtype));
  }
}

TEST_CASE("per_example_grads: LayerNorm and RMSNorm scale and bias equal a loop over examples") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    nn::LayerNorm norm({.param_dtype = dtype});
    // Non-trivial scale and bias, so the check does not pass by symmetry.
    const Tensor x = normal(15, {5, 3, 4}, dtype);
    norm.init(x);
    norm.state_dict().at("scale").copy_(normal(16, {4}, dtype));
    norm.state_dict().at("bias").copy_(normal(17, {4}, dtype));
    check_against_loop(norm, squared_error, x, normal(18, {5, 3, 4}, dtype));
    nn::LayerNorm flat({.param_dtype = dtype});  // [B, features]: nothing to sum per example
    check_against_loop(flat, squared_error, normal(19, {4, 6}, dtype), normal(20, {4, 6}, dtype));
    nn::RMSNorm rms({.param_dtype = dtype});
    rms.init(x);
    rms.state_dict().at("scale").copy_(normal(27, {4}, dtype));
    check_against_loop(rms, squared_error, x, normal(28, {5, 3, 4}, dtype));
  }
}

TEST_CASE("per_example_grads: GroupNorm scale and bias equal a loop over examples, from its batched rule") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    nn::GroupNorm norm({.num_groups = 3, .param_dtype = dtype});
    // float32: 2×2 positions per example, so both sides' float32 sums (in other orders) stay
    // within the 1e-6 tolerance; float64 sums 3×4 positions at 1e-12.
    const Shape shape = dtype == DType::Float64 ? Shape{5, 3, 4, 6} : Shape{5, 2, 2, 6};
    const Tensor x = normal(40, shape, dtype);
    norm.init(x);
    // Non-trivial scale and bias, so the check does not pass by symmetry.
    norm.state_dict().at("scale").copy_(normal(41, {6}, dtype));
    norm.state_dict().at("bias").copy_(normal(42, {6}, dtype));
    const Tensor y = normal(43, shape, dtype);
    check_against_loop(norm, squared_error, x, y);
    CHECK(norm.per_example_param_grads(x, Tensor(), y).has_value());  // the rule, not the loop
    nn::GroupNorm flat({.num_groups = std::nullopt, .group_size = 2, .param_dtype = dtype, .use_bias = false});
    check_against_loop(flat, squared_error, normal(44, {4, 6}, dtype), normal(45, {4, 6}, dtype));
  }
}

TEST_CASE("per_example_grads: DenseGeneral equals a loop over examples; with batch_dims it loops") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    // Contracting two axes into two features, with a free axis left per example.
    nn::DenseGeneral two({.features = {2, 3}, .axis = {-2, 1}, .param_dtype = dtype});
    const Tensor x = normal(50, {4, 3, 5, 2}, dtype);
    two.init(slice(x, 0, 0, 1));
    two.state_dict().at("bias").copy_(normal(51, {2, 3}, dtype));
    check_against_loop(two, squared_error, x, normal(52, {4, 2, 2, 3}, dtype));  // free axes (0, 3), then features
    CHECK(two.per_example_param_grads(x, Tensor(), normal(52, {4, 2, 2, 3}, dtype)).has_value());
    nn::DenseGeneral last({.features = {3}, .param_dtype = dtype});
    check_against_loop(last, squared_error, normal(53, {5, 4}, dtype), normal(54, {5, 3}, dtype));
    // batch_dims = (0,): a kernel slice per example; the rule declines, the loop is exact.
    nn::DenseGeneral batched({.features = {2}, .axis = {-1}, .batch_dims = {0}, .param_dtype = dtype});
    const Tensor xb = normal(55, {3, 2, 4}, dtype);
    batched.init(xb);
    CHECK_FALSE(batched.per_example_param_grads(xb, Tensor(), normal(56, {3, 2, 2}, dtype)).has_value());
  }
}

namespace {

// An embedding whose table is also the output projection (Embed::attend).
class TiedEmbedding : public nn::Module {
 public:
  explicit TiedEmbedding(DType dtype) : embed_({.num_embeddings = 7, .features = 4, .param_dtype = dtype}) {
    register_module("embed", embed_);
  }

 protected:
  Tensor forward(const Tensor& tokens) override { return embed_.attend(tanh(embed_(tokens))); }

 private:
  nn::Embed embed_;
};

}  // namespace

TEST_CASE("per_example_grads: Embed equals a loop over examples (repeated rows); a tied table loops") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    // Example 0 names row 2 twice: its gradient there is the sum of both rows of g.
    const Tensor tokens = from_vector({2, 5, 2, 0, 6, 1, 3, 3, 3, 4, 0, 6}, {4, 3}, DType::Int64);
    auto embed = std::make_shared<nn::Embed>(nn::EmbedOptions{.num_embeddings = 7, .features = 4, .param_dtype = dtype});
    nn::Sequential model{embed,
                         std::make_shared<nn::Lambda>("tanh_flatten", [](const Tensor& h) {
                           return tanh(reshape(h, {h.size(0), -1}));
                         }),
                         std::make_shared<nn::Dense>(nn::DenseOptions{.features = 2, .param_dtype = dtype})};
    check_against_loop(model, squared_error, tokens, normal(60, {4, 2}, dtype));
    const Tensor g = normal(61, {4, 3, 4}, dtype);
    const auto rule = embed->per_example_param_grads(tokens, Tensor(), g);
    REQUIRE(rule.has_value());
    const Tensor row = slice(slice(rule->at("embedding"), 0, 0, 1), 1, 2, 3);  // example 0, row 2
    const Tensor expected = slice(slice(g, 0, 0, 1), 1, 0, 1) + slice(slice(g, 0, 0, 1), 1, 2, 3);
    CHECK(test_support::max_abs_diff(reshape(row, {4}), reshape(expected, {4})) == 0.0);
    // attend reuses the table outside the captured call: the rule would miss it, so the module loops.
    TiedEmbedding tied(dtype);
    check_against_loop(tied, squared_error, tokens, normal(62, {4, 3, 7}, dtype));
  }
}

TEST_CASE("per_example_grads: ConvTranspose equals a loop over examples (strides, dilation, transpose_kernel)") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    std::vector<nn::ConvTransposeOptions> cases{
        {.features = 3, .kernel_size = {3, 2}, .strides = {2, 2}, .param_dtype = dtype},
        {.features = 2, .kernel_size = {2, 3}, .strides = {1, 2}, .padding = "VALID", .kernel_dilation = {2, 1},
         .param_dtype = dtype},
        {.features = 2, .kernel_size = {3, 3}, .strides = {2, 1}, .padding = {{1, 2}, {0, 1}}, .use_bias = false,
         .param_dtype = dtype, .transpose_kernel = true}};
    for (std::size_t k = 0; k < cases.size(); ++k) {
      INFO("case " << k);
      nn::ConvTranspose layer(cases[k]);
      const Tensor x = normal(70 + k, {3, 4, 5, 2}, dtype);
      layer.init(slice(x, 0, 0, 1));
      const Tensor y = normal(80 + k, layer(x).shape(), dtype);
      check_against_loop(layer, squared_error, x, y);
      CHECK(layer.per_example_param_grads(x, Tensor(), y).has_value());  // the rule, not the loop
    }
    nn::ConvTranspose one_d({.features = 2, .kernel_size = {3}, .strides = {3}, .param_dtype = dtype});
    const Tensor x1 = normal(90, {4, 5, 3}, dtype);
    one_d.init(slice(x1, 0, 0, 1));
    check_against_loop(one_d, squared_error, x1, normal(91, one_d(x1).shape(), dtype));
  }
}

TEST_CASE("per_example_grads: ConvLocalTranspose equals a loop over examples, from its batched rule") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    std::vector<nn::ConvLocalTransposeOptions> cases{
        {.features = 3, .kernel_size = {3, 2}, .strides = {2, 2}, .param_dtype = dtype},
        {.features = 2, .kernel_size = {2, 3}, .strides = {1, 2}, .padding = "VALID", .kernel_dilation = {2, 1},
         .param_dtype = dtype},
        {.features = 2, .kernel_size = {3, 3}, .strides = {2, 1}, .padding = {{1, 2}, {0, 1}}, .use_bias = false,
         .param_dtype = dtype},
        {.features = 2, .kernel_size = {3, 2}, .strides = {1, 2}, .padding = "CIRCULAR", .param_dtype = dtype}};
    for (std::size_t k = 0; k < cases.size(); ++k) {
      INFO("case " << k);
      nn::ConvLocalTranspose layer(cases[k]);
      const Tensor x = normal(100 + k, {3, 4, 5, 2}, dtype);
      layer.init(slice(x, 0, 0, 1));
      const Tensor y = normal(110 + k, layer(x).shape(), dtype);
      check_against_loop(layer, squared_error, x, y);
      CHECK(layer.per_example_param_grads(x, Tensor(), y).has_value());  // the rule, not the loop
      check_all_batched(layer, squared_error, x, y);
    }
    // Two batch axes: example b owns two inputs, their gradients summed.
    nn::ConvLocalTranspose two_axes({.features = 2, .kernel_size = {2, 2}, .strides = {2, 1}, .param_dtype = dtype});
    const Tensor x2 = normal(125, {3, 2, 3, 4, 2}, dtype);
    two_axes.init(slice(x2, 0, 0, 1));
    const Tensor y2 = normal(126, two_axes(x2).shape(), dtype);
    check_against_loop(two_axes, squared_error, x2, y2);
    check_all_batched(two_axes, squared_error, x2, y2);
    // A mask multiplies the kernel: its zeros give zero gradients, the rest as without.
    nn::ConvLocalTranspose probe({.features = 2, .kernel_size = {3}, .strides = {2}, .param_dtype = dtype});
    const Tensor x1 = normal(120, {4, 5, 3}, dtype);
    probe.init(slice(x1, 0, 0, 1));
    const Shape kernel_shape = probe.state_dict().at("kernel").shape();
    std::vector<double> m(static_cast<std::size_t>(numel(kernel_shape)));
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = i % 3 == 0 ? 0.0 : 1.0;
    nn::ConvLocalTranspose masked({.features = 2, .kernel_size = {3}, .strides = {2},
                                   .mask = from_vector(m, kernel_shape, dtype), .param_dtype = dtype});
    masked.init(slice(x1, 0, 0, 1));
    const Tensor y1 = normal(121, masked(x1).shape(), dtype);
    check_against_loop(masked, squared_error, x1, y1);
    check_all_batched(masked, squared_error, x1, y1);
    const std::vector<double> kernel_grads = per_example_grads(masked, squared_error, x1, y1).at("kernel").to_vector();
    for (std::size_t i = 0; i < kernel_grads.size(); ++i)
      if (m[i % m.size()] == 0.0) CHECK(kernel_grads[i] == 0.0);
  }
}

namespace {

// A bidirectional LSTM / GRU pair over [B, T, in], the Flax Bidirectional layout.
class BiRNN : public nn::Module {
 public:
  explicit BiRNN(DType dtype)
      : forward_(std::make_shared<nn::LSTMCell>(nn::LSTMCellOptions{.features = 3, .param_dtype = dtype})),
        backward_(std::make_shared<nn::GRUCell>(nn::GRUCellOptions{.features = 2, .param_dtype = dtype})),
        bi_(forward_, backward_) {
    register_module("bi", bi_);
  }

 protected:
  Tensor forward(const Tensor& x) override { return bi_(x); }

 private:
  nn::RNN forward_, backward_;
  nn::Bidirectional bi_;
};

// Sets every parameter to non-trivial values (the default biases are zeros).
void randomize(nn::Module& model, std::uint64_t seed) {
  for (auto& [path, p] : model.named_parameters())
    p.copy_(random_normal(fold_in(make_key(seed), path), p.shape(), p.dtype()) * 0.5);
}

// Random parameters (randomize(params_seed)) and a random target shaped like the
// output (target_seed) under the squared error: per-example gradients equal the loop
// over examples, and every parameter takes a batched rule.
void check_random_model(nn::Module& model, const Tensor& x, std::uint64_t params_seed, std::uint64_t target_seed) {
  model.init(slice(x, 0, 0, 1));
  randomize(model, params_seed);
  const Tensor y = normal(target_seed, model(x).shape(), x.dtype());
  check_against_loop(model, squared_error, x, y);
  check_all_batched(model, squared_error, x, y);
}

}  // namespace

TEST_CASE("per_example_grads: RNN over LSTM, OptimizedLSTM and GRU cells (fused paths) equals a loop, batched") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    const Tensor x = normal(130, {4, 5, 3}, dtype);
    for (int kind = 0; kind < 3; ++kind) {
      for (const nn::RNNOptions& options : {nn::RNNOptions{}, nn::RNNOptions{.reverse = true, .keep_order = true}}) {
        INFO("cell " << kind << ", reverse " << options.reverse);
        std::shared_ptr<nn::RNNCellBase> cell;
        if (kind == 0) cell = std::make_shared<nn::LSTMCell>(nn::LSTMCellOptions{.features = 3, .param_dtype = dtype});
        if (kind == 1)
          cell = std::make_shared<nn::OptimizedLSTMCell>(nn::LSTMCellOptions{.features = 2, .param_dtype = dtype});
        if (kind == 2) cell = std::make_shared<nn::GRUCell>(nn::GRUCellOptions{.features = 3, .param_dtype = dtype});
        nn::RNN rnn(cell, options);
        check_random_model(rnn, x, 131 + kind, 132);
      }
    }
    // Two batch axes [B, A, T, in]: example b owns A sequences.
    nn::RNN two_axes(std::make_shared<nn::GRUCell>(nn::GRUCellOptions{.features = 2, .param_dtype = dtype}));
    const Tensor x2 = normal(133, {3, 2, 4, 3}, dtype);
    check_random_model(two_axes, x2, 134, 135);
  }
}

TEST_CASE("per_example_grads: Bidirectional LSTM/GRU equals a loop over examples, batched") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    BiRNN model(dtype);
    const Tensor x = normal(140, {3, 4, 2}, dtype);
    check_random_model(model, x, 141, 142);
  }
}

TEST_CASE("per_example_grads: cells stepped one by one (gate_fn / activation_fn) use the cells' batched rules") {
  const nn::CellActivation softsign = [](const Tensor& t) { return t / (abs(t) + 1.0); };
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    const Tensor x = normal(150, {4, 3, 2}, dtype);
    for (int kind = 0; kind < 3; ++kind) {
      INFO("cell " << kind);
      std::shared_ptr<nn::RNNCellBase> cell;
      if (kind == 0)
        cell = std::make_shared<nn::LSTMCell>(
            nn::LSTMCellOptions{.features = 3, .activation_fn = softsign, .param_dtype = dtype});
      if (kind == 1)
        cell = std::make_shared<nn::OptimizedLSTMCell>(
            nn::LSTMCellOptions{.features = 2, .gate_fn = softsign, .param_dtype = dtype});
      if (kind == 2)
        cell = std::make_shared<nn::GRUCell>(
            nn::GRUCellOptions{.features = 3, .activation_fn = softsign, .param_dtype = dtype});
      nn::RNN rnn(cell);
      check_random_model(rnn, x, 151 + kind, 152);
    }
  }
}

namespace {

// An RNN over padded sequences: example b's length is stored in its last input
// feature at step 0, so a batch of one carries its own length. Returns the outputs
// (right to left, padding kept at the end) and the final carry's h next to them.
class PaddedRNN : public nn::Module {
 public:
  PaddedRNN(std::shared_ptr<nn::RNNCellBase> cell) : rnn_(std::move(cell), {.reverse = true}) {
    register_module("rnn", rnn_);
  }

 protected:
  Tensor forward(const Tensor& x) override {
    const Tensor lengths = cast(squeeze(slice(slice(x, 1, 0, 1), 2, x.size(2) - 1, x.size(2)), {1, 2}), DType::Int64);
    const nn::RNNOutput out = rnn_(x, {.seq_lengths = lengths, .return_carry = true});
    const Tensor h = out.carry.back();
    return concat({reshape(out.outputs, {x.size(0), -1}), h}, -1);
  }

 private:
  nn::RNN rnn_;
};

}  // namespace

TEST_CASE("per_example_grads: RNN with seq_lengths, reverse and its final carry equals a loop, batched") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    // Lengths 5, 2, 1, 4 in feature 2 of step 0; the rest random.
    std::vector<double> keep(4 * 5 * 3, 1.0), length(4 * 5 * 3, 0.0);
    const std::vector<double> lengths{5, 2, 1, 4};
    for (std::size_t b = 0; b < 4; ++b) {
      keep[b * 15 + 2] = 0.0;
      length[b * 15 + 2] = lengths[b];
    }
    const Tensor x = normal(165, {4, 5, 3}, dtype) * from_vector(keep, {4, 5, 3}, dtype) +
                     from_vector(length, {4, 5, 3}, dtype);
    for (int kind = 0; kind < 2; ++kind) {
      INFO("cell " << kind);
      std::shared_ptr<nn::RNNCellBase> cell;
      if (kind == 0) cell = std::make_shared<nn::LSTMCell>(nn::LSTMCellOptions{.features = 2, .param_dtype = dtype});
      if (kind == 1) cell = std::make_shared<nn::GRUCell>(nn::GRUCellOptions{.features = 2, .param_dtype = dtype});
      PaddedRNN model(cell);
      check_random_model(model, x, 166 + kind, 167);
    }
  }
}

TEST_CASE("per_example_grads: a time-major RNN (axis 0 is time) takes the loop") {
  nn::RNN rnn(std::make_shared<nn::GRUCell>(nn::GRUCellOptions{.features = 2, .param_dtype = DType::Float64}),
              {.time_major = true});
  const Tensor x = normal(160, {3, 2, 2}, DType::Float64);
  rnn.init(x);
  randomize(rnn, 161);
  const Tensor y = normal(162, {3, 2, 2}, DType::Float64);
  // (The slices along axis 0 are time steps here, so their gradients do not sum to the
  // batch gradient: only the loop's definition is checked.)
  PerExampleReport report;
  check_close(per_example_grads(rnn, squared_error, x, y, &report), loop_reference(rnn, squared_error, x, y), 1e-12);
  CHECK(report.batched.empty());
  CHECK(report.looped.size() == rnn.named_parameters().size());
}

namespace {

// Cross-attention from x to tanh(x) through a MultiHeadDotProductAttention.
class CrossAttention : public nn::Module {
 public:
  explicit CrossAttention(DType dtype) : attention_({.num_heads = 2, .param_dtype = dtype, .qkv_features = 4}) {
    register_module("attention", attention_);
  }

 protected:
  Tensor forward(const Tensor& x) override { return attention_(x, tanh(x) * 1.5, x * 0.5, {}); }

 private:
  nn::MultiHeadDotProductAttention attention_;
};

}  // namespace

TEST_CASE("per_example_grads: SelfAttention and MultiHeadDotProductAttention take their projections' batched rules") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    const Tensor x = normal(170, {3, 4, 6}, dtype);
    for (bool normalize_qk : {false, true}) {
      INFO("normalize_qk " << normalize_qk);
      nn::SelfAttention attention({.num_heads = 3, .param_dtype = dtype, .qkv_features = 6, .out_features = 5,
                                   .normalize_qk = normalize_qk});
      check_random_model(attention, x, 171, 172);
    }
    CrossAttention cross(dtype);
    check_random_model(cross, x, 173, 174);
  }
}

TEST_CASE("per_example_grads: BatchNorm in eval mode, by hand: scale Σ x̂, bias Σ 1 per example") {
  // Running mean 1, var 3, epsilon 1: x̂ = (x - 1) / 2. With loss = Σ y, g = 1, so example
  // b's scale gradient is Σ x̂_b and its bias gradient the number of positions (2).
  nn::BatchNorm norm({.epsilon = 1.0, .param_dtype = DType::Float64});
  const Tensor x = from_vector({0, 3, 1, 5}, {2, 2, 1}, DType::Float64);
  norm.init(x);
  norm.eval();
  norm.state_dict().at("mean").copy_(from_vector({1}, {1}, DType::Float32));
  norm.state_dict().at("var").copy_(from_vector({3}, {1}, DType::Float32));
  const PerExampleLoss total = [](const Tensor& y, const Tensor&) { return sum(y, {1, 2}); };
  PerExampleReport report;
  const nn::StateDict g = per_example_grads(norm, total, x, zeros({2}, DType::Float64), &report);
  CHECK(g.at("scale").shape() == Shape{2, 1});
  CHECK(g.at("scale").to_vector() == std::vector<double>{0.5, 2.0});  // (-0.5 + 1), (0 + 2)
  CHECK(g.at("bias").to_vector() == std::vector<double>{2.0, 2.0});
  CHECK(report.looped.empty());
}

TEST_CASE("per_example_grads: BatchNorm with running statistics equals a loop over examples, batched") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    for (const std::vector<std::int64_t>& axis : {std::vector<std::int64_t>{-1}, std::vector<std::int64_t>{1, 3}}) {
      INFO("axis " << axis.size());
      nn::BatchNorm norm({.axis = axis, .param_dtype = dtype});
      const Tensor x = normal(180, {4, 3, 2, 5}, dtype);
      norm.init(x);
      randomize(norm, 181);
      // Non-trivial running statistics (var > 0).
      Tensor mean = norm.state_dict().at("mean"), var = norm.state_dict().at("var");
      mean.copy_(random_normal(make_key(182), mean.shape(), DType::Float32));
      var.copy_(exp(random_normal(make_key(183), var.shape(), DType::Float32)));
      norm.eval();
      const Tensor y = normal(184, x.shape(), dtype);
      check_against_loop(norm, squared_error, x, y);
      check_all_batched(norm, squared_error, x, y);
    }
    // use_running_average in the options works in train() too.
    nn::BatchNorm fixed({.use_running_average = true, .param_dtype = dtype});
    const Tensor x = normal(185, {3, 4}, dtype);
    fixed.init(x);
    randomize(fixed, 186);
    check_against_loop(fixed, squared_error, x, normal(187, {3, 4}, dtype));
    check_all_batched(fixed, squared_error, x, normal(187, {3, 4}, dtype));
  }
}

TEST_CASE("per_example_grads: BatchNorm with batch statistics is a ValueError naming its path; nothing moves") {
  nn::Sequential model{std::make_shared<nn::Dense>(nn::DenseOptions{.features = 3, .param_dtype = DType::Float64}),
                       std::make_shared<nn::BatchNorm>(nn::BatchNormOptions{.param_dtype = DType::Float64})};
  const Tensor x = normal(190, {4, 2}, DType::Float64);
  model.init(x);
  model.train();
  const std::vector<double> mean = model.state_dict().at("layers_1.mean").to_vector();
  const std::vector<double> var = model.state_dict().at("layers_1.var").to_vector();
  CHECK_THROWS_WITH_AS(per_example_grads(model, squared_error, x, normal(191, {4, 3}, DType::Float64)),
                       doctest::Contains("BatchNorm in training mode (batch statistics) couples the examples"),
                       ValueError);
  try {
    per_example_grads(model, squared_error, x, normal(191, {4, 3}, DType::Float64));
  } catch (const ValueError& e) {
    const std::string message = e.what();
    CHECK(message.find("layers_1") != std::string::npos);  // the layer's path
    CHECK(message.find("GroupNorm") != std::string::npos);
    CHECK(message.find("eval()") != std::string::npos);
  }
  CHECK(model.state_dict().at("layers_1.mean").to_vector() == mean);  // the running statistics did not move
  CHECK(model.state_dict().at("layers_1.var").to_vector() == var);
  for (const auto& [path, p] : model.named_parameters()) CHECK_FALSE(p.grad().defined());
  model.eval();  // the same model in eval mode works
  check_against_loop(model, squared_error, x, normal(191, {4, 3}, DType::Float64));
}

TEST_CASE("per_example_grads: a token model (Embed, SelfAttention, LSTM, BatchNorm eval, Dense) is fully batched") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    nn::Sequential model{
        std::make_shared<nn::Embed>(nn::EmbedOptions{.num_embeddings = 9, .features = 6, .param_dtype = dtype}),
        std::make_shared<nn::SelfAttention>(nn::MultiHeadDotProductAttentionOptions{.num_heads = 2, .param_dtype = dtype}),
        std::make_shared<nn::RNN>(std::make_shared<nn::LSTMCell>(nn::LSTMCellOptions{.features = 4, .param_dtype = dtype})),
        std::make_shared<nn::BatchNorm>(nn::BatchNormOptions{.param_dtype = dtype}),
        std::make_shared<nn::Lambda>("flatten", [](const Tensor& h) { return reshape(h, {h.size(0), -1}); }),
        std::make_shared<nn::Dense>(nn::DenseOptions{.features = 3, .param_dtype = dtype})};
    const Tensor tokens = from_vector({1, 4, 4, 8, 0, 2, 7, 3, 5, 5, 6, 1, 2, 0, 8}, {3, 5}, DType::Int64);
    model.init(slice(tokens, 0, 0, 1));
    randomize(model, 195);
    model.eval();
    const Tensor labels = from_vector({2, 0, 1}, {3}, DType::Int64);
    const PerExampleLoss cross_entropy = [](const Tensor& logits, const Tensor& y) {
      return losses::softmax_cross_entropy_with_integer_labels(logits, y);
    };
    check_against_loop(model, cross_entropy, tokens, labels);
    check_all_batched(model, cross_entropy, tokens, labels);
  }
}

TEST_CASE("per_example_grads: layers without a rule take the loop fallback") {
  // A CIRCULAR Conv and a CIRCULAR ConvTranspose decline their rules: both go through
  // the per-example loop, next to GroupNorm's and Dense's batched rules.
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    nn::Sequential model{
        std::make_shared<nn::Conv>(nn::ConvOptions{.features = 2, .kernel_size = {3, 3}, .padding = "CIRCULAR",
                                                   .param_dtype = dtype}),
        std::make_shared<nn::GroupNorm>(nn::GroupNormOptions{.num_groups = 2, .param_dtype = dtype}),
        std::make_shared<nn::ConvTranspose>(nn::ConvTransposeOptions{.features = 2, .kernel_size = {2, 2},
                                                                     .strides = {2, 2}, .padding = "CIRCULAR",
                                                                     .param_dtype = dtype}),
        std::make_shared<nn::Lambda>("flatten", [](const Tensor& h) { return reshape(h, {h.size(0), -1}); }),
        std::make_shared<nn::Dense>(nn::DenseOptions{.features = 3, .param_dtype = dtype})};
    check_against_loop(model, squared_error, normal(21, {3, 4, 4, 1}, dtype), normal(22, {3, 3}, dtype));
  }
}

TEST_CASE("per_example_grads: a whole CNN under softmax cross-entropy equals a loop over examples") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    auto dense = std::make_shared<nn::Dense>(nn::DenseOptions{.features = 5, .param_dtype = dtype});
    nn::Sequential model{
        std::make_shared<nn::Conv>(nn::ConvOptions{.features = 4, .kernel_size = {3, 3}, .param_dtype = dtype}),
        std::make_shared<nn::Lambda>("pool_relu", [](const Tensor& h) { return nn::relu(nn::max_pool(h, {2, 2}, {2, 2})); }),
        std::make_shared<nn::ConvLocal>(
            nn::ConvOptions{.features = 3, .kernel_size = {2, 2}, .padding = "VALID", .param_dtype = dtype}),
        std::make_shared<nn::Lambda>("flatten", [](const Tensor& h) { return nn::relu(reshape(h, {h.size(0), -1})); }),
        std::make_shared<nn::LayerNorm>(nn::LayerNormOptions{.param_dtype = dtype}),
        dense};
    const Tensor labels = from_vector({0, 3, 1, 4, 2, 3}, {6}, DType::Int64);
    const PerExampleLoss cross_entropy = [](const Tensor& logits, const Tensor& y) {
      return losses::softmax_cross_entropy_with_integer_labels(logits, y);
    };
    check_against_loop(model, cross_entropy, normal(23, {6, 8, 8, 2}, dtype), labels);
  }
}

TEST_CASE("per_example_grads: rematerialised layers keep their batched rules") {
  auto inner = std::make_shared<nn::Dense>(nn::DenseOptions{.features = 3, .param_dtype = DType::Float64});
  nn::Sequential model{nn::remat(inner),
                       std::make_shared<nn::Dense>(nn::DenseOptions{.features = 2, .param_dtype = DType::Float64})};
  nn::remat(model);
  check_against_loop(model, squared_error, normal(25, {4, 5}, DType::Float64), normal(26, {4, 2}, DType::Float64));
  CHECK(model.is_remat());  // restored afterwards
  CHECK(inner->is_remat());
}

TEST_CASE("per_example_grads: typed errors for a batch mismatch and a loss of the wrong shape") {
  nn::Dense dense({.features = 2});
  const Tensor x = normal(24, {4, 3}, DType::Float32);
  CHECK_THROWS_WITH_AS(per_example_grads(dense, squared_error, x, zeros({3, 2})),
                       doctest::Contains("inputs [4, 3] and targets [3, 2] must have the same batch size"), ShapeError);
  CHECK_THROWS_AS(per_example_grads(dense, squared_error, scalar(1.0), zeros({3, 2})), ShapeError);
  const PerExampleLoss averaged = [](const Tensor& out, const Tensor& t) { return mean(square(out - t)); };
  CHECK_THROWS_WITH_AS(per_example_grads(dense, averaged, x, zeros({4, 2})),
                       doctest::Contains("loss_fn must return one loss per example, shape [4], got []"), ShapeError);
  const PerExampleLoss elementwise = [](const Tensor& out, const Tensor& t) { return square(out - t); };
  CHECK_THROWS_WITH_AS(per_example_grads(dense, elementwise, x, zeros({4, 2})),
                       doctest::Contains("got [4, 2]"), ShapeError);
}
