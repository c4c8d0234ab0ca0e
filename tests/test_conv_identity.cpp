// The identity that ties the local conv to the ordinary one (docs/convlocal.md §6.12, §11):
// conv_general_dilated_local with the shared HWIO kernel tiled over every output
// position, laid out I-major (row ci*S + r), equals conv_general_dilated, for
// outputs and gradients, in 1-3 spatial dims with strides, both dilations, every
// padding form and feature groups. Also: the local conv is the patches op
// contracted with the kernel.
#include <doctest/doctest.h>

#include <cmath>

#include "xgrad.hpp"

using namespace xgrad;

namespace {

struct Case {
  Shape spatial, window;
  std::vector<std::int64_t> strides, lhs_dilation, rhs_dilation;
  Padding padding;
  std::int64_t channels, features, groups;
};

// local[o, ci*S + r, f] = shared[r, ci, f] for every output position o.
Tensor tile_over_positions(const Tensor& shared, const Shape& out_spatial) {
  const Shape& ks = shared.shape();
  const std::int64_t cg = ks[ks.size() - 2], f = ks.back();
  const std::int64_t s = shared.numel() / (cg * f), positions = numel(out_spatial);
  const auto w = shared.to_vector();
  std::vector<double> tiled;
  for (std::int64_t o = 0; o < positions; ++o)
    for (std::int64_t ci = 0; ci < cg; ++ci)
      for (std::int64_t r = 0; r < s; ++r)
        for (std::int64_t j = 0; j < f; ++j) tiled.push_back(w[static_cast<std::size_t>((r * cg + ci) * f + j)]);
  Shape shape = out_spatial;
  shape.insert(shape.end(), {cg * s, f});
  return from_vector(tiled, shape, shared.dtype());
}

// The shared-kernel gradient implied by a local-kernel gradient: sum over positions, back to HWIO.
std::vector<double> untile(const Tensor& local_grad, const Shape& shared_shape) {
  const std::int64_t cg = shared_shape[shared_shape.size() - 2], f = shared_shape.back();
  const std::int64_t s = numel(shared_shape) / (cg * f);
  const std::int64_t positions = local_grad.numel() / (cg * s * f);
  const auto g = local_grad.to_vector();
  std::vector<double> out(static_cast<std::size_t>(numel(shared_shape)), 0.0);
  for (std::int64_t o = 0; o < positions; ++o)
    for (std::int64_t ci = 0; ci < cg; ++ci)
      for (std::int64_t r = 0; r < s; ++r)
        for (std::int64_t j = 0; j < f; ++j)
          out[static_cast<std::size_t>((r * cg + ci) * f + j)] +=
              g[static_cast<std::size_t>(((o * cg + ci) * s + r) * f + j)];
  return out;
}

void check_all_close(const std::vector<double>& a, const std::vector<double>& b, const char* what) {
  REQUIRE_MESSAGE(a.size() == b.size(), what);
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::abs(a[i] - b[i]) > 1e-11 * (1 + std::abs(b[i]))) {
      FAIL_CHECK(what << ": element " << i << " is " << a[i] << " vs " << b[i]);
      return;
    }
}

void check_identity(const Case& c, std::uint64_t seed) {
  CAPTURE(seed);
  INFO("spatial ", shape_str(c.spatial), " window ", shape_str(c.window), " padding ", c.padding.to_string(),
       " groups ", c.groups);
  Shape in_shape{2};
  in_shape.insert(in_shape.end(), c.spatial.begin(), c.spatial.end());
  in_shape.push_back(c.channels);
  Shape w_shape = c.window;
  w_shape.insert(w_shape.end(), {c.channels / c.groups, c.features});
  const Key key = make_key(seed);
  Tensor x = random_normal(fold_in(key, 1), in_shape, DType::Float64).requires_grad_();
  Tensor w = random_normal(fold_in(key, 2), w_shape, DType::Float64).requires_grad_();

  Tensor y = conv_general_dilated(x, w, c.strides, c.padding, c.lhs_dilation, c.rhs_dilation, c.groups);
  REQUIRE(y.numel() > 0);
  const Shape out_spatial(y.shape().begin() + 1, y.shape().end() - 1);
  Tensor local = tile_over_positions(w.detach(), out_spatial).requires_grad_();
  Tensor y_local = conv_general_dilated_local(x, local, c.strides, c.padding, c.window, c.lhs_dilation,
                                              c.rhs_dilation, c.groups, Precision::Default);
  REQUIRE(y_local.shape() == y.shape());
  check_all_close(y_local.to_vector(), y.to_vector(), "output");

  Tensor cot = random_normal(fold_in(key, 3), y.shape(), DType::Float64);
  const auto shared_grads = grad({y}, {x, w}, {cot});
  const auto local_grads = grad({y_local}, {x, local}, {cot});
  check_all_close(local_grads[0].to_vector(), shared_grads[0].to_vector(), "grad inputs");
  check_all_close(untile(local_grads[1], w_shape), shared_grads[1].to_vector(), "grad kernel");

  // The local conv is the patches contracted with the kernel: y[b,o,f] = sum_i P[b,o,i] K[o,i,f].
  if (c.groups == 1) {
    Tensor p = conv_general_dilated_patches(x.detach(), c.window, c.strides, c.padding, c.lhs_dilation,
                                            c.rhs_dilation);
    const auto pv = p.to_vector(), kv = local.to_vector();
    const std::int64_t positions = numel(out_spatial), patch = p.shape().back(), f = c.features;
    std::vector<double> expected;
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t o = 0; o < positions; ++o)
        for (std::int64_t j = 0; j < f; ++j) {
          double sum = 0;
          for (std::int64_t i = 0; i < patch; ++i)
            sum += pv[static_cast<std::size_t>((b * positions + o) * patch + i)] *
                   kv[static_cast<std::size_t>((o * patch + i) * f + j)];
          expected.push_back(sum);
        }
    check_all_close(y_local.to_vector(), expected, "patches contraction");
  }
}

}  // namespace

