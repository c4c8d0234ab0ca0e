// Property test: conv_apply's gradients (inputs, kernel, bias) pass gradcheck in
// float64 over random layers: ranks 1-3, every padding form, strides, both
// dilations, feature groups, masks, 0-2 batch axes, bias on and off, shared and
// local kernels. A subset also passes gradgradcheck (second order through the
// closed set of conv ops and pad).
#include <doctest/doctest.h>

#include <random>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "xgrad.hpp"

using namespace xgrad;

namespace {

struct RandomLayer {
  nn::ConvPlan plan;
  bool use_bias = false;
  std::optional<Tensor> mask;
  std::string description;
};

std::int64_t pick(std::mt19937& rng, std::int64_t lo, std::int64_t hi) {
  return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
}

Padding random_padding(std::mt19937& rng, std::size_t n, bool& explicit_pads) {
  explicit_pads = false;
  switch (pick(rng, 0, 8)) {
    case 0: return "SAME";
    case 1: return "VALID";
    case 2: return "SAME_LOWER";
    case 3: return "CIRCULAR";
    case 4: return "REFLECT";
    case 5: return n == 1 ? Padding("CAUSAL") : Padding("same");
    case 6: explicit_pads = true; return static_cast<int>(pick(rng, 0, 2));
    default: {
      explicit_pads = true;
      std::vector<Padding::Entry> entries;
      for (std::size_t j = 0; j < n; ++j) {
        if (pick(rng, 0, 3) == 0) entries.emplace_back(static_cast<int>(pick(rng, 0, 2)));
        else entries.emplace_back(static_cast<int>(pick(rng, -1, 2)), static_cast<int>(pick(rng, -1, 2)));
      }
      return Padding(entries);
    }
  }
}

// A random valid layer with a small, non-empty output.
RandomLayer random_layer(std::mt19937& rng) {
  for (;;) {
    const auto n = static_cast<std::size_t>(pick(rng, 1, 3));
    const std::int64_t groups = pick(rng, 1, 2);
    Shape input_shape;
    for (std::int64_t b = pick(rng, 0, 2); b > 0; --b) input_shape.push_back(pick(rng, 1, 2));
    const std::int64_t max_size = n == 1 ? 6 : n == 2 ? 4 : 3;
    for (std::size_t j = 0; j < n; ++j) input_shape.push_back(pick(rng, 1, max_size));
    input_shape.push_back(groups * pick(rng, 1, 2));
    bool explicit_pads = false;
    nn::ConvSpec spec;
    spec.features = groups * pick(rng, 1, 2);
    for (std::size_t j = 0; j < n; ++j) spec.kernel_size.push_back(pick(rng, 1, n == 3 ? 2 : 3));
    spec.padding = random_padding(rng, n, explicit_pads);
    auto per_dim = [&](std::int64_t hi) {
      std::vector<std::int64_t> v;
      if (pick(rng, 0, 1)) return std::vector<std::int64_t>{pick(rng, 1, hi)};  // Flax's int form
      for (std::size_t j = 0; j < n; ++j) v.push_back(pick(rng, 1, hi));
      return v;
    };
    spec.strides = per_dim(2);
    spec.kernel_dilation = per_dim(2);
    spec.input_dilation = explicit_pads ? per_dim(2) : std::vector<std::int64_t>{1};
    spec.feature_group_count = groups;
    spec.shared_weights = pick(rng, 0, 1) == 1;
    RandomLayer layer;
    try {
      layer.plan = nn::plan_conv(input_shape, spec);
    } catch (const Error&) {
      continue;  // e.g. negative padding larger than the input
    }
    const Shape& out = layer.plan.output_shape;
    if (numel(out) == 0 || numel(out) > 60 || numel(layer.plan.kernel_shape) > 160) continue;
    layer.use_bias = pick(rng, 0, 1) == 1;
    if (pick(rng, 0, 2) == 0) {
      std::vector<double> bits;
      for (std::int64_t i = 0; i < numel(layer.plan.kernel_shape); ++i) bits.push_back(static_cast<double>(pick(rng, 0, 1)));
      layer.mask = from_vector(bits, layer.plan.kernel_shape, DType::Float64);
    }
    layer.description = fmt::format("{} input {} kernel_size {} strides [{}] padding {} input_dilation [{}] "
                                    "kernel_dilation [{}] groups {} bias {} mask {}",
                                    spec.shared_weights ? "Conv" : "ConvLocal", shape_str(input_shape),
                                    shape_str(spec.kernel_size), fmt::join(spec.strides, ", "),
                                    spec.padding.to_string(), fmt::join(spec.input_dilation, ", "),
                                    fmt::join(spec.kernel_dilation, ", "), groups, layer.use_bias,
                                    layer.mask.has_value());
    return layer;
  }
}

GradcheckFunction as_function(const RandomLayer& layer) {
  return [&layer](const std::vector<Tensor>& in) {
    return nn::conv_apply(layer.plan, in[0], in[1], layer.use_bias ? std::optional(in[2]) : std::nullopt,
                          layer.mask);
  };
}

std::vector<Tensor> random_inputs(const RandomLayer& layer, std::uint64_t seed) {
  const Key key = make_key(seed);
  std::vector<Tensor> in{random_normal(fold_in(key, 1), layer.plan.input_shape, DType::Float64),
                         random_normal(fold_in(key, 2), layer.plan.kernel_shape, DType::Float64)};
  if (layer.use_bias) in.push_back(random_normal(fold_in(key, 3), layer.plan.bias_shape, DType::Float64));
  return in;
}

}  // namespace

