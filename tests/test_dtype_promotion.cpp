// dtype rules of the elementwise ops: the JAX lattice (docs/convlocal.md §7.2), weak scalars,
// true division, bool arithmetic and the unary ops' result dtypes.
#include <array>
#include <map>
#include <string>

#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;

namespace {

DType abbreviated(const std::string& name) {
  static const std::map<std::string, DType> names = {
      {"b1", DType::Bool},       {"i32", DType::Int32},   {"i64", DType::Int64},  {"bf16", DType::BFloat16},
      {"f16", DType::Float16},   {"f32", DType::Float32}, {"f64", DType::Float64}};
  return names.at(name);
}

// Restores the default float dtype when a test changes it.
struct DefaultFloatGuard {
  DType saved = default_float_dtype();
  ~DefaultFloatGuard() { set_default_float_dtype(saved); }
};

}  // namespace

TEST_CASE("promote_types and add follow JAX's table (docs/convlocal.md §7.2), cell by cell") {
  // docs/convlocal.md §7.2: the rows and columns of xgrad's seven dtypes, in the order of that table.
  const std::array<std::string, 7> order = {"b1", "i32", "i64", "bf16", "f16", "f32", "f64"};
  const std::array<std::array<std::string, 7>, 7> table = {{
      {"b1", "i32", "i64", "bf16", "f16", "f32", "f64"},
      {"i32", "i32", "i64", "bf16", "f16", "f32", "f64"},
      {"i64", "i64", "i64", "bf16", "f16", "f32", "f64"},
      {"bf16", "bf16", "bf16", "bf16", "f32", "f32", "f64"},
      {"f16", "f16", "f16", "f32", "f16", "f32", "f64"},
      {"f32", "f32", "f32", "f32", "f32", "f32", "f64"},
      {"f64", "f64", "f64", "f64", "f64", "f64", "f64"},
  }};
  for (std::size_t r = 0; r < 7; ++r) {
    for (std::size_t c = 0; c < 7; ++c) {
      const DType a = abbreviated(order[r]), b = abbreviated(order[c]), expected = abbreviated(table[r][c]);
      CAPTURE(order[r]);
      CAPTURE(order[c]);
      CHECK(promote_types(a, b) == expected);
      const Tensor sum = add(ones({2}, a), ones({1}, b));
      CHECK(sum.dtype() == expected);
      CHECK(sum.shape() == Shape{2});
    }
  }
}

TEST_CASE("C++ scalars are weak: they never widen a tensor of their own kind") {
  CHECK((ones({2}, DType::Float16) * 2.0).dtype() == DType::Float16);
  CHECK((2.0 * ones({2}, DType::BFloat16)).dtype() == DType::BFloat16);
  CHECK((ones({2}, DType::Float64) - 1.5f).dtype() == DType::Float64);
  CHECK((ones({2}, DType::Float32) + 1).dtype() == DType::Float32);
  CHECK((ones({2}, DType::Int32) * 2).dtype() == DType::Int32);
  CHECK((ones({2}, DType::Int64) + std::int64_t{3}).dtype() == DType::Int64);
  // A float scalar with an integer or bool tensor gives the default float dtype.
  CHECK((ones({2}, DType::Int32) * 2.5).dtype() == DType::Float32);
  CHECK((ones({2}, DType::Int64) * 2.5).dtype() == DType::Float32);
  CHECK((ones({2}, DType::Bool) * 1.0).dtype() == DType::Float32);
  // An integer scalar with a bool tensor gives Int32.
  const Tensor counted = ones({2}, DType::Bool) * 1;
  CHECK(counted.dtype() == DType::Int32);
  CHECK(counted.to_vector() == std::vector<double>{1, 1});
  CHECK((3 - ones({2}, DType::Bool)).to_vector() == std::vector<double>{2, 2});
  // Values: i32 * 2.5 is computed in float, not truncated.
  CHECK((full({1}, 3, DType::Int32) * 2.5).item() == 7.5);
}

TEST_CASE("the default float dtype decides where weak floats and true division land") {
  DefaultFloatGuard guard;
  set_default_float_dtype(DType::Float64);
  CHECK((ones({2}, DType::Int32) * 2.5).dtype() == DType::Float64);
  CHECK(div(ones({2}, DType::Int32), ones({2}, DType::Int32)).dtype() == DType::Float64);
  CHECK(exp(ones({2}, DType::Int64)).dtype() == DType::Float64);
  // A strong float tensor is never widened by the default.
  CHECK((ones({2}, DType::Float16) * 2.5).dtype() == DType::Float16);
}

