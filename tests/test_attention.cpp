// Attention: the attention ops (scores, masked softmax, weighted values), Flax's
// dot_product_attention, the mask helpers, MultiHeadDotProductAttention and
// SelfAttention: values against straightforward formulas and against PyTorch 1.13
// nn.MultiheadAttention (tests/data/attention/make_fixture.py), float64 gradchecks
// with and without masks and bias, and the errors.
#include <cmath>
#include <limits>

#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using test_support::check_first_and_second_order;
using test_support::error_of;

namespace {

Tensor normal64(std::uint64_t seed, const Shape& shape) { return random_normal(make_key(seed), shape, DType::Float64); }

// max |a - b| over two same-shaped tensors.
using test_support::max_abs_diff;

// The straightforward path, with transposes and batched matmuls: q, k, v
// [batch..., L, H, D] -> scores [batch..., H, Lq, Lk].
Tensor reference_scores(const Tensor& q, const Tensor& k, double scale) {
  const std::int64_t r = q.dim();
  std::vector<std::int64_t> to_heads(static_cast<std::size_t>(r));
  for (std::int64_t i = 0; i < r; ++i) to_heads[static_cast<std::size_t>(i)] = i;
  std::swap(to_heads[static_cast<std::size_t>(r - 3)], to_heads[static_cast<std::size_t>(r - 2)]);
  const Tensor qh = transpose(q, to_heads), kh = transpose(k, to_heads);  // [..., H, L, D]
  return matmul(qh, swapaxes(kh, -1, -2)) * scale;
}

Tensor reference_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias, const Tensor& mask) {
  Tensor s = reference_scores(q / std::sqrt(static_cast<double>(q.size(-1))), k, 1.0);
  if (bias.defined()) s = s + bias;
  if (mask.defined())
    s = where(not_equal(mask, zeros({}, mask.dtype())), s, full({}, std::numeric_limits<double>::lowest(), s.dtype()));
  const Tensor w = softmax(s, -1);                    // [..., H, Lq, Lk]
  const Tensor vh = swapaxes(v, -3, -2);              // [..., H, Lk, D]
  return swapaxes(matmul(w, vh), -3, -2);             // [..., Lq, H, D]
}

}  // namespace

TEST_CASE("attention_scores and attention_values match the transpose-and-matmul formulas") {
  const Tensor q = normal64(1, {2, 3, 4, 2, 5}), k = normal64(2, {2, 3, 6, 2, 5}), v = normal64(3, {2, 3, 6, 2, 7});
  const Tensor s = attention_scores(q, k, 0.5);
  CHECK(s.shape() == Shape{2, 3, 2, 4, 6});
  CHECK(max_abs_diff(s, reference_scores(q, k, 0.5)) < 1e-12);
  const Tensor w = normal64(4, {2, 3, 2, 4, 6});
  const Tensor o = attention_values(w, v, 2.0);
  CHECK(o.shape() == Shape{2, 3, 4, 2, 7});
  const Tensor expected = swapaxes(matmul(w, swapaxes(v, -3, -2)), -3, -2) * 2.0;
  CHECK(max_abs_diff(o, expected) < 1e-12);
  // One hand-computed entry: s[0,0,1,2,3] = 0.5 * sum_d q[0,0,2,1,d] k[0,0,3,1,d].
  double dot = 0;
  for (std::int64_t d = 0; d < 5; ++d) dot += q.at({0, 0, 2, 1, d}) * k.at({0, 0, 3, 1, d});
  CHECK(s.at({0, 0, 1, 2, 3}) == doctest::Approx(0.5 * dot).epsilon(1e-14));
  // float32 and bfloat16 (computed in float32, rounded once).
  CHECK(max_abs_diff(attention_scores(q.astype(DType::Float32), k.astype(DType::Float32)),
                     reference_scores(q, k, 1.0)) < 1e-5);
  CHECK(attention_scores(q.astype(DType::BFloat16), k.astype(DType::BFloat16)).dtype() == DType::BFloat16);
  // The compile-time head sizes (8, 16, 32, 64) of attention_values, in float64 and float32.
  for (std::int64_t depth : {8, 16, 32, 64}) {
    INFO("depth " << depth);
    const Tensor wd = normal64(40 + static_cast<std::uint64_t>(depth), {2, 3, 5, 7});
    const Tensor vd = normal64(41 + static_cast<std::uint64_t>(depth), {2, 7, 3, depth});
    const Tensor expected_d = swapaxes(matmul(wd, swapaxes(vd, -3, -2)), -3, -2) * 0.5;
    CHECK(max_abs_diff(attention_values(wd, vd, 0.5), expected_d) < 1e-12);
    CHECK(max_abs_diff(attention_values(wd.astype(DType::Float32), vd.astype(DType::Float32), 0.5), expected_d) < 1e-4);
  }
  // No batch dims, empty lengths.
  CHECK(attention_scores(normal64(5, {3, 1, 2}), normal64(6, {4, 1, 2})).shape() == Shape{1, 3, 4});
  CHECK(attention_values(zeros({1, 0, 4}, DType::Float64), zeros({4, 1, 2}, DType::Float64)).shape() == Shape{0, 1, 2});
  // Empty sums are zero: depth 0 scores, no keys to weigh.
  CHECK(attention_scores(ones({2, 3, 2, 0}), ones({2, 4, 2, 0})).to_vector() == std::vector<double>(48, 0.0));
  CHECK(attention_values(ones({2, 2, 3, 0}), ones({2, 0, 2, 5})).to_vector() == std::vector<double>(60, 0.0));
}

