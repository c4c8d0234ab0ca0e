// libFuzzer target for Conv / ConvLocal padding and geometry: the fuzz input is
// decoded into a ConvSpec (padding as a string, an int or a sequence of ints and
// pairs; kernel size, strides, dilations, feature groups) and an input shape, and
// goes through nn::plan_conv, which resolves the padding (canonicalize_padding,
// CIRCULAR / REFLECT / CAUSAL pre-pads, padtype_to_pads) and checks the geometry.
// Rejected specs must raise an xgrad::Error; accepted ones must give sane shapes,
// and when they are small the layer really runs, forward and backward, on the
// plan's shapes.
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "layers/conv_plan.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {

using xgrad::Padding;
using xgrad::Shape;

// Mostly small values, sometimes any int64: plan_conv must reject what overflows
// its arithmetic with an xgrad::Error.
std::int64_t size_value(FuzzedDataProvider& in, std::int64_t lo, std::int64_t hi) {
  if (in.ConsumeIntegralInRange(0, 15) == 0) return in.ConsumeIntegral<std::int64_t>();
  return in.ConsumeIntegralInRange<std::int64_t>(lo, hi);
}

// A per-dim attribute: empty (Flax's None), one value (an int) or one per dim, or a wrong length.
std::vector<std::int64_t> per_dim(FuzzedDataProvider& in, std::size_t n, std::int64_t lo, std::int64_t hi) {
  const int form = in.ConsumeIntegralInRange(0, 3);
  std::size_t count = form == 0 ? 0 : form == 1 ? 1 : form == 2 ? n : in.ConsumeIntegralInRange<std::size_t>(0, 4);
  std::vector<std::int64_t> v;
  for (std::size_t i = 0; i < count; ++i) v.push_back(size_value(in, lo, hi));
  return v;
}

int pad_value(FuzzedDataProvider& in) {
  if (in.ConsumeIntegralInRange(0, 15) == 0) return in.ConsumeIntegral<int>();
  return in.ConsumeIntegralInRange(-3, 4);
}

Padding padding(FuzzedDataProvider& in) {
  static const char* const kNames[] = {"SAME", "VALID", "CIRCULAR", "REFLECT", "CAUSAL",
                                       "SAME_LOWER", "same", "valid", "Same_Lower", ""};
  switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0: return Padding(kNames[in.ConsumeIntegralInRange<std::size_t>(0, std::size(kNames) - 1)]);
    case 1: return Padding(in.ConsumeRandomLengthString(16));
    case 2: return Padding(pad_value(in));
    default: {
      std::vector<Padding::Entry> entries;
      const int count = in.ConsumeIntegralInRange(0, 4);
      for (int i = 0; i < count; ++i) {
        if (in.ConsumeBool()) {
          entries.emplace_back(pad_value(in));
        } else {
          const int lo = pad_value(in);
          entries.emplace_back(lo, pad_value(in));
        }
      }
      return Padding(std::move(entries));
    }
  }
}

bool all_non_negative(const Shape& s) {
  for (auto d : s)
    if (d < 0) return false;
  return true;
}

// Deterministic, finite, non-trivial values.
xgrad::Tensor filled(const Shape& shape, xgrad::DType dtype, double scale) {
  std::vector<double> values(static_cast<std::size_t>(xgrad::numel(shape)));
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = scale * std::sin(0.7 * static_cast<double>(i) + 1.0);
  return xgrad::from_vector(values, shape, dtype);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  xgrad::nn::ConvSpec spec;
  const auto n = in.ConsumeIntegralInRange<std::size_t>(0, 3);
  for (std::size_t i = 0; i < n; ++i) spec.kernel_size.push_back(size_value(in, -1, 4));
  spec.strides = per_dim(in, n, -1, 3);
  spec.input_dilation = per_dim(in, n, -1, 3);
  spec.kernel_dilation = per_dim(in, n, -1, 3);
  spec.padding = padding(in);
  spec.features = size_value(in, -1, 4);
  spec.feature_group_count = size_value(in, -1, 3);
  spec.shared_weights = in.ConsumeBool();
  Shape input_shape;
  const auto rank = in.ConsumeIntegralInRange<std::size_t>(0, n + 2);
  for (std::size_t i = 0; i < rank; ++i) input_shape.push_back(in.ConsumeIntegralInRange<std::int64_t>(0, 6));
  const bool run = in.ConsumeBool();
  const auto dtype = in.ConsumeBool() ? xgrad::DType::Float32 : xgrad::DType::Float64;

  xgrad::nn::ConvPlan plan;
  try {
    plan = xgrad::nn::plan_conv(input_shape, spec);
  } catch (const xgrad::Error&) {
    return 0;
  }
  fuzz::expect(all_non_negative(plan.output_shape), "plan_conv accepted a spec with a negative output dim");
  fuzz::expect(all_non_negative(plan.kernel_shape), "plan_conv accepted a spec with a negative kernel dim");
  fuzz::expect(plan.lax_pads.size() == n && plan.prepad_pads.size() == n, "pads do not cover every spatial dim");

  constexpr std::int64_t kSmall = 4096;  // elements: keeps each run in the millisecond range
  if (!run || xgrad::numel(plan.input_shape) > kSmall || xgrad::numel(plan.prepadded_shape) > kSmall ||
      xgrad::numel(plan.kernel_shape) > kSmall || xgrad::numel(plan.output_shape) > kSmall ||
      xgrad::numel(plan.bias_shape) > kSmall)  // a local bias (O..., F) is large even for an empty batch
    return 0;
  xgrad::Tensor x = filled(plan.input_shape, dtype, 1.0).requires_grad_();
  xgrad::Tensor kernel = filled(plan.kernel_shape, dtype, 0.5).requires_grad_();
  xgrad::Tensor bias = filled(plan.bias_shape, dtype, 0.1).requires_grad_();
  xgrad::Tensor y;
  try {
    y = xgrad::nn::conv_apply(plan, x, kernel, bias);
  } catch (const xgrad::NotImplementedError&) {
    return 0;  // a planned combination the kernels leave to a later version
  }
  fuzz::expect(y.shape() == plan.output_shape, "conv_apply's output shape differs from the plan's");
  for (double v : y.to_vector()) fuzz::expect(std::isfinite(v), "conv_apply produced a non-finite value");
  y.sum().backward();
  for (const xgrad::Tensor& t : {x, kernel, bias})
    fuzz::expect(!t.grad().defined() || t.grad().shape() == t.shape(), "a gradient does not have its input's shape");
  return 0;
}