TEST_CASE("division is true division: integer and bool quotients are floating") {
  const Tensor seven = full({1}, 7, DType::Int32), two = full({1}, 2, DType::Int32);
  const Tensor q = seven / two;
  CHECK(q.dtype() == DType::Float32);
  CHECK(q.item() == 3.5);
  CHECK((seven / 2).dtype() == DType::Float32);
  CHECK((seven / 2).item() == 3.5);
  CHECK((2 / two).item() == 1.0);
  CHECK((1 / ones({1}, DType::Bool)).dtype() == DType::Float32);
  CHECK(div(full({1}, 7, DType::Int64), full({1}, 2, DType::Int32)).item() == 3.5);
  CHECK(div(ones({1}, DType::Bool), ones({1}, DType::Bool)).dtype() == DType::Float32);
  CHECK(div(ones({1}, DType::Int32), ones({1}, DType::Float16)).dtype() == DType::Float16);
  CHECK(div(ones({1}, DType::Float16), ones({1}, DType::BFloat16)).dtype() == DType::Float32);
  CHECK((ones({1}, DType::BFloat16) / 3).dtype() == DType::BFloat16);
}

TEST_CASE("bool arithmetic follows jax.numpy: add is or, mul is and, sub is an error") {
  const Tensor p = from_vector({1, 1, 0, 0}, {4}, DType::Bool);
  const Tensor q = from_vector({1, 0, 1, 0}, {4}, DType::Bool);
  CHECK(add(p, q).dtype() == DType::Bool);
  CHECK(add(p, q).to_vector() == std::vector<double>{1, 1, 1, 0});
  CHECK(mul(p, q).dtype() == DType::Bool);
  CHECK(mul(p, q).to_vector() == std::vector<double>{1, 0, 0, 0});
  CHECK(maximum(p, q).to_vector() == std::vector<double>{1, 1, 1, 0});
  CHECK(minimum(p, q).to_vector() == std::vector<double>{1, 0, 0, 0});
  CHECK_THROWS_WITH_AS(sub(p, q),
                       "sub: subtracting bool tensors is not supported (shapes [4] and [4]), as in jnp.subtract; use "
                       "logical_not / not_equal, or cast to an integer dtype first",
                       DTypeError);
  // With an integer operand, bool promotes and subtraction is fine.
  CHECK(sub(p, ones({4}, DType::Int32)).to_vector() == std::vector<double>{0, 0, -1, -1});
  // pow computes in Int32 (jnp.power's numeric promotion).
  const Tensor powered = pow(p, q);
  CHECK(powered.dtype() == DType::Int32);
  CHECK(powered.to_vector() == std::vector<double>{1, 1, 0, 1});
}

TEST_CASE("pow, maximum, where and comparisons promote like add") {
  CHECK(pow(ones({1}, DType::Int32), ones({1}, DType::Int64)).dtype() == DType::Int64);
  CHECK(pow(ones({1}, DType::Int32), 2.0).dtype() == DType::Float32);
  CHECK(pow(ones({1}, DType::Float16), 2.0).dtype() == DType::Float16);
  CHECK(pow(ones({1}, DType::Int32), ones({1}, DType::BFloat16)).dtype() == DType::BFloat16);
  CHECK(maximum(ones({1}, DType::Int64), ones({1}, DType::Float32)).dtype() == DType::Float32);
  CHECK(minimum(ones({1}, DType::BFloat16), ones({1}, DType::Float16)).dtype() == DType::Float32);
  const Tensor c = ones({1}, DType::Bool);
  CHECK(where(c, ones({1}, DType::Int32), ones({1}, DType::Float16)).dtype() == DType::Float16);
  CHECK(where(c, ones({1}, DType::Bool), ones({1}, DType::Bool)).dtype() == DType::Bool);
  CHECK(less(ones({1}, DType::Int64), ones({1}, DType::Float16)).dtype() == DType::Bool);
  CHECK(logical_not(ones({1}, DType::Float32)).dtype() == DType::Bool);
}