TEST_CASE("attention kernels give the same bits at 1 and 2 threads") {
  const Tensor q = random_normal(make_key(7), {64, 16, 4, 16}), k = random_normal(make_key(8), {64, 16, 4, 16});
  const Tensor v = random_normal(make_key(9), {64, 16, 4, 16});
  Tensor s1, o1, p1, s2, o2, p2;
  {
    test_support::ThreadCountGuard one(1);
    s1 = attention_scores(q, k, 0.25), p1 = masked_softmax(s1, Tensor()), o1 = attention_values(p1, v);
  }
  {
    test_support::ThreadCountGuard two(2);
    s2 = attention_scores(q, k, 0.25), p2 = masked_softmax(s2, Tensor()), o2 = attention_values(p2, v);
  }
  CHECK(test_support::bit_difference(s1, s2).count == 0);
  CHECK(test_support::bit_difference(p1, p2).count == 0);
  CHECK(test_support::bit_difference(o1, o2).count == 0);
}

TEST_CASE("masked_softmax fills masked scores with the dtype's lowest value, as Flax") {
  const Tensor x = from_vector({1, 2, 3, 0, 0, 5}, {2, 3}, DType::Float64);
  const Tensor mask = from_vector({1, 0, 1}, {3}, DType::Float32);  // float mask: nonzero keeps
  const Tensor y = masked_softmax(x, mask);
  const double e = std::exp(2.0);  // row 0 keeps 1 and 3: softmax([1, 3]) = [1, e^2] / (1 + e^2)
  CHECK(y.at({0, 0}) == doctest::Approx(1 / (1 + e)).epsilon(1e-15));
  CHECK(y.at({0, 1}) == 0.0);
  CHECK(y.at({0, 2}) == doctest::Approx(e / (1 + e)).epsilon(1e-15));
  CHECK(y.at({1, 2}) == doctest::Approx(std::exp(5.0) / (1 + std::exp(5.0))).epsilon(1e-15));
  // A row masked everywhere is uniform (every score is the same lowest value).
  const Tensor none = masked_softmax(x, zeros({2, 1}, DType::Bool));
  for (double p : none.to_vector()) CHECK(p == doctest::Approx(1.0 / 3));
  // Without a mask it is softmax; float32 and bfloat16 keep their dtype.
  CHECK(max_abs_diff(masked_softmax(x, Tensor()), softmax(x, -1)) < 1e-15);
  CHECK(masked_softmax(x.astype(DType::BFloat16), mask).dtype() == DType::BFloat16);
  CHECK(max_abs_diff(masked_softmax(x.astype(DType::Float32), mask).astype(DType::Float64), y) < 1e-7);
  CHECK_THROWS_WITH_AS(masked_softmax(x, ones({2, 2}, DType::Bool)),
                       "masked_softmax: mask [2, 2] does not broadcast to the scores [2, 3]", ShapeError);
}

TEST_CASE("attention ops gradcheck in float64, first and second order") {
  const Tensor q = normal64(11, {2, 3, 2, 4}), k = normal64(12, {2, 5, 2, 4}), v = normal64(13, {2, 5, 2, 3});
  const Tensor w = normal64(14, {2, 2, 3, 5});
  check_first_and_second_order("attention_scores", [](const std::vector<Tensor>& in) {
    return attention_scores(in[0], in[1], 0.7);
  }, {q, k});
  check_first_and_second_order("attention_values", [](const std::vector<Tensor>& in) {
    return attention_values(in[0], in[1], 1.3);
  }, {w, v});
  const Tensor mask = from_vector({1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0}, {1, 3, 5}, DType::Bool);
  check_first_and_second_order("masked_softmax with a mask (one row masked everywhere)",
                               [mask](const std::vector<Tensor>& in) { return masked_softmax(in[0], mask); }, {w});
  check_first_and_second_order("masked_softmax without a mask",
                               [](const std::vector<Tensor>& in) { return masked_softmax(in[0], Tensor()); }, {w});
  // softmax's fused last-axis backward and its composite form agree with the numbers.
  check_first_and_second_order("softmax over the last axis",
                               [](const std::vector<Tensor>& in) { return softmax(in[0], -1); }, {w});
}

TEST_CASE("masked scores get no gradient") {
  Tensor x = normal64(15, {2, 4}).requires_grad_();
  const Tensor mask = from_vector({1, 0, 1, 1, 0, 0, 0, 0}, {2, 4}, DType::Bool);
  (masked_softmax(x, mask) * normal64(16, {2, 4})).sum().backward();
  const Tensor g = x.grad();
  for (std::int64_t j : {1}) CHECK(g.at({0, j}) == 0.0);
  for (std::int64_t j = 0; j < 4; ++j) CHECK(g.at({1, j}) == 0.0);
  CHECK(g.at({0, 0}) != 0.0);
}