TEST_CASE("local conv with the tiled shared kernel equals conv_general_dilated (1-d, 2-d, 3-d)") {
  const std::vector<Padding> string_paddings = {"VALID", "SAME", "SAME_LOWER", "same"};
  std::uint64_t seed = 0;
  int checked = 0;
  for (int n = 1; n <= 3; ++n) {
    const Shape spatial = n == 1 ? Shape{7} : n == 2 ? Shape{5, 6} : Shape{4, 3, 5};
    const Shape window = n == 1 ? Shape{3} : n == 2 ? Shape{2, 3} : Shape{2, 1, 3};
    const std::vector<std::int64_t> ones_n(static_cast<std::size_t>(n), 1);
    std::vector<std::int64_t> strided = ones_n, dilated = ones_n;
    strided[0] = 2;
    dilated.back() = 2;
    std::vector<Padding::Entry> explicit_pairs, negative_pairs;
    for (int j = 0; j < n; ++j) {
      explicit_pairs.emplace_back(j + 1, 2 - j % 2);
      negative_pairs.emplace_back(-1, j == 0 ? 2 : 1);
    }
    for (const auto& strides : {ones_n, strided})
      for (const auto& rhs_dilation : {ones_n, dilated})
        for (auto [channels, features, groups] : {std::array<std::int64_t, 3>{2, 3, 1}, {4, 6, 2}}) {
          for (const Padding& p : string_paddings) {
            check_identity({spatial, window, strides, {}, rhs_dilation, p, channels, features, groups}, seed++);
            ++checked;
          }
          // Input dilation needs explicit pads (string padding + lhs dilation is an error upstream).
          for (const auto& lhs_dilation : {ones_n, dilated})
            for (const Padding& p : {Padding(explicit_pairs), Padding(negative_pairs)}) {
              check_identity({spatial, window, strides, lhs_dilation, rhs_dilation, p, channels, features, groups},
                             seed++);
              ++checked;
            }
        }
  }
  CHECK(checked == 3 * 2 * 2 * 2 * 8);
}

TEST_CASE("ConvLocal with the tiled Conv kernel equals Conv for every Flax padding form and batch layout") {
  const std::vector<std::pair<Shape, Shape>> inputs = {
      {{6, 4}, {3}}, {{2, 7, 2}, {2}}, {{2, 1, 5, 4, 2}, {3, 2}}, {{2, 4, 3, 3, 2}, {2, 1, 2}}};
  std::uint64_t seed = 100;
  for (const auto& [in_shape, kernel_size] : inputs) {
    const int n = static_cast<int>(kernel_size.size());
    std::vector<Padding> paddings = {"SAME", "VALID", "CIRCULAR", "REFLECT", 1, Padding(std::vector<int>(n, 2))};
    if (n == 1) paddings.push_back("CAUSAL");
    for (const Padding& padding : paddings)
      for (std::int64_t groups : {1, 2})
        for (std::int64_t dilation : {1, 2}) {
          INFO("input ", shape_str(in_shape), " padding ", padding.to_string(), " groups ", groups, " dilation ",
               dilation);
          nn::ConvSpec spec{.features = 4, .kernel_size = kernel_size, .strides = {2}, .padding = padding,
                            .kernel_dilation = {dilation}, .feature_group_count = groups};
          const auto shared_plan = nn::plan_conv(in_shape, spec);
          spec.shared_weights = false;
          const auto local_plan = nn::plan_conv(in_shape, spec);
          const Key key = make_key(seed++);
          Tensor x = random_normal(fold_in(key, 1), in_shape, DType::Float64);
          Tensor w = random_normal(fold_in(key, 2), shared_plan.kernel_shape, DType::Float64);
          Tensor b = random_normal(fold_in(key, 3), {4}, DType::Float64);
          Tensor local_bias = broadcast_to(b, local_plan.bias_shape);
          Tensor y = nn::conv_apply(shared_plan, x, w, b);
          Tensor y_local =
              nn::conv_apply(local_plan, x, tile_over_positions(w, local_plan.out_spatial), local_bias);
          CHECK(y_local.shape() == y.shape());
          check_all_close(y_local.to_vector(), y.to_vector(), "output");
        }
  }
}

TEST_CASE("a window larger than the padded input gives an empty output and zero gradients") {
  Tensor x = ones({2, 3, 2}, DType::Float64).requires_grad_();
  Tensor k = ones({0, 8, 3}, DType::Float64).requires_grad_();
  Tensor y = conv_general_dilated_local(x, k, {1}, "VALID", {4});
  CHECK(y.shape() == Shape{2, 0, 3});
  const auto g = grad({y}, {x, k}, {zeros(y.shape(), DType::Float64)});
  CHECK(g[0].to_vector() == std::vector<double>(12, 0.0));
  CHECK(g[1].numel() == 0);
}
