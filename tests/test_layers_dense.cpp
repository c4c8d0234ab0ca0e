// Dense, DenseGeneral and Embed: values, parameter shapes and init, dtype
// promotion, and gradchecks with respect to inputs and parameters.
#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;
namespace init = xgrad::nn::initializers;

namespace {

void set(nn::Module& model, const std::string& name, const std::vector<double>& values) {
  Tensor t = model.state_dict().at(name);
  t.copy_(from_vector(values, t.shape(), DType::Float64));
}

}  // namespace

TEST_CASE("Dense computes x W + b with a lecun_normal kernel drawn from the path") {
  nn::Dense dense({.features = 3});
  Tensor x = from_vector({1, 2}, {1, 2});
  dense.init(x);
  const nn::StateDict s = dense.state_dict();
  CHECK(s.at("kernel").shape() == Shape{2, 3});
  CHECK(s.at("bias").to_vector() == std::vector<double>{0, 0, 0});
  CHECK(s.at("kernel").to_vector() == init::lecun_normal()(fold_in(make_key(0), "kernel"), {2, 3}, DType::Float32).to_vector());
  set(dense, "kernel", {1, 2, 3, 4, 5, 6});
  set(dense, "bias", {0.5, 0, -1});
  CHECK(dense(x).to_vector() == std::vector<double>{9.5, 12, 14});
  // Leading dims are batch dims; a 1-D input is one example.
  Tensor batch = from_vector({1, 2, 0, 1, -1, 0}, {3, 1, 2});
  Tensor y = dense(batch);
  CHECK(y.shape() == Shape{3, 1, 3});
  CHECK(y.to_vector() == std::vector<double>{9.5, 12, 14, 4.5, 5, 5, -0.5, -2, -4});
  CHECK(dense(from_vector({1, 2}, {2})).shape() == Shape{3});
  CHECK(dense.describe() == "Dense, features=3");
  nn::Dense no_bias({.features = 2, .use_bias = false});
  no_bias.init(x);
  CHECK(no_bias.state_dict().size() == 1);
  CHECK_THROWS_WITH_AS(nn::Dense({.features = 0}), "Dense: features must be positive, got 0", ValueError);
}

TEST_CASE("Dense dtypes follow flax promote_dtype") {
  Tensor x32 = ones({2, 4});
  nn::Dense promoted({.features = 3});
  CHECK(promoted(x32.astype(DType::BFloat16)).dtype() == DType::Float32);  // bf16 input, f32 params
  CHECK(promoted(ones({2, 4}, DType::Int32)).dtype() == DType::Float32);
  nn::Dense forced({.features = 3, .dtype = DType::BFloat16});
  CHECK(forced(x32).dtype() == DType::BFloat16);
  nn::Dense half_params({.features = 3, .param_dtype = DType::BFloat16});
  CHECK(half_params(x32.astype(DType::BFloat16)).dtype() == DType::BFloat16);
  CHECK(half_params.state_dict().at("kernel").dtype() == DType::BFloat16);
  nn::Dense wide({.features = 3, .param_dtype = DType::Float64});
  CHECK(wide(x32).dtype() == DType::Float64);
  CHECK_THROWS_WITH_AS(nn::Dense({.features = 3, .dtype = DType::Int32})(x32),
                       "Dense, features=3: Dtype must be inexact: int32 (give a floating dtype such as float32 or "
                       "bfloat16, or none to infer it)",
                       ValueError);
}

TEST_CASE("Dense precision Highest accumulates float32 products in float64") {
  // 1 + 1e-8 - 1 cancels in float32 accumulation, not in float64.
  Tensor x = from_vector({1.0, 1e-8, -1.0}, {1, 3}, DType::Float64).astype(DType::Float32);
  nn::Dense highest({.features = 1, .use_bias = false, .precision = Precision::Highest,
                     .kernel_init = init::ones()});
  const double exact = 1.0 + static_cast<double>(1e-8f) - 1.0;
  Tensor y = highest(x);
  CHECK(y.dtype() == DType::Float32);
  CHECK(y.item() == doctest::Approx(exact).epsilon(1e-6).scale(0));
}

TEST_CASE("Dense gradients with respect to input, kernel and bias") {
  nn::Dense dense({.features = 3, .param_dtype = DType::Float64});
  Tensor x = random_normal(make_key(1), {4, 5}, DType::Float64);
  dense.init(x);
  test_support::check_module_gradients(dense, x, {"kernel", "bias"});
  test_support::check_module_gradients(dense, random_normal(make_key(2), {2, 3, 5}, DType::Float64), {"kernel", "bias"});
}