TEST_CASE("dot_product_attention matches Flax's formula with bias and mask") {
  const Tensor q = normal64(21, {2, 3, 2, 4}), k = normal64(22, {2, 5, 2, 4}), v = normal64(23, {2, 5, 2, 3});
  const Tensor bias = normal64(24, {2, 1, 3, 5});
  const Tensor mask = nn::make_causal_mask(zeros({2, 5})).astype(DType::Float64);  // [2, 1, 5, 5]
  const Tensor mask35 = slice(mask, 2, 0, 3);                                     // [2, 1, 3, 5]
  const Tensor out = nn::dot_product_attention(q, k, v, {.bias = bias, .mask = mask35});
  CHECK(out.shape() == Shape{2, 3, 2, 3});
  CHECK(max_abs_diff(out, reference_attention(q, k, v, bias, mask35)) < 1e-12);
  CHECK(max_abs_diff(nn::dot_product_attention(q, k, v), reference_attention(q, k, v, Tensor(), Tensor())) < 1e-12);
  // The weights: rows sum to one and are zero where masked.
  const Tensor w = nn::dot_product_attention_weights(q, k, {.mask = mask35});
  CHECK(w.shape() == Shape{2, 2, 3, 5});
  CHECK(w.at({1, 1, 0, 1}) == 0.0);  // query 0 may not see key 1
  CHECK(w.at({0, 0, 0, 0}) == 1.0);  // query 0 sees only key 0
  CHECK(max_abs_diff(sum(w, {-1}), ones({2, 2, 3}, DType::Float64)) < 1e-15);

  // By hand: one head, depth 1, q = 2, keys 0 and 1, values 10 and 20: scores
  // 2 * [0, 1] / sqrt(1), weights [1, e^2] / (1 + e^2).
  const Tensor out1 = nn::dot_product_attention(from_vector({2}, {1, 1, 1}, DType::Float64),
                                                from_vector({0, 1}, {2, 1, 1}, DType::Float64),
                                                from_vector({10, 20}, {2, 1, 1}, DType::Float64));
  const double e2 = std::exp(2.0);
  CHECK(out1.item() == doctest::Approx((10 + 20 * e2) / (1 + e2)).epsilon(1e-15));
}

TEST_CASE("dot_product_attention gradchecks in float64 with respect to query, key, value and bias") {
  const Tensor q = normal64(31, {2, 3, 2, 4}), k = normal64(32, {2, 4, 2, 4}), v = normal64(33, {2, 4, 2, 3});
  const Tensor bias = normal64(34, {1, 2, 3, 4});
  const Tensor mask = from_vector({1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1}, {3, 4}, DType::Bool);
  check_first_and_second_order("no mask, no bias", [](const std::vector<Tensor>& in) {
    return nn::dot_product_attention(in[0], in[1], in[2]);
  }, {q, k, v});
  check_first_and_second_order("mask and bias", [mask](const std::vector<Tensor>& in) {
    return nn::dot_product_attention(in[0], in[1], in[2], {.bias = in[3], .mask = mask});
  }, {q, k, v, bias});
  check_first_and_second_order("weights with mask", [mask](const std::vector<Tensor>& in) {
    return nn::dot_product_attention_weights(in[0], in[1], {.mask = mask});
  }, {q, k});
}

TEST_CASE("dot_product_attention dropout: deterministic, broadcast over batch and heads, scaled by 1/keep") {
  const Tensor q = normal64(41, {3, 4, 2, 4}), k = normal64(42, {3, 5, 2, 4});
  const Tensor clean = nn::dot_product_attention_weights(q, k);
  CHECK(max_abs_diff(nn::dot_product_attention_weights(q, k, {.dropout_rate = 0.5, .deterministic = true}), clean) == 0);
  const Tensor dropped =
      nn::dot_product_attention_weights(q, k, {.dropout_rng = make_key(3), .dropout_rate = 0.5});
  int zeros_seen = 0;
  for (std::int64_t b = 0; b < 3; ++b)
    for (std::int64_t h = 0; h < 2; ++h)
      for (std::int64_t i = 0; i < 4; ++i)
        for (std::int64_t j = 0; j < 5; ++j) {
          const double d = dropped.at({b, h, i, j}), c = clean.at({b, h, i, j});
          // The same keep pattern in every batch entry and head (broadcast_dropout).
          const bool kept = dropped.at({0, 0, i, j}) != 0.0;
          CHECK(d == doctest::Approx(kept ? 2 * c : 0.0).epsilon(1e-14));
          zeros_seen += !kept;
        }
  CHECK(zeros_seen > 0);
  CHECK(zeros_seen < 3 * 2 * 4 * 5);
  const Tensor per_element = nn::dot_product_attention_weights(
      q, k, {.broadcast_dropout = false, .dropout_rng = make_key(3), .dropout_rate = 0.5});
  bool differs = false;  // without broadcast, batch entries and heads get their own masks
  for (std::int64_t i = 0; i < 4; ++i)
    for (std::int64_t j = 0; j < 5; ++j)
      differs = differs || ((per_element.at({0, 0, i, j}) == 0) != (per_element.at({2, 1, i, j}) == 0));
  CHECK(differs);
  CHECK_THROWS_WITH_AS(nn::dot_product_attention_weights(q, k, {.dropout_rate = 0.5}),
                       "dot_product_attention_weights: dropout (rate 0.5, deterministic false) needs a dropout_rng",
                       ValueError);
  CHECK_THROWS_WITH_AS(nn::dot_product_attention_weights(q, k, {.dropout_rate = 1.0}),
                       "dot_product_attention_weights: dropout_rate must be in [0, 1), got 1", ValueError);
}

