// Forward mode's fusion across ops: relu defers its rule t * (x > 0) (the tangent
// travels as t, to be masked by the output > 0), a max or min pool after it (also
// after a reshape) masks only the elements it selects, and every other reader applies
// the mask. Checked bit for bit against the rules' path (grad mode with a tangent
// that requires grad, where nothing is deferred), with ties, NaN, exact zeros and
// all-negative windows; and the typed error for an in-place write that would lose
// the mask.
#include <cmath>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "autograd/node.hpp"
#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using test_support::error_of;
using test_support::golden_spread;

namespace {

using Inputs = std::vector<Tensor>;


// Rounded to a coarse grid (ties in the windows), with a NaN, exact zeros, and the
// first sample's first 2x2 window all negative (its pooled tangent must be zero).
Tensor awkward_input(const Shape& shape, DType dtype) {
  std::vector<double> v = golden_spread(numel(shape), 0.3, -3.0, 3.0);
  for (double& e : v) e = std::round(e);
  const std::int64_t c = shape.back(), w = shape[2];
  for (std::int64_t i : {std::int64_t{0}, std::int64_t{1}})
    for (std::int64_t j : {std::int64_t{0}, std::int64_t{1}})
      for (std::int64_t k = 0; k < c; ++k) v[static_cast<std::size_t>((i * w + j) * c + k)] = -1.0 - k % 3;
  v[v.size() / 2 + 3] = std::nan("");
  v[v.size() / 3] = 0.0;
  v[v.size() / 3 + c] = 0.0;
  return from_vector(v, shape, dtype);
}

// Tangent outputs of f with nothing deferred: under grad mode a tangent that requires
// grad makes every op take its (recorded) rule.
JvpResult by_rules(const MultiFunction& f, const Tensor& x, const Tensor& t) {
  GradModeGuard on(true);
  return jvp(f, {x}, {t.clone().requires_grad_()});
}

void check_bitwise(const JvpResult& fused, const JvpResult& rules) {
  REQUIRE(fused.outputs.size() == rules.outputs.size());
  for (std::size_t k = 0; k < fused.outputs.size(); ++k) {
    CAPTURE(k);
    const std::vector<double> a = fused.output_tangents[k].to_vector(), b = rules.output_tangents[k].to_vector();
    const std::vector<double> ya = fused.outputs[k].to_vector(), yb = rules.outputs[k].to_vector();
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      CAPTURE(i);
      CHECK((a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i]))));  // exp of the NaN: NaN * its mask
      CHECK((ya[i] == yb[i] || (std::isnan(ya[i]) && std::isnan(yb[i]))));
    }
  }
}

}  // namespace

TEST_CASE("jvp: relu's deferred mask, applied by a following pool or by any other reader, equals the rules' tangents") {
  for (const DType dtype : {DType::Float32, DType::Float64}) {
    for (const std::int64_t channels : {3, 8, 16, 24, 64}) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(channels);
      const Shape shape{2, 6, 6, channels};
      const Tensor x = awkward_input(shape, dtype);
      const Tensor t = from_vector(golden_spread(numel(shape), 0.7, -1.5, 1.5), shape, dtype);
      int deferred = 0;  // relu outputs whose tangent was still deferred when read
      const MultiFunction f = [&](const Inputs& in) {
        const Tensor y = relu(in[0]);
        if (forward_ad::fusable_masked_tangent(y).defined()) ++deferred;
        const Tensor flat = reshape(y, {2, 36, channels});
        return Inputs{
            pool(y, PoolReduction::Max, {2, 2}, {2, 2}, {{0, 0}, {0, 0}}),      // masked by the pool
            pool(y, PoolReduction::Min, {3, 2}, {2, 2}, {{0, 0}, {0, 1}}),      // min pool, with padding
            nn::max_pool(y, {2, 2}, {2, 2}),                                    // through the layer's reshape
            pool(reshape(flat, shape), PoolReduction::Max, {2, 3}, {2, 3}, {{0, 0}, {0, 0}}),  // reshaped twice
            exp(flat) * 0.5,  // another reader: the mask is applied (through a reshape)
            y,                // the output itself: jvp applies the mask
        };
      };
      JvpResult fused;
      {
        NoGradGuard off;
        fused = jvp(f, {x}, {t});
      }
      CHECK(deferred == 1);  // the fused run deferred relu's mask
      deferred = 0;
      const JvpResult rules = by_rules(f, x, t);
      CHECK(deferred == 0);  // the rules' run deferred nothing
      check_bitwise(fused, rules);
      // The relu output's tangent against its closed form t * (x > 0) (NaN -> 0).
      const std::vector<double> xs = x.to_vector(), ts = t.to_vector(), ty = fused.output_tangents[5].to_vector();
      for (std::size_t i = 0; i < xs.size(); ++i) CHECK(ty[i] == (xs[i] > 0 ? ts[i] : 0.0));
      // The all-negative first window: the max pool's tangent there is zero.
      const std::vector<double> pooled = fused.output_tangents[0].to_vector();
      for (std::int64_t k = 0; k < channels; ++k) CHECK(pooled[static_cast<std::size_t>(k)] == 0.0);
    }
  }
}