TEST_CASE("DenseGeneral contracts several axes, keeps batch dims, and initialises on the flat kernel") {
  SUBCASE("features tuple over the last axis") {
    nn::DenseGeneral layer({.features = {2, 3}});
    Tensor x = random_normal(make_key(3), {4, 5});
    Tensor y = layer(x);
    CHECK(y.shape() == Shape{4, 2, 3});
    const nn::StateDict s = layer.state_dict();
    CHECK(s.at("kernel").shape() == Shape{5, 2, 3});
    CHECK(s.at("bias").shape() == Shape{2, 3});
    // fan_in 5: the kernel is lecun_normal of the flattened [5, 6] matrix.
    CHECK(s.at("kernel").to_vector() ==
          init::lecun_normal()(fold_in(make_key(0), "kernel"), {5, 6}, DType::Float32).to_vector());
    // Equal to a Dense with the flattened kernel.
    Tensor expected = matmul(x, s.at("kernel").reshape({5, 6})).reshape({4, 2, 3});
    const auto a = y.to_vector(), b = expected.to_vector();
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]));
    CHECK(layer.describe() == "DenseGeneral, features=[2, 3]");
  }
  SUBCASE("contracting a middle and a last axis, in the order given") {
    nn::DenseGeneral layer({.features = {4}, .axis = {2, 1}, .use_bias = false});
    Tensor x = random_normal(make_key(4), {2, 3, 5});
    Tensor y = layer(x);
    CHECK(y.shape() == Shape{2, 4});
    Tensor k = layer.state_dict().at("kernel");
    CHECK(k.shape() == Shape{5, 3, 4});
    // y[b, f] = sum_{i, j} x[b, j, i] k[i, j, f]
    double expected = 0;
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 3; ++j) expected += x.at({1, j, i}) * k.at({i, j, 2});
    CHECK(y.at({1, 2}) == doctest::Approx(expected));
  }
  SUBCASE("batch dims give each batch entry its own kernel") {
    nn::DenseGeneral layer({.features = {5}, .batch_dims = {0}, .param_dtype = DType::Float64});
    Tensor x = random_normal(make_key(5), {2, 3, 4}, DType::Float64);
    Tensor y = layer(x);
    CHECK(y.shape() == Shape{2, 3, 5});
    const nn::StateDict s = layer.state_dict();
    CHECK(s.at("kernel").shape() == Shape{2, 4, 5});
    CHECK(s.at("bias").shape() == Shape{2, 5});
    set(layer, "bias", std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    Tensor k = s.at("kernel");
    double expected = 7;  // bias[1][1]
    for (int i = 0; i < 4; ++i) expected += x.at({1, 2, i}) * k.at({1, i, 1});
    CHECK(layer(x).at({1, 2, 1}) == doctest::Approx(expected));
    test_support::check_module_gradients(layer, x, {"kernel", "bias"});
  }
  SUBCASE("gradients through a transposed contraction") {
    nn::DenseGeneral layer({.features = {2, 2}, .axis = {0}, .param_dtype = DType::Float64});
    Tensor x = random_normal(make_key(6), {3, 2}, DType::Float64);
    layer.init(x);
    test_support::check_module_gradients(layer, x, {"kernel", "bias"});
  }
  nn::DenseGeneral bad({.features = {2}, .batch_dims = {1}});
  CHECK_THROWS_WITH_AS(bad(ones({2, 3, 4})),
                       "DenseGeneral, features=[2]: batch_dims [1] must be consecutive leading dimensions starting "
                       "from 0",
                       ValueError);
}

TEST_CASE("Embed looks up rows, attends with the shared table, and draws N(0, 1/features)") {
  nn::Embed embed({.num_embeddings = 4, .features = 3, .param_dtype = DType::Float64});
  Tensor ids = from_vector({3, 0, 3}, {3}, DType::Int32);
  Tensor y = embed(ids);
  CHECK(y.shape() == Shape{3, 3});
  Tensor table = embed.state_dict().at("embedding");
  CHECK(table.shape() == Shape{4, 3});
  CHECK(y.at({0, 1}) == table.at({3, 1}));
  CHECK(y.at({1, 2}) == table.at({0, 2}));
  Tensor q = random_normal(make_key(7), {2, 3}, DType::Float64);
  Tensor logits = embed.attend(q);
  CHECK(logits.shape() == Shape{2, 4});
  double dot = 0;
  for (int f = 0; f < 3; ++f) dot += q.at({1, f}) * table.at({2, f});
  CHECK(logits.at({1, 2}) == doctest::Approx(dot));
  CHECK(embed.describe() == "Embed, num_embeddings=4, features=3");
  CHECK_THROWS_WITH_AS(embed(ones({2})),
                       "Embed, num_embeddings=4, features=3: Input type must be an integer or unsigned integer, got "
                       "float32",
                       ValueError);

  // Gradients: the lookup scatters into the table rows; attend is a matmul.
  GradcheckReport r = gradcheck(
      [&](const std::vector<Tensor>& in) { return embed.functional_call({{"embedding", in[0]}}, ids); }, {table},
      test_support::every_check);
  CHECK_MESSAGE(r.ok, r.to_string());
  GradcheckReport r2 = gradcheck(
      [&](const std::vector<Tensor>& in) {
        return embed.functional_call({{"embedding", in[1]}}, [&] { return embed.attend(in[0]); });
      },
      {q, table}, test_support::every_check);
  CHECK_MESSAGE(r2.ok, r2.to_string());

  nn::Embed big({.num_embeddings = 2000, .features = 50});
  Tensor e = big(from_vector({0}, {1}, DType::Int64));
  const auto v = big.state_dict().at("embedding").to_vector();
  double var = 0;
  for (double x : v) var += x * x;
  CHECK(var / static_cast<double>(v.size()) == doctest::Approx(1.0 / 50).epsilon(0.03).scale(0));
}