TEST_CASE("dot_product_attention errors name the shapes") {
  const Tensor q = normal64(51, {2, 3, 2, 4}), k = normal64(52, {2, 5, 2, 4}), v = normal64(53, {2, 5, 2, 3});
  CHECK_THROWS_WITH_AS(nn::dot_product_attention(q, k, v, {.mask = ones({2, 2, 3, 4})}),
                       "dot_product_attention: mask [2, 2, 3, 4] does not broadcast to the attention weights "
                       "[2, 2, 3, 5] [batch..., heads, q_length, kv_length]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(nn::dot_product_attention(q, k, v, {.bias = ones({3, 2, 3, 5})}),
                       "dot_product_attention: bias [3, 2, 3, 5] does not broadcast to the attention weights "
                       "[2, 2, 3, 5] [batch..., heads, q_length, kv_length]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(nn::dot_product_attention(q, normal64(1, {2, 5, 2, 3}), v),
                       "dot_product_attention: query [2, 3, 2, 4], key [2, 5, 2, 3], value [2, 5, 2, 3] differ in "
                       "query/key depth (layout [batch..., length, heads, depth])",
                       ShapeError);
  CHECK_THROWS_AS(nn::dot_product_attention(q, k, normal64(1, {2, 4, 2, 3})), ShapeError);  // key/value lengths
  CHECK_THROWS_AS(nn::dot_product_attention(q, normal64(1, {3, 5, 2, 4}), v), ShapeError);  // batch dims
  CHECK_THROWS_AS(nn::dot_product_attention_weights(q, normal64(1, {2, 5, 3, 4})), ShapeError);  // heads
  CHECK_THROWS_AS(nn::dot_product_attention_weights(normal64(1, {3, 4}), normal64(1, {3, 4})), ShapeError);  // rank
  CHECK_THROWS_AS(attention_values(normal64(1, {2, 3, 4}), normal64(1, {5, 2, 3})), ShapeError);
}

TEST_CASE("make_causal_mask, make_attention_mask and combine_masks follow Flax") {
  const Tensor causal = nn::make_causal_mask(zeros({2, 3}));
  CHECK(causal.shape() == Shape{2, 1, 3, 3});
  CHECK(causal.dtype() == DType::Float32);
  CHECK(slice(causal, 0, 1, 2).to_vector() == std::vector<double>{1, 0, 0, 1, 1, 0, 1, 1, 1});
  CHECK(nn::make_causal_mask(zeros({4}), 2, DType::Bool).shape() == Shape{1, 1, 1, 4, 4});

  // Padding: tokens > 0 are real.
  const Tensor tokens = from_vector({5, 7, 0, 3, 0, 0}, {2, 3}, DType::Int32);
  const Tensor real = greater(tokens, zeros({}, DType::Int32));
  const Tensor padding = nn::make_attention_mask(real, real);
  CHECK(padding.shape() == Shape{2, 1, 3, 3});
  CHECK(slice(padding, 0, 0, 1).to_vector() == std::vector<double>{1, 1, 0, 1, 1, 0, 0, 0, 0});
  CHECK(slice(padding, 0, 1, 2).to_vector() == std::vector<double>{1, 0, 0, 0, 0, 0, 0, 0, 0});
  // A pairwise_fn and extra batch dims; different query and key lengths.
  const Tensor ge = nn::make_attention_mask(from_vector({0, 2}, {2}), from_vector({1, 2, 3}, {3}), greater_equal, 1,
                                            DType::Bool);
  CHECK(ge.shape() == Shape{1, 1, 2, 3});
  CHECK(ge.to_vector() == std::vector<double>{0, 0, 0, 1, 1, 0});
  // mul on floats multiplies: the mask is the product, cast to the dtype.
  CHECK(nn::make_attention_mask(from_vector({2}, {1}), from_vector({0.5, 0}, {2})).to_vector() ==
        std::vector<double>{1, 0});

  const Tensor combined = nn::combine_masks({padding, Tensor(), causal});
  CHECK(combined.dtype() == DType::Float32);
  CHECK(slice(combined, 0, 0, 1).to_vector() == std::vector<double>{1, 0, 0, 1, 1, 0, 0, 0, 0});
  CHECK_FALSE(nn::combine_masks({Tensor(), Tensor()}).defined());
  CHECK_THROWS_WITH_AS(nn::combine_masks({padding, ones({3, 3})}),
                       "combine_masks: masks must have the same rank, got [2, 1, 3, 3], [3, 3]", ValueError);
  CHECK_THROWS_AS(nn::make_attention_mask(zeros({2, 3}), zeros({3, 3})), ShapeError);
  CHECK_THROWS_AS(nn::make_causal_mask(scalar(1)), ShapeError);
}

namespace {

// The fixture's arrays for one case ("plain." or "masked."), prefix stripped.
std::map<std::string, Tensor> torch_case(const std::string& prefix) {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : load_npz(std::string(XGRAD_TEST_DATA) + "/attention/torch_mha.npz"))
    if (name.rfind(prefix, 0) == 0) out[name.substr(prefix.size())] = t;
  REQUIRE(out.size() == 26);
  return out;
}

const char* const kParams[] = {"query.kernel", "query.bias", "key.kernel", "key.bias",
                               "value.kernel", "value.bias", "out.kernel", "out.bias"};

}  // namespace