TEST_CASE("unary ops: floating functions of integers are floating; the rest keep integer dtypes") {
  for (DType d : {DType::Bool, DType::Int32, DType::Int64}) {
    const Tensor x = ones({2}, d);
    CAPTURE(dtype_name(d));
    for (const Tensor& y : {exp(x), log(x), sqrt(x), rsqrt(x), tanh(x), sigmoid(x), softplus(x), gelu(x),
                            gelu(x, false)})
      CHECK(y.dtype() == DType::Float32);
  }
  CHECK(exp(ones({1}, DType::Int32)).item() == doctest::Approx(2.718281828459045).epsilon(1e-7));
  for (DType d : {DType::Int32, DType::Int64}) {
    const Tensor x = full({1}, -3, d);
    CHECK(neg(x).dtype() == d);
    CHECK(abs(x).dtype() == d);
    CHECK(square(x).dtype() == d);
    CHECK(sign(x).dtype() == d);
    CHECK(relu(x).dtype() == d);
    CHECK(clip(x, 0, 5).dtype() == d);
  }
  // bool: abs is the identity; square, sign, relu and clip compute in Int32; neg is an error.
  const Tensor t = ones({1}, DType::Bool);
  CHECK(abs(t).dtype() == DType::Bool);
  CHECK(square(t).dtype() == DType::Int32);
  CHECK(sign(t).dtype() == DType::Int32);
  CHECK(relu(t).dtype() == DType::Int32);
  CHECK(clip(t, 0, 1).dtype() == DType::Int32);
  CHECK_THROWS_WITH_AS(neg(t), "neg: negating a bool tensor [1] is not supported, as in jnp.negative; use logical_not",
                       DTypeError);
  for (DType d : {DType::Float16, DType::BFloat16, DType::Float32, DType::Float64})
    for (const Tensor& y : {exp(ones({1}, d)), relu(ones({1}, d)), gelu(ones({1}, d)), clip(ones({1}, d), 0, 1),
                            pow(ones({1}, d), 3.0)})
      CHECK(y.dtype() == d);
}

TEST_CASE("casts keep the gradient only between floating dtypes") {
  Tensor x = from_vector({1.5, -2.0}, {2}, DType::Float32).requires_grad_();
  Tensor y = cast(x, DType::Float64);
  CHECK(y.requires_grad());
  (y * 3.0).sum().backward();
  CHECK(x.grad().dtype() == DType::Float32);
  CHECK(x.grad().to_vector() == std::vector<double>{3, 3});
  CHECK_FALSE(cast(x, DType::Int32).requires_grad());
  CHECK_FALSE(cast(x, DType::Bool).requires_grad());
  CHECK(cast(x, DType::Int32).to_vector() == std::vector<double>{1, -2});
  // Same dtype: the very same tensor, nothing recorded.
  CHECK(cast(x, DType::Float32).impl() == x.impl());
  // Through float16 and back: the gradient arrives in float32.
  Tensor z = from_vector({0.25}, {1}, DType::Float32).requires_grad_();
  cast(cast(z, DType::Float16) * 4.0, DType::Float32).sum().backward();
  CHECK(z.grad().dtype() == DType::Float32);
  CHECK(z.grad().item() == 4.0);
}

TEST_CASE("operators with scalars equal the ops on weak_scalar tensors, for every dtype and side") {
  for (DType d : {DType::Bool, DType::Int32, DType::Int64, DType::Float16, DType::BFloat16, DType::Float32,
                  DType::Float64}) {
    const Tensor x = d == DType::Bool ? from_vector({1, 0, 1}, {3}, d) : from_vector({1, -2, 5}, {3}, d);
    CAPTURE(dtype_name(d));
    auto same = [](const Tensor& got, const Tensor& expected) {
      CHECK(got.dtype() == expected.dtype());
      CHECK(got.to_vector() == expected.to_vector());
    };
    const Tensor three = weak_scalar(3, false, x), tenth = weak_scalar(0.1, true, x);
    same(x + 3, add(x, three));
    same(3 + x, add(three, x));
    same(x * 0.1, mul(x, tenth));
    same(0.1 * x, mul(tenth, x));
    same(x / 3, div(x, three));
    same(0.1 / x, div(tenth, x));
    same(3 - x, sub(three, x));
    same(x - 0.1, sub(x, tenth));
  }
}
