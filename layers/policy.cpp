#include "layers/policy.hpp"

#include <cmath>
#include <unordered_set>

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "core/tensor_impl.hpp"
#include "layers/module.hpp"

namespace xgrad::nn {

namespace {

DType policy_dtype(std::string_view value, std::string_view spec) {
  if (value == "f16" || value == "half") return DType::Float16;
  if (value == "bf16") return DType::BFloat16;
  if (value == "f32" || value == "full") return DType::Float32;
  if (value == "f64") return DType::Float64;
  DType d;
  try {
    d = dtype_from_name(value);
  } catch (const ValueError&) {
    throw ValueError(fmt::format("parse_policy: unknown dtype '{}' in \"{}\"", value, spec));
  }
  if (!is_floating(d))
    throw ValueError(fmt::format("parse_policy: dtype '{}' in \"{}\" is not a floating dtype", value, spec));
  return d;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

}  // namespace

std::string DTypePolicy::to_string() const {
  return fmt::format("params={},compute={},output={}", dtype_name(param_dtype),
                     compute_dtype ? dtype_name(*compute_dtype) : "promoted",
                     output_dtype ? dtype_name(*output_dtype) : "unchanged");
}

DTypePolicy parse_policy(std::string_view spec) {
  DTypePolicy policy;
  bool seen[3] = {false, false, false};
  std::string_view rest = spec;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view item = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos)
      throw ValueError(fmt::format("parse_policy: expected key=value, got '{}' in \"{}\"", item, spec));
    const std::string_view key = trim(item.substr(0, eq)), value = trim(item.substr(eq + 1));
    int slot = key == "params" || key == "p" ? 0 : key == "compute" || key == "c" ? 1 : key == "output" || key == "o" ? 2 : -1;
    if (slot < 0)
      throw ValueError(fmt::format("parse_policy: unknown key '{}' in \"{}\" (expected params, compute or output)",
                                   key, spec));
    if (seen[slot]) throw ValueError(fmt::format("parse_policy: key '{}' given twice in \"{}\"", key, spec));
    seen[slot] = true;
    const DType d = policy_dtype(value, spec);
    if (slot == 0) policy.param_dtype = d;
    if (slot == 1) policy.compute_dtype = d;
    if (slot == 2) policy.output_dtype = d;
  }
  return policy;
}

void apply_policy(Module& root, const DTypePolicy& policy) {
  for (auto& [path, module] : root.named_modules()) module->set_dtypes(policy.compute_dtype, policy.param_dtype);
  root.set_output_dtype(policy.output_dtype);
}

DynamicLossScale::DynamicLossScale(LossScaleOptions options) : options_(options), scale_(options.initial_scale) {
  if (!(options.initial_scale > 0) || !(options.factor > 1) || options.growth_interval < 1 || !(options.min_scale > 0))
    throw ValueError(fmt::format("DynamicLossScale: needs initial_scale > 0, factor > 1, growth_interval >= 1 and "
                                 "min_scale > 0 (got {}, {}, {}, {})",
                                 options.initial_scale, options.factor, options.growth_interval, options.min_scale));
}

Tensor DynamicLossScale::scale(const Tensor& loss) const { return loss * scale_; }

bool DynamicLossScale::unscale_and_check(std::vector<Tensor>& grads) {
  bool finite = true;
  const double inverse = 1.0 / scale_;
  // Backward gives every leaf a gradient of its own, but a caller's list may still
  // hold one storage twice (the same handle, or aliases): unscale each storage once.
  std::unordered_set<const void*> unscaled;
  for (Tensor& g : grads) {
    if (!g.defined() || !is_floating(g.dtype())) continue;
    if (!unscaled.insert(g.impl()->storage.get()).second) continue;
    visit_dtype(g.dtype(), [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_floating_point_v<compute_t<T>>) {
        using C = compute_t<T>;
        T* p = g.data<T>();
        const std::int64_t n = g.numel();
        for (std::int64_t i = 0; i < n; ++i) {
          const C v = static_cast<C>(p[i]) * static_cast<C>(inverse);
          finite = finite && std::isfinite(v);
          p[i] = T(v);
        }
      }
    });
    g.bump_version();
  }
  if (finite) {
    if (++good_steps_ >= options_.growth_interval) {
      scale_ *= options_.factor;
      good_steps_ = 0;
    }
  } else {
    scale_ = std::max(options_.min_scale, scale_ / options_.factor);
    good_steps_ = 0;
  }
  return finite;
}

bool DynamicLossScale::unscale_and_check(Module& model) {
  std::vector<Tensor> grads;
  for (const Tensor& p : model.parameters())
    if (p.grad().defined()) grads.push_back(p.grad());
  return unscale_and_check(grads);
}

}  // namespace xgrad::nn