TEST_CASE("MultiHeadDotProductAttention matches PyTorch 1.13 nn.MultiheadAttention in float64") {
  for (const char* prefix : {"plain.", "masked."}) {
    INFO(prefix);
    auto f = torch_case(prefix);
    nn::MultiHeadDotProductAttention mha({.num_heads = 2, .param_dtype = DType::Float64});
    mha.init(f.at("inputs_q"));
    nn::StateDict state;
    for (const char* p : kParams) state[p] = f.at(p);
    mha.load_state_dict(state);  // strict: the parameter tree is exactly these eight, in Flax's shapes
    CHECK(mha.state_dict().at("query.kernel").shape() == Shape{8, 2, 4});
    CHECK(mha.state_dict().at("out.kernel").shape() == Shape{2, 4, 8});

    Tensor q = f.at("inputs_q").clone().requires_grad_(), k = f.at("inputs_k").clone().requires_grad_();
    Tensor v = f.at("inputs_v").clone().requires_grad_();
    const bool masked = std::string(prefix) == "masked.";
    const Tensor out = mha(q, k, v, {.mask = masked ? f.at("mask") : Tensor()});
    CHECK(max_abs_diff(out, f.at("output")) < 1e-6);
    CHECK(max_abs_diff(out, f.at("output")) < 1e-12);  // in fact to rounding

    // The per-head weights, from the projected query and key.
    // Projection by hand: x [B, L, 8] . kernel [8, 2 * 4] + bias -> [B, L, 2, 4].
    const auto project = [&](const char* input, const std::string& name) {
      const Tensor x = f.at(input);
      const Tensor y = matmul(x, reshape(f.at(name + ".kernel"), {8, 8})) + reshape(f.at(name + ".bias"), {8});
      return reshape(y, {x.size(0), x.size(1), 2, 4});
    };
    const Tensor w = nn::dot_product_attention_weights(project("inputs_q", "query"), project("inputs_k", "key"),
                                                       {.mask = masked ? f.at("mask") : Tensor()});
    CHECK(max_abs_diff(w, f.at("weights")) < 1e-12);

    (out * f.at("cotangent")).sum().backward();
    CHECK(max_abs_diff(q.grad(), f.at("grad.inputs_q")) < 1e-12);
    CHECK(max_abs_diff(k.grad(), f.at("grad.inputs_k")) < 1e-12);
    CHECK(max_abs_diff(v.grad(), f.at("grad.inputs_v")) < 1e-12);
    const nn::NamedTensors params = mha.named_parameters();
    for (const auto& [name, t] : params) {
      INFO(name);
      CHECK(max_abs_diff(t.grad(), f.at("grad." + name)) < 1e-12);
    }
  }
}

TEST_CASE("MultiHeadDotProductAttention parameters, defaults and SelfAttention") {
  const Tensor x = random_normal(make_key(61), {2, 5, 12});
  nn::MultiHeadDotProductAttention mha({.num_heads = 3, .qkv_features = 6, .out_features = 7});
  CHECK(mha(x).shape() == Shape{2, 5, 7});
  std::vector<std::string> names;
  for (const auto& [name, t] : mha.named_parameters()) names.push_back(name + " " + shape_str(t.shape()));
  CHECK(names == std::vector<std::string>{"query.kernel [12, 3, 2]", "query.bias [3, 2]", "key.kernel [12, 3, 2]",
                                          "key.bias [3, 2]", "value.kernel [12, 3, 2]", "value.bias [3, 2]",
                                          "out.kernel [3, 2, 7]", "out.bias [7]"});
  CHECK(mha.describe() == "MultiHeadDotProductAttention, num_heads=3");
  // Flax's default kernel_init (lecun_normal on the flattened [in, features] kernel) from each path.
  const Tensor expected = reshape(
      nn::initializers::lecun_normal()(fold_in(make_key(0), "query.kernel"), {12, 6}, DType::Float32), {12, 3, 2});
  CHECK(mha.state_dict().at("query.kernel").to_vector() == expected.to_vector());

  // Defaults: qkv_features and out_features from the query input; cross-attention
  // to a key input of another length and width (value defaults to the key input).
  nn::MultiHeadDotProductAttention cross({.num_heads = 2, .use_bias = false});
  const Tensor kv = random_normal(make_key(62), {2, 9, 3});
  CHECK(cross(random_normal(make_key(63), {2, 4, 6}), kv).shape() == Shape{2, 4, 6});
  CHECK(cross.state_dict().at("key.kernel").shape() == Shape{3, 2, 3});
  CHECK(cross.state_dict().size() == 4);

  // SelfAttention is MultiHeadDotProductAttention(x) with the same parameters.
  nn::SelfAttention self({.num_heads = 3, .qkv_features = 6, .out_features = 7});
  CHECK(self.describe() == "SelfAttention, num_heads=3");
  CHECK(self(x).to_vector() == mha(x).to_vector());
  const Tensor causal = nn::make_causal_mask(zeros({2, 5}));
  CHECK(self(x, {.mask = causal}).to_vector() == mha(x, x, x, {.mask = causal}).to_vector());
  CHECK(self(x, {.mask = causal}).to_vector() != self(x).to_vector());

  nn::MultiHeadDotProductAttention normalized({.num_heads = 2, .normalize_qk = true});
  normalized.init(x);
  names.clear();
  for (const auto& [name, t] : normalized.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"query.kernel", "query.bias", "key.kernel", "key.bias", "value.kernel",
                                          "value.bias", "query_ln.scale", "key_ln.scale", "out.kernel", "out.bias"});
}

