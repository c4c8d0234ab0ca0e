// custom_vjp and custom_jvp: functions whose derivative is the user's rule.
#include "autograd/custom_derivatives.hpp"

#include <memory>

#include <fmt/format.h>

#include "autograd/backward.hpp"
#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"

namespace xgrad {

namespace {

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  for (const Tensor& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}

bool differentiable(const Tensor& t) { return t.defined() && is_floating(t.dtype()); }

struct OutputMeta {
  Shape shape;
  DType dtype;
  bool floating;
};

std::vector<OutputMeta> describe(const std::vector<Tensor>& outputs) {
  std::vector<OutputMeta> meta;
  for (const Tensor& o : outputs)
    meta.push_back(o.defined() ? OutputMeta{o.shape(), o.dtype(), is_floating(o.dtype())}
                               : OutputMeta{Shape{}, DType::Float32, false});
  return meta;
}

// An output's tangent from a custom rule, checked against the output.
Tensor checked_tangent(const char* what, std::size_t k, const Tensor& out, Tensor t) {
  if (t.shape() != out.shape())
    throw ShapeError(fmt::format("{}: the rule's tangent for output {} has shape {} but the output has shape {}", what,
                                 k, shape_str(t.shape()), shape_str(out.shape())));
  if (t.dtype() != out.dtype()) t = cast(t, out.dtype());
  return t;
}

}  // namespace

MultiFunction custom_vjp(CustomVjpForward fwd, CustomVjpBackward bwd) {
  if (!fwd || !bwd) throw ValueError("custom_vjp: fwd and bwd must both be set");
  auto backward_rule = std::make_shared<const CustomVjpBackward>(std::move(bwd));
  return [fwd = std::move(fwd), backward_rule](const std::vector<Tensor>& inputs) {
    if (forward_ad::propagating())
      for (std::size_t i = 0; i < inputs.size(); ++i)
        if (forward_ad::carries_tangent(inputs[i]))
          throw NotImplementedError(fmt::format(
              "custom_vjp: input {} (shape {}) carries a tangent, but a custom_vjp function has no forward mode (as "
              "in JAX); define it with custom_jvp to use it under jvp, hvp or jacfwd",
              i, shape_str(inputs[i].shape())));
    VjpForward r = fwd(inputs);
    if (!GradMode::is_enabled() || !any_requires_grad(inputs)) return r.outputs;
    auto residuals = std::make_shared<const std::vector<Tensor>>(std::move(r.residuals));
    auto meta = std::make_shared<const std::vector<OutputMeta>>(describe(r.outputs));
    const std::size_t n_inputs = inputs.size();
    std::vector<Tensor> outputs;
    for (std::size_t k = 0; k < r.outputs.size(); ++k) {
      if (!differentiable(r.outputs[k])) {
        outputs.push_back(r.outputs[k]);
        continue;
      }
      outputs.push_back(record(
          "custom_vjp", r.outputs[k].detach(), inputs,
          [backward_rule, residuals, meta, k, n_inputs](const Tensor& g, const Tensor&) -> Grads {
            std::vector<Tensor> cotangents;
            for (std::size_t j = 0; j < meta->size(); ++j) {
              const OutputMeta& m = (*meta)[j];
              cotangents.push_back(j == k ? g : m.floating ? zeros(m.shape, m.dtype) : Tensor());
            }
            Grads grads = (*backward_rule)(*residuals, cotangents);
            if (grads.size() != n_inputs)
              throw AutogradError(fmt::format("custom_vjp: bwd returned {} cotangents for {} inputs (one per input; "
                                              "an undefined Tensor for none)",
                                              grads.size(), n_inputs));
            return grads;
          },
          Saves::Nothing));
    }
    return outputs;
  };
}

MultiFunction custom_jvp(MultiFunction f, CustomJvpRule rule) {
  if (!f || !rule) throw ValueError("custom_jvp: f and the JVP rule must both be set");
  auto jvp_rule = std::make_shared<const CustomJvpRule>(std::move(rule));
  return [f = std::move(f), jvp_rule](const std::vector<Tensor>& inputs) {
    const std::size_t n = inputs.size();
    std::vector<Tensor> tangents(n);
    bool any_tangent = false;
    if (forward_ad::propagating() && forward_ad::depth() > 1)
      for (std::size_t i = 0; i < n; ++i)
        if (forward_ad::carries_tangent(inputs[i]))
          throw NotImplementedError(fmt::format(
              "custom_jvp: input {} (shape {}) carries a tangent inside nested jvps (forward over forward); a "
              "custom_jvp rule gives one level's tangents, so it is supported under one jvp only",
              i, shape_str(inputs[i].shape())));
    if (forward_ad::propagating())
      for (std::size_t i = 0; i < n; ++i) {
        tangents[i] = forward_ad::tangent(inputs[i]);
        any_tangent = any_tangent || tangents[i].defined();
      }
    const bool taped = GradMode::is_enabled() && any_requires_grad(inputs);
    std::vector<Tensor> outputs, output_tangents;
    if (any_tangent) {
      for (std::size_t i = 0; i < n; ++i)
        if (!tangents[i].defined() && differentiable(inputs[i]))
          tangents[i] = zeros(inputs[i].shape(), inputs[i].dtype());
      JvpResult r;
      {
        forward_ad::SuspendGuard rule_only;  // the rule gives the tangents; its ops compute none
        r = (*jvp_rule)(inputs, tangents);
      }
      if (r.output_tangents.size() != r.outputs.size())
        throw ValueError(fmt::format("custom_jvp: the rule returned {} outputs but {} tangents", r.outputs.size(),
                                     r.output_tangents.size()));
      outputs = std::move(r.outputs);
      output_tangents = std::move(r.output_tangents);
    } else {
      if (!taped) return f(inputs);
      NoGradGuard values_only;  // the outputs' derivative is the rule's, not f's tape
      outputs = f(inputs);
    }
    for (std::size_t k = 0; k < outputs.size(); ++k) {
      Tensor& out = outputs[k];
      if (!differentiable(out)) continue;
      if (taped) {
        // Reverse mode: the transpose of the rule's linear map, by differentiating
        // its output tangent with respect to (zero) input tangents.
        out = forward_ad::detail::record_on_tape(
            "custom_jvp", out.detach(), inputs,
            [jvp_rule, inputs, k](const Tensor& g, const Tensor&) -> Grads {
              const bool create_graph = GradMode::is_enabled();
              GradModeGuard on(true);
              std::vector<Tensor> probes(inputs.size()), wrt;
              std::vector<std::size_t> which;
              for (std::size_t i = 0; i < inputs.size(); ++i) {
                if (!differentiable(inputs[i])) continue;
                probes[i] = zeros(inputs[i].shape(), inputs[i].dtype());
                if (inputs[i].requires_grad()) {
                  probes[i].requires_grad_();
                  wrt.push_back(probes[i]);
                  which.push_back(i);
                }
              }
              Grads grads(inputs.size());
              const JvpResult r = (*jvp_rule)(inputs, probes);
              if (k >= r.output_tangents.size() || !r.output_tangents[k].defined() ||
                  !r.output_tangents[k].requires_grad())
                return grads;
              const std::vector<Tensor> gs = grad({r.output_tangents[k]}, wrt, {g},
                                                  {.create_graph = create_graph, .allow_unused = true});
              for (std::size_t j = 0; j < which.size(); ++j) grads[which[j]] = gs[j];
              return grads;
            },
            Saves::Inputs);
      } else {
        for (const Tensor& in : inputs)
          if (in.defined() && in.impl() == out.impl()) out = out.detach();  // the input keeps its own tangent
      }
      if (any_tangent && k < output_tangents.size() && output_tangents[k].defined())
        forward_ad::set_tangent(out, checked_tangent("custom_jvp", k, out, output_tangents[k]));
    }
    return outputs;
  };
}

}  // namespace xgrad