TEST_CASE("conv_apply passes gradcheck on 240 random layers") {
  std::mt19937 rng(20240611);
  int prepadded = 0, dilated_inputs = 0, local = 0;
  std::size_t checked = 0;
  for (int i = 0; i < 240; ++i) {
    const RandomLayer layer = random_layer(rng);
    INFO(i, ": ", layer.description);
    const auto report = gradcheck(as_function(layer), random_inputs(layer, static_cast<std::uint64_t>(i)),
                                  {.check_forward_ad = true, .check_batched_grad = true});
    CHECK_MESSAGE(report.ok, report.to_string());
    checked += report.checked;
    prepadded += layer.plan.prepad != nn::Prepad::None;
    dilated_inputs += layer.plan.input_dilation != std::vector<std::int64_t>(layer.plan.input_dilation.size(), 1);
    local += !layer.plan.spec.shared_weights;
  }
  // The generator covers the interesting cases.
  CHECK(prepadded > 40);
  CHECK(dilated_inputs > 20);
  CHECK(local > 80);
  CHECK(checked > 100000);  // Jacobian entries compared
}

TEST_CASE("conv_apply passes gradgradcheck on 30 random layers") {
  std::mt19937 rng(777);
  for (int i = 0; i < 30; ++i) {
    const RandomLayer layer = random_layer(rng);
    INFO(i, ": ", layer.description);
    const auto report = gradgradcheck(as_function(layer), random_inputs(layer, 1000 + static_cast<std::uint64_t>(i)),
                                      {.fast_mode = true, .projections = 4});
    CHECK_MESSAGE(report.ok, report.to_string());
  }
}

TEST_CASE("the lax ops are differentiable to second order in every argument") {
  Tensor x = random_normal(make_key(1), {2, 5, 2}, DType::Float64);
  Tensor local = random_normal(make_key(2), {2, 6, 2}, DType::Float64);
  Tensor shared = random_normal(make_key(3), {3, 1, 4}, DType::Float64);
  auto local_fn = [](const std::vector<Tensor>& in) {
    return conv_general_dilated_local(in[0], in[1], {2}, Padding{{2, 0}}, {3}, {1}, {2});
  };
  auto shared_fn = [](const std::vector<Tensor>& in) {
    return conv_general_dilated(in[0], in[1], {1}, Padding{{1, -1}}, {2}, {1}, 2);
  };
  auto patches_fn = [](const std::vector<Tensor>& in) {
    Tensor p = conv_general_dilated_patches(in[0], {2}, {1}, "SAME", {}, {2});
    return p * p;
  };
  for (const auto& [f, inputs] : std::vector<std::pair<GradcheckFunction, std::vector<Tensor>>>{
           {local_fn, {x, local}}, {shared_fn, {x, shared}}, {patches_fn, {x}}}) {
    const auto first = gradcheck(f, inputs, {.check_forward_ad = true, .check_batched_grad = true});
    CHECK_MESSAGE(first.ok, first.to_string());
    const auto second = gradgradcheck(f, inputs);
    CHECK_MESSAGE(second.ok, second.to_string());
  }
}