TEST_CASE("MultiHeadDotProductAttention gradchecks with respect to inputs and parameters") {
  nn::MultiHeadDotProductAttention mha({.num_heads = 2, .param_dtype = DType::Float64, .qkv_features = 4,
                                        .bias_init = nn::initializers::normal(0.5)});
  const Tensor x = normal64(71, {2, 3, 5});
  mha.init(x);
  test_support::check_module_gradients(mha, x, {"query.kernel", "key.bias", "value.kernel", "out.kernel", "out.bias"});
  // Cross-attention with a padding mask and normalize_qk: every input and parameter.
  nn::MultiHeadDotProductAttention cross({.num_heads = 2, .param_dtype = DType::Float64, .qkv_features = 4,
                                          .normalize_qk = true});
  const Tensor q = normal64(72, {2, 3, 5}), kv = normal64(73, {2, 4, 5});
  cross(q, kv);
  const Tensor mask = reshape(from_vector({1, 1, 0, 1, 1, 1, 1, 0}, {2, 4}, DType::Bool), {2, 1, 1, 4});
  const nn::StateDict state = cross.state_dict();
  std::vector<std::string> names;
  std::vector<Tensor> inputs{q, kv};
  for (const auto& [name, t] : state) names.push_back(name), inputs.push_back(t);
  const GradcheckReport r = gradcheck([&](const std::vector<Tensor>& in) {
    nn::StateDict substitutes;
    for (std::size_t i = 0; i < names.size(); ++i) substitutes[names[i]] = in[i + 2];
    return cross.functional_call(substitutes, [&] { return cross(in[0], in[1], Tensor(), {.mask = mask}); });
  }, inputs);
  CHECK_MESSAGE(r.ok, r.to_string());
}

TEST_CASE("MultiHeadDotProductAttention dropout follows the module's mode and the call") {
  nn::MultiHeadDotProductAttention mha({.num_heads = 2, .dropout_rate = 0.5});
  const Tensor x = random_normal(make_key(81), {2, 4, 6});
  mha.init(x);
  mha.eval();
  const Tensor clean = mha(x);
  CHECK(mha(x).to_vector() == clean.to_vector());
  mha.train();
  CHECK(mha(x).to_vector() != clean.to_vector());
  CHECK(mha(x, x, x, {.deterministic = true}).to_vector() == clean.to_vector());
  // A given dropout_rng gives the same draw each time.
  CHECK(mha(x, x, x, {.dropout_rng = make_key(5)}).to_vector() == mha(x, x, x, {.dropout_rng = make_key(5)}).to_vector());
  nn::MultiHeadDotProductAttention fixed({.num_heads = 2, .dropout_rate = 0.5, .deterministic = true});
  CHECK(fixed(x).shape() == Shape{2, 4, 6});
  CHECK(error_of<ValueError>([&] { fixed(x, x, x, {.deterministic = false}); })
            .find("deterministic is set both in the options and in the call") != std::string::npos);
}

TEST_CASE("MultiHeadDotProductAttention errors") {
  CHECK_THROWS_WITH_AS(nn::MultiHeadDotProductAttention({.num_heads = 3, .qkv_features = 8}),
                       "MultiHeadDotProductAttention: qkv_features (8) must be divisible by num_heads (3)", ValueError);
  CHECK_THROWS_AS(nn::MultiHeadDotProductAttention({.num_heads = 0}), ValueError);
  CHECK_THROWS_AS(nn::MultiHeadDotProductAttention({.num_heads = 2, .dropout_rate = 1.0}), ValueError);

  struct Net : nn::Module {
    nn::MultiHeadDotProductAttention attention{{.num_heads = 3}};
    Tensor mask;
    Net() { register_module("attention", attention); }
    Tensor forward(const Tensor& x) override { return attention(x, x, {}, {.mask = mask}); }
  } net;
  CHECK_THROWS_WITH_AS(net(zeros({2, 4, 8})),
                       "attention (MultiHeadDotProductAttention, num_heads=3): qkv_features (8, the query input's "
                       "features) must be divisible by num_heads (3)",
                       ValueError);
  const Tensor x = zeros({2, 4, 6});
  net(x);
  net.mask = ones({2, 3, 4, 4});  // one mask per batch entry and head fits
  CHECK(net(x).shape() == Shape{2, 4, 6});
  net.mask = ones({2, 1, 5, 4});
  CHECK_THROWS_WITH_AS(net(x),
                       "attention (MultiHeadDotProductAttention, num_heads=3): dot_product_attention: mask [2, 1, 5, 4] "
                       "does not broadcast to the attention weights [2, 3, 4, 4] [batch..., heads, q_length, "
                       "kv_length]",
                       ShapeError);
  net.mask = Tensor();
  // A key input of another width than the key kernel was made for.
  CHECK(error_of<ShapeError>([&] { net.attention(x, zeros({2, 4, 5})); }).find("key") != std::string::npos);
  CHECK_THROWS_WITH_AS(net.attention(x, Tensor(), x), "attention (MultiHeadDotProductAttention, num_heads=3): inputs_k "
                       "cannot be undefined if inputs_v is defined; to use the same tensor for both, pass it as "
                       "inputs_k and leave inputs_v undefined", ValueError);
  CHECK_THROWS_AS(net.attention(zeros({6})), ShapeError);
}