TEST_CASE("jvp: the CNN block conv -> relu -> max_pool -> dense matches the rules' tangents in float32 and float64") {
  for (const DType dtype : {DType::Float32, DType::Float64}) {
    CAPTURE(dtype_name(dtype));
    const Tensor x = from_vector(golden_spread(2 * 7 * 7 * 2, 0.1, -1.0, 1.0), {2, 7, 7, 2}, dtype);
    const Tensor w = from_vector(golden_spread(3 * 3 * 2 * 16, 0.2, -0.5, 0.5), {3, 3, 2, 16}, dtype);
    const Tensor b = from_vector(golden_spread(16, 0.4, -0.3, 0.3), {16}, dtype);
    const Tensor d = from_vector(golden_spread(2 * 2 * 16 * 3, 0.5, -0.5, 0.5), {2 * 2 * 16, 3}, dtype);
    const Tensor t = from_vector(golden_spread(x.numel(), 0.9, -1.0, 1.0), x.shape(), dtype);
    const MultiFunction f = [&](const Inputs& in) {
      const Tensor h = conv_general_dilated(in[0], w, {1, 1}, Padding("VALID")) + b;
      const Tensor p = nn::max_pool(relu(h), {2, 2}, {2, 2});
      return Inputs{matmul(reshape(p, {2, -1}), d)};
    };
    JvpResult fused;
    {
      NoGradGuard off;
      fused = jvp(f, {x}, {t});
    }
    check_bitwise(fused, by_rules(f, x, t));
    // And against a central finite difference in float64.
    if (dtype == DType::Float64) {
      const double h = 1e-6;
      const std::vector<double> plus = f({x + t * h})[0].to_vector(), minus = f({x - t * h})[0].to_vector();
      const std::vector<double> jv = fused.output_tangents[0].to_vector();
      for (std::size_t i = 0; i < jv.size(); ++i) CHECK(std::abs(jv[i] - (plus[i] - minus[i]) / (2 * h)) < 1e-7);
    }
  }
}

TEST_CASE("jvp: writing into relu's output in place before its deferred tangent is read is a typed error") {
  const Tensor x = from_vector({-1.0, 2.0, 3.0}, {3}, DType::Float64);
  const Tensor t = from_vector({1.0, 1.0, 1.0}, {3}, DType::Float64);
  NoGradGuard off;
  const std::string message = error_of<AutogradError>([&] {
    jvp([](const Inputs& in) {
      Tensor y = relu(in[0]);
      y.fill_(1.0);
      return Inputs{exp(y)};
    }, {x}, {t});
  });
  CHECK(message.find("written in place after relu") != std::string::npos);
  CHECK(message.find("float64 [3]") != std::string::npos);
  // A pool reading it does not fuse the stale mask either: the same error.
  const Tensor x4 = from_vector({-1.0, 2.0, 3.0, 4.0, 5.0, -6.0, 7.0, 8.0}, {1, 2, 2, 2}, DType::Float32);
  const std::string pooled = error_of<AutogradError>([&] {
    jvp([](const Inputs& in) {
      Tensor y = relu(in[0]);
      y.fill_(1.0);
      return Inputs{nn::max_pool(y, {2, 2}, {2, 2})};
    }, {x4}, {cast(x4, DType::Float32)});
  });
  CHECK(pooled.find("written in place after relu") != std::string::npos);
}
