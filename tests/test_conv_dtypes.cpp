// Conv dtypes follow flax promote_dtype (docs/convlocal.md §7.1): the computation dtype is the
// JAX result type of inputs, (masked) kernel and bias, ints become float32, and a
// given dtype must be floating. 16-bit floats compute in float32 and round once;
// Precision::Highest computes float32 in float64.
#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;

namespace {

const nn::ConvSpec kSpec{.features = 3, .kernel_size = {2, 2}, .padding = "SAME", .shared_weights = false};
const Shape kInput{2, 4, 5, 2};

struct Params {
  Tensor kernel, bias;
};

Params params(DType dtype, std::uint64_t seed = 1) {
  const auto plan = nn::plan_conv(kInput, kSpec);
  return {random_normal(make_key(seed), plan.kernel_shape, dtype),
          random_normal(make_key(seed + 1), plan.bias_shape, dtype)};
}

Tensor input(DType dtype) { return random_normal(make_key(7), kInput, dtype); }

Tensor apply(const Tensor& x, const Params& p, std::optional<DType> dtype = std::nullopt,
             Precision precision = Precision::Default) {
  return nn::conv_apply(nn::plan_conv(x.shape(), kSpec), x, p.kernel, p.bias, std::nullopt, dtype, precision);
}

// The conv computed from the same values in `dtype` and cast to `round_to`, then
// the bias added in `round_to` (as the layer does: the lax op rounds its result).
Tensor reference(const Tensor& x, const Params& p, DType dtype, DType round_to) {
  const auto plan = nn::plan_conv(x.shape(), kSpec);
  Tensor conv = nn::conv_apply(plan, x.astype(dtype), p.kernel.astype(dtype));
  return conv.astype(round_to) + p.bias.astype(round_to);
}

void check_close(const Tensor& got, const Tensor& want) {
  const auto a = got.to_vector(), b = want.to_vector();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-5));
}

}  // namespace

TEST_CASE("float32 inputs with float32 params give float32") {
  Tensor x = input(DType::Float32);
  Params p = params(DType::Float32);
  Tensor y = apply(x, p);
  CHECK(y.dtype() == DType::Float32);
  const auto exact = reference(x, p, DType::Float64, DType::Float64).to_vector();
  const auto got = y.to_vector();
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(exact[i]).epsilon(1e-5));
}

TEST_CASE("float64 inputs promote float32 params to float64 (x64 semantics)") {
  Tensor x = input(DType::Float64).requires_grad_();
  Params p = params(DType::Float32);
  p.kernel.requires_grad_();
  Tensor y = apply(x, p);
  CHECK(y.dtype() == DType::Float64);
  CHECK(y.to_vector() == reference(x, p, DType::Float64, DType::Float64).to_vector());
  // Gradients come back in each parameter's own dtype.
  const auto g = grad({y.sum()}, {x, p.kernel});
  CHECK(g[0].dtype() == DType::Float64);
  CHECK(g[1].dtype() == DType::Float32);
}

TEST_CASE("bfloat16 inputs: float32 params give float32, bfloat16 params give bfloat16") {
  Tensor x = input(DType::BFloat16).requires_grad_();
  Params f32 = params(DType::Float32);
  Tensor y = apply(x, f32);
  CHECK(y.dtype() == DType::Float32);
  // Float32 throughout: the fast kernels start the accumulators at the bias, so the
  // sum is rounded in another order than conv + bias.
  check_close(y, reference(x, f32, DType::Float32, DType::Float32));
  CHECK(grad({y.sum()}, {x})[0].dtype() == DType::BFloat16);

  Params bf16 = params(DType::BFloat16);
  Tensor z = apply(x, bf16);
  CHECK(z.dtype() == DType::BFloat16);
  // Computed in float32 and rounded once.
  CHECK(z.to_vector() == reference(x, bf16, DType::Float32, DType::BFloat16).to_vector());

  // bfloat16 with float16 meets at float32.
  CHECK(apply(x, params(DType::Float16)).dtype() == DType::Float32);
  // An explicit dtype casts everything, bias included.
  Tensor forced = apply(input(DType::Float32), f32, DType::BFloat16);
  CHECK(forced.dtype() == DType::BFloat16);
}

TEST_CASE("float16 inputs: float32 params give float32, float16 params give float16") {
  Tensor x = input(DType::Float16);
  Params f32 = params(DType::Float32);
  Tensor y = apply(x, f32);
  CHECK(y.dtype() == DType::Float32);
  // Float32 throughout: the fast kernels start the accumulators at the bias, so the
  // sum is rounded in another order than conv + bias.
  check_close(y, reference(x, f32, DType::Float32, DType::Float32));
  Params f16 = params(DType::Float16);
  Tensor z = apply(x, f16);
  CHECK(z.dtype() == DType::Float16);
  CHECK(z.to_vector() == reference(x, f16, DType::Float32, DType::Float16).to_vector());
}

TEST_CASE("integer inputs compute in float32; the mask promotes the kernel first; dtype must be inexact") {
  Tensor x = input(DType::Float32);
  Params p = params(DType::Float32);
  Tensor ints = ones(kInput, DType::Int32);
  CHECK(apply(ints, p).dtype() == DType::Float32);
  CHECK(apply(ints, {p.kernel.astype(DType::Int64), p.bias.astype(DType::Int64)}).dtype() == DType::Float32);

  const auto plan = nn::plan_conv(kInput, kSpec, p.kernel.shape());
  Tensor bool_mask = ones(p.kernel.shape(), DType::Bool);
  CHECK(nn::conv_apply(plan, x, p.kernel, p.bias, bool_mask).dtype() == DType::Float32);
  Tensor f64_mask = ones(p.kernel.shape(), DType::Float64);
  CHECK(nn::conv_apply(plan, x, p.kernel, p.bias, f64_mask).dtype() == DType::Float64);

  try {
    apply(x, p, DType::Int32);
    FAIL("expected ValueError");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()).find("Dtype must be inexact: int32") == 0);
  }
}

TEST_CASE("Precision::Highest computes float32 in float64 and rounds once") {
  Tensor x = input(DType::Float32).requires_grad_();
  Params p = params(DType::Float32);
  p.kernel.requires_grad_();
  Tensor y = apply(x, p, std::nullopt, Precision::Highest);
  CHECK(y.dtype() == DType::Float32);
  Tensor x64 = x.detach().astype(DType::Float64).requires_grad_();
  Tensor k64 = p.kernel.detach().astype(DType::Float64).requires_grad_();
  Tensor y64 = apply(x64, {k64, p.bias.astype(DType::Float64)});
  // The conv itself is bit-identical to the float64 path; the bias is added in float32.
  Tensor y64_rounded = (y64 - p.bias.astype(DType::Float64)).astype(DType::Float32) + p.bias;
  CHECK(y.to_vector() == y64_rounded.to_vector());
  Tensor cot = random_normal(make_key(3), y.shape(), DType::Float32);
  const auto g = grad({y}, {x, p.kernel}, {cot});
  const auto g64 = grad({y64}, {x64, k64}, {cot.astype(DType::Float64)});
  CHECK(g[0].to_vector() == g64[0].astype(DType::Float32).to_vector());
  CHECK(g[1].to_vector() == g64[1].astype(DType::Float32).to_vector());
}