TEST_CASE("force_fp32_for_softmax: the softmax and the weights in float32 for 16-bit inputs, as Flax") {
  const Tensor q64 = normal64(91, {2, 3, 2, 4}), k64 = normal64(92, {2, 5, 2, 4}), v64 = normal64(93, {2, 5, 2, 3});
  const Tensor mask = slice(nn::make_causal_mask(zeros({2, 5})), 2, 0, 3);
  const Tensor q = q64.astype(DType::BFloat16), k = k64.astype(DType::BFloat16), v = v64.astype(DType::BFloat16);
  // Without the flag the weights are bfloat16; with it float32, and so is the output (promoted with v).
  CHECK(nn::dot_product_attention_weights(q, k, {.mask = mask}).dtype() == DType::BFloat16);
  const Tensor w32 = nn::dot_product_attention_weights(q, k, {.mask = mask, .force_fp32_for_softmax = true});
  CHECK(w32.dtype() == DType::Float32);
  const Tensor out = nn::dot_product_attention(q, k, v, {.mask = mask, .force_fp32_for_softmax = true});
  CHECK(out.dtype() == DType::Float32);
  // The float32 weights are the softmax of the bfloat16 scores: the reference from the
  // same (bfloat16-rounded) operands in float64, to float32 precision.
  const Tensor vr = v.astype(DType::Float64);
  const Tensor scores = attention_scores(q, k, 0.5).astype(DType::Float64);  // the bfloat16 scores, depth 4
  const Tensor masked = where(not_equal(mask, zeros({})), scores, full({}, -1e30, DType::Float64));
  CHECK(max_abs_diff(w32.astype(DType::Float64), softmax(masked, -1)) < 1e-6);
  const Tensor expected = attention_values(softmax(masked, -1), vr);
  CHECK(max_abs_diff(out.astype(DType::Float64), expected) < 1e-5);
  // bfloat16 weights are rounded to 8 bits: farther from the reference than the float32 ones.
  const Tensor w16 = nn::dot_product_attention_weights(q, k, {.mask = mask});
  CHECK(max_abs_diff(w16.astype(DType::Float64), softmax(masked, -1)) > 1e-4);
  // float32 inputs: the flag changes nothing.
  const Tensor q32 = q64.astype(DType::Float32), k32 = k64.astype(DType::Float32), v32 = v64.astype(DType::Float32);
  CHECK(nn::dot_product_attention(q32, k32, v32, {.mask = mask, .force_fp32_for_softmax = true}).to_vector() ==
        nn::dot_product_attention(q32, k32, v32, {.mask = mask}).to_vector());
}

TEST_CASE("MultiHeadDotProductAttention attention_fn and force_fp32_for_softmax reach the attention function") {
  const Tensor x = normal64(101, {2, 4, 6});
  const Tensor mask = nn::make_causal_mask(zeros({2, 4}));
  nn::MultiHeadDotProductAttention plain({.num_heads = 2, .param_dtype = DType::Float64});
  const Tensor expected = plain(x, x, {}, {.mask = mask});
  // A user function that records what it was given and doubles the default's result;
  // with zero biases the out projection is linear, so the module's output doubles.
  int calls = 0;
  nn::DotProductAttentionOptions seen;
  Shape query_shape;
  nn::MultiHeadDotProductAttention custom(
      {.num_heads = 2,
       .param_dtype = DType::Float64,
       .attention_fn = [&](const Tensor& q, const Tensor& k, const Tensor& v, const nn::DotProductAttentionOptions& o) {
         ++calls;
         seen = o;
         query_shape = q.shape();
         return nn::dot_product_attention(q, k, v, o) * 2.0;
       }});
  custom.init(x);
  custom.load_state_dict(plain.state_dict());  // zero biases, the same kernels
  const Tensor y = custom(x, x, {}, {.mask = mask});
  CHECK(calls == 2);  // init and the call
  CHECK(query_shape == Shape{2, 4, 2, 3});
  CHECK_FALSE(seen.force_fp32_for_softmax);
  CHECK(seen.mask.defined());
  CHECK(max_abs_diff(seen.mask, mask) == 0.0);
  CHECK(max_abs_diff(y, expected * 2.0) < 1e-12);
  // Gradients flow through the user's function.
  test_support::check_module_gradients(custom, x, {"query.kernel", "value.bias", "out.kernel"});

  // force_fp32_for_softmax reaches the function with the other options. As in Flax, a
  // dtype other than float32 (here float64) then has its softmax computed in float32.
  nn::MultiHeadDotProductAttention forced(
      {.num_heads = 2,
       .param_dtype = DType::Float64,
       .attention_fn = [&](const Tensor& q, const Tensor& k, const Tensor& v, const nn::DotProductAttentionOptions& o) {
         seen = o;
         return nn::dot_product_attention(q, k, v, o);
       },
       .force_fp32_for_softmax = true});
  forced.init(x);
  forced.load_state_dict(plain.state_dict());
  const Tensor z = forced(x, x, {}, {.mask = mask});
  CHECK(seen.force_fp32_for_softmax);
  CHECK(z.dtype() == DType::Float64);  // the float32 weights promote with the float64 values
  const double difference = max_abs_diff(z, expected);
  CHECK(difference > 0.0);
  CHECK(difference < 1e-5);
}

namespace {

// A decode-mode attention and an ordinary one with the same parameters.
struct DecodePair {
  nn::MultiHeadDotProductAttention decoder{{.num_heads = 2, .param_dtype = DType::Float64, .qkv_features = 4,
                                            .bias_init = nn::initializers::normal(0.5), .decode = true}};
  nn::MultiHeadDotProductAttention full{{.num_heads = 2, .param_dtype = DType::Float64, .qkv_features = 4,
                                         .bias_init = nn::initializers::normal(0.5)}};
  explicit DecodePair(const Tensor& x) {
    full.init(x);
    decoder.init(x);  // creates the cache: [batch..., max_length, heads, head_dim]
    nn::StateDict params = full.state_dict();
    for (const auto& [name, t] : decoder.state_dict())
      if (name.rfind("cache", 0) == 0 || name.rfind("cached", 0) == 0) params[name] = t;
    decoder.load_state_dict(params);
  }
};

Tensor token(const Tensor& x, std::int64_t t) { return slice(x, -2, t, t + 1); }

}  // namespace

TEST_CASE("MultiHeadDotProductAttention decode: token by token equals the full causal computation") {
  const Tensor x = normal64(111, {2, 5, 6});
  DecodePair pair(x);
  const nn::NamedTensors buffers = pair.decoder.named_buffers();
  REQUIRE(buffers.size() == 3);
  CHECK(pair.decoder.state_dict().at("cached_key").shape() == Shape{2, 5, 2, 2});
  CHECK(pair.decoder.state_dict().at("cached_value").shape() == Shape{2, 5, 2, 2});
  const Tensor index = pair.decoder.state_dict().at("cache_index");
  CHECK(index.dtype() == DType::Int32);
  CHECK(index.shape() == Shape{});
  CHECK(index.item() == 0.0);

  const Tensor reference = pair.full(x, x, {}, {.mask = nn::make_causal_mask(zeros({2, 5}))});
  for (std::int64_t t = 0; t < 5; ++t) {
    const Tensor y = pair.decoder(token(x, t));
    CHECK(y.shape() == Shape{2, 1, 6});
    CHECK(max_abs_diff(y, token(reference, t)) < 1e-12);
    CHECK(pair.decoder.state_dict().at("cache_index").item() == static_cast<double>(t + 1));
  }
  // The cache now holds every position's projected key: key(x) of the full module.
  const nn::StateDict params = pair.full.state_dict();
  const Tensor keys = reshape(matmul(reshape(x, {10, 6}), reshape(params.at("key.kernel"), {6, 4})), {2, 5, 2, 2}) +
                     params.at("key.bias");
  CHECK(max_abs_diff(pair.decoder.state_dict().at("cached_key"), keys) < 1e-12);
  // A sixth token does not fit.
  CHECK(error_of<ValueError>([&] { pair.decoder(token(x, 0)); }).find("the cache is full") != std::string::npos);
  // Two tokens at once are not a decode step.
  DecodePair other(x);
  CHECK(error_of<ValueError>([&] { other.decoder(slice(x, -2, 0, 2)); })
            .find("Autoregressive cache shape error, expected query shape [2, 1, 2, 2] instead got [2, 2, 2, 2]") !=
        std::string::npos);
}

TEST_CASE("MultiHeadDotProductAttention decode: a call's mask is combined with the cache positions") {
  const Tensor x = normal64(121, {2, 4, 6});
  DecodePair pair(x);
  // Batch entry 1 may not attend to position 2: a padding mask [batch, 1, 1, max_length].
  const Tensor padding = reshape(from_vector({1, 1, 1, 1, 1, 1, 0, 1}, {2, 4}, DType::Bool), {2, 1, 1, 4});
  const Tensor reference =
      pair.full(x, x, {}, {.mask = nn::combine_masks({padding, nn::make_causal_mask(zeros({2, 4}))})});
  for (std::int64_t t = 0; t < 4; ++t) {
    const Tensor y = pair.decoder(token(x, t), Tensor(), Tensor(), {.mask = padding});
    CHECK(max_abs_diff(y, token(reference, t)) < 1e-12);
  }
}

TEST_CASE("MultiHeadDotProductAttention decode step gradchecks with respect to the token and parameters") {
  const Tensor x = normal64(131, {2, 3, 6});
  DecodePair pair(x);
  pair.decoder(token(x, 0));  // one cached position, so the step attends to two
  const nn::StateDict snapshot = [&] {
    nn::StateDict s;
    for (const auto& [name, t] : pair.decoder.state_dict()) s[name] = t.clone();
    return s;
  }();
  const std::vector<std::string> names{"query.kernel", "key.kernel", "value.bias", "out.kernel"};
  std::vector<Tensor> inputs{token(x, 1).clone()};
  for (const auto& n : names) inputs.push_back(snapshot.at(n));
  const GradcheckReport r = gradcheck([&](const std::vector<Tensor>& in) {
    pair.decoder.load_state_dict(snapshot);  // every evaluation is the same step
    nn::StateDict substitutes;
    for (std::size_t i = 0; i < names.size(); ++i) substitutes[names[i]] = in[i + 1];
    return pair.decoder.functional_call(substitutes, in[0]);
  }, inputs);
  CHECK_MESSAGE(r.ok, r.to_string());
}
