#include "autograd/gradcheck.hpp"

#include <cmath>
#include <random>

#include <fmt/format.h>

#include "autograd/backward.hpp"
#include "autograd/forward_mode.hpp"
#include "autograd/grad_mode.hpp"
#include "autograd/ops.hpp"
#include "core/error.hpp"

namespace xgrad {

namespace {

// Float64 leaf copies of the floating inputs; others unchanged.
std::vector<Tensor> to_float64_leaves(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> out;
  for (const Tensor& t : inputs) {
    if (!is_floating(t.dtype())) {
      out.push_back(t);
      continue;
    }
    Tensor c = empty(t.shape(), DType::Float64);
    c.copy_(t.detach());
    out.push_back(c.requires_grad_());
  }
  return out;
}

Tensor evaluate(const GradcheckFunction& f, const std::vector<Tensor>& inputs) {
  NoGradGuard no_grad;
  Tensor y = f(inputs);
  return y.dtype() == DType::Float64 ? y : cast(y, DType::Float64);
}

// Tracks the entry with the largest error relative to its tolerance.
struct Worst {
  void offer(GradcheckReport& r, const GradcheckOptions& o, std::size_t input, std::int64_t in_el,
             std::int64_t out_el, double analytic, double numeric) {
    const double tolerance = o.atol + o.rtol * std::abs(numeric);
    const double error = std::abs(analytic - numeric);
    const double ratio = std::isnan(error) ? INFINITY : error / tolerance;
    if (!(error <= tolerance)) r.ok = false;  // also catches NaN
    if (r.checked++ == 0 || ratio > r.error_ratio) {
      r.error_ratio = ratio;
      r.input = input;
      r.input_element = in_el;
      r.output_element = out_el;
      r.analytic = analytic;
      r.numeric = numeric;
    }
  }
};

// Central difference of f along `direction` (same shapes as the floating inputs).
std::vector<double> central_difference(const GradcheckFunction& f, const std::vector<Tensor>& x,
                                       std::size_t input, std::int64_t element, double eps) {
  std::vector<Tensor> plus = x, minus = x;
  plus[input] = x[input].detach().clone();
  minus[input] = x[input].detach().clone();
  plus[input].data<double>()[element] += eps;
  minus[input].data<double>()[element] -= eps;
  std::vector<double> fp = evaluate(f, plus).to_vector(), fm = evaluate(f, minus).to_vector();
  for (std::size_t k = 0; k < fp.size(); ++k) fp[k] = (fp[k] - fm[k]) / (2 * eps);
  return fp;
}

GradcheckReport full_check(const GradcheckFunction& f, const std::vector<Tensor>& x, const GradcheckOptions& o,
                           std::int64_t& output_elements) {
  GradcheckReport report;
  Worst worst;
  Tensor y = f(x);
  const std::int64_t n_out = output_elements = y.numel();
  std::vector<Tensor> differentiable;
  std::vector<std::size_t> which;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (x[i].requires_grad()) {
      differentiable.push_back(x[i]);
      which.push_back(i);
    }
  // Analytic Jacobian, one row (one output element) per backward.
  std::vector<std::vector<double>> rows(static_cast<std::size_t>(n_out));
  if (y.requires_grad()) {
    for (std::int64_t j = 0; j < n_out; ++j) {
      std::vector<double> e(static_cast<std::size_t>(n_out), 0.0);
      e[static_cast<std::size_t>(j)] = 1.0;
      const Tensor cotangent = from_vector(e, y.shape(), y.dtype());
      auto grads = grad({y}, differentiable, {cotangent}, {.retain_graph = true, .allow_unused = true});
      auto& row = rows[static_cast<std::size_t>(j)];
      for (std::size_t k = 0; k < grads.size(); ++k) {
        const std::vector<double> gv = grads[k].defined()
                                           ? grads[k].to_vector()
                                           : std::vector<double>(static_cast<std::size_t>(differentiable[k].numel()), 0.0);
        row.insert(row.end(), gv.begin(), gv.end());
      }
    }
  }
  // Numeric Jacobian, one column (one input element) per pair of evaluations.
  std::size_t column = 0;
  for (std::size_t k = 0; k < which.size(); ++k) {
    const std::size_t i = which[k];
    for (std::int64_t el = 0; el < x[i].numel(); ++el, ++column) {
      const std::vector<double> numeric = central_difference(f, x, i, el, o.eps);
      for (std::int64_t j = 0; j < n_out; ++j) {
        const auto& row = rows[static_cast<std::size_t>(j)];
        const double analytic = column < row.size() ? row[column] : 0.0;
        worst.offer(report, o, i, el, j, analytic, numeric[static_cast<std::size_t>(j)]);
      }
    }
  }
  return report;
}

GradcheckReport fast_check(const GradcheckFunction& f, const std::vector<Tensor>& x, const GradcheckOptions& o,
                           std::int64_t& output_elements) {
  GradcheckReport report;
  Worst worst;
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<double> normal;
  Tensor y = f(x);
  output_elements = y.numel();
  for (int p = 0; p < o.projections; ++p) {
    std::vector<double> v(static_cast<std::size_t>(y.numel()));
    for (double& e : v) e = normal(rng);
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (!x[i].requires_grad()) continue;
      std::vector<double> u(static_cast<std::size_t>(x[i].numel()));
      for (double& e : u) e = normal(rng);
      // Analytic: (v^T J) . u
      double analytic = 0;
      if (y.requires_grad()) {
        Tensor g = grad({y}, {x[i]}, {from_vector(v, y.shape(), y.dtype())}, {.retain_graph = true, .allow_unused = true})[0];
        if (g.defined()) {
          const auto gv = g.to_vector();
          for (std::size_t k = 0; k < u.size(); ++k) analytic += gv[k] * u[k];
        }
      }
      // Numeric: v^T (f(x + eps u) - f(x - eps u)) / 2 eps
      std::vector<Tensor> plus = x, minus = x;
      plus[i] = x[i].detach().clone();
      minus[i] = x[i].detach().clone();
      for (std::size_t k = 0; k < u.size(); ++k) {
        plus[i].data<double>()[k] += o.eps * u[k];
        minus[i].data<double>()[k] -= o.eps * u[k];
      }
      const auto fp = evaluate(f, plus).to_vector(), fm = evaluate(f, minus).to_vector();
      double numeric = 0;
      for (std::size_t k = 0; k < v.size(); ++k) numeric += v[k] * (fp[k] - fm[k]) / (2 * o.eps);
      worst.offer(report, o, i, -1, -1, analytic, numeric);
    }
  }
  return report;
}

// Why a check compared no entry at all (it then fails: a check of nothing proves nothing).
std::string why_nothing_was_checked(const char* what, const std::vector<Tensor>& inputs,
                                    std::int64_t output_elements) {
  std::string listed;
  std::int64_t floating_elements = 0;
  bool any_floating = false;
  for (const Tensor& t : inputs) {
    listed += (listed.empty() ? "" : ", ") + fmt::format("{} {}", dtype_name(t.dtype()), shape_str(t.shape()));
    if (is_floating(t.dtype())) {
      any_floating = true;
      floating_elements += t.numel();
    }
  }
  if (listed.empty()) listed = "none";
  if (!any_floating)
    return fmt::format("{}: nothing was checked: no input is floating-point, so none has a gradient (inputs: {})",
                       what, listed);
  return fmt::format("{}: nothing was checked: the Jacobian is empty (the floating inputs have {} elements, the "
                     "output {}; inputs: {})",
                     what, floating_elements, output_elements, listed);
}

std::vector<double> random_vector(std::mt19937_64& rng, std::int64_t n) {
  std::normal_distribution<double> normal;
  std::vector<double> v(static_cast<std::size_t>(n));
  for (double& e : v) e = normal(rng);
  return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t k = 0; k < a.size() && k < b.size(); ++k) s += a[k] * b[k];
  return s;
}

// The output tangent of f at x along `tangents`, as doubles (zeros when f's output is constant).
std::vector<double> forward_derivative(const GradcheckFunction& f, const std::vector<Tensor>& x,
                                       const std::vector<Tensor>& tangents) {
  const MultiFunction g = [&f](const std::vector<Tensor>& xs) { return std::vector<Tensor>{f(xs)}; };
  const JvpResult r = jvp(g, x, tangents);
  if (!r.output_tangents[0].defined())
    throw DTypeError(fmt::format("check_forward_ad: f returned a {} tensor, which has no derivative",
                                 dtype_name(r.outputs[0].dtype())));
  return r.output_tangents[0].to_vector();
}

// Reports' union: the failing (or else the worse) one, with the entries of both.
void merge(GradcheckReport& into, const GradcheckReport& r) {
  const std::size_t checked = into.checked + r.checked;
  const bool take = (into.ok && !r.ok) || (into.ok == r.ok && into.failure.empty() && r.error_ratio > into.error_ratio);
  if (take) into = r;
  into.checked = checked;
  into.ok = into.ok && r.ok;
}

GradcheckReport forward_check(const GradcheckFunction& f, const std::vector<Tensor>& x, const GradcheckOptions& o,
                              std::int64_t& output_elements) {
  GradcheckReport report;
  report.check = "check_forward_ad";
  Worst worst;
  std::mt19937_64 rng(o.seed + 2);
  const Tensor y = f(x);
  output_elements = y.numel();
  // J v against central differences.
  if (!o.fast_mode) {
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (!x[i].requires_grad()) continue;
      for (std::int64_t el = 0; el < x[i].numel(); ++el) {
        std::vector<Tensor> tangents(x.size());
        std::vector<double> e(static_cast<std::size_t>(x[i].numel()), 0.0);
        e[static_cast<std::size_t>(el)] = 1.0;
        tangents[i] = from_vector(e, x[i].shape(), DType::Float64);
        const std::vector<double> analytic = forward_derivative(f, x, tangents);
        const std::vector<double> numeric = central_difference(f, x, i, el, o.eps);
        for (std::size_t j = 0; j < numeric.size(); ++j)
          worst.offer(report, o, i, el, static_cast<std::int64_t>(j), analytic[j], numeric[j]);
      }
    }
  } else {
    for (int p = 0; p < o.projections; ++p) {
      std::vector<Tensor> tangents(x.size()), plus = x, minus = x;
      for (std::size_t i = 0; i < x.size(); ++i) {
        if (!x[i].requires_grad()) continue;
        const std::vector<double> u = random_vector(rng, x[i].numel());
        tangents[i] = from_vector(u, x[i].shape(), DType::Float64);
        plus[i] = x[i].detach().clone();
        minus[i] = x[i].detach().clone();
        for (std::size_t k = 0; k < u.size(); ++k) {
          plus[i].data<double>()[k] += o.eps * u[k];
          minus[i].data<double>()[k] -= o.eps * u[k];
        }
      }
      const std::vector<double> analytic = forward_derivative(f, x, tangents);
      const auto fp = evaluate(f, plus).to_vector(), fm = evaluate(f, minus).to_vector();
      for (std::size_t j = 0; j < fp.size(); ++j)
        worst.offer(report, o, 0, -1, static_cast<std::int64_t>(j), analytic[j], (fp[j] - fm[j]) / (2 * o.eps));
    }
  }
  // <J v, u> = <v, J^T u>: the JVP agrees with the VJP.
  for (int p = 0; p < o.projections; ++p) {
    std::vector<Tensor> tangents(x.size());
    std::vector<std::vector<double>> v(x.size());
    std::vector<Tensor> differentiable;
    std::vector<std::size_t> which;
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (!x[i].requires_grad()) continue;
      v[i] = random_vector(rng, x[i].numel());
      tangents[i] = from_vector(v[i], x[i].shape(), DType::Float64);
      differentiable.push_back(x[i]);
      which.push_back(i);
    }
    if (which.empty()) break;
    const std::vector<double> u = random_vector(rng, y.numel());
    const double forward = dot(forward_derivative(f, x, tangents), u);
    double reverse = 0;
    if (y.requires_grad()) {
      const auto grads = grad({y}, differentiable, {from_vector(u, y.shape(), y.dtype())},
                              {.retain_graph = true, .allow_unused = true});
      for (std::size_t k = 0; k < which.size(); ++k)
        if (grads[k].defined()) reverse += dot(v[which[k]], grads[k].to_vector());
    }
    worst.offer(report, o, which.front(), -1, -1, forward, reverse);
  }
  return report;
}

GradcheckReport batched_check(const GradcheckFunction& f, const std::vector<Tensor>& x, const GradcheckOptions& o,
                              std::int64_t& output_elements) {
  GradcheckReport report;
  report.check = "check_batched_grad";
  Worst worst;
  std::mt19937_64 rng(o.seed + 3);
  const Tensor y = f(x);
  output_elements = y.numel();
  std::vector<Tensor> differentiable;
  for (const Tensor& t : x)
    if (t.requires_grad()) differentiable.push_back(t);
  if (differentiable.empty() || !y.requires_grad() || y.numel() == 0) return report;
  auto vjp = [&](const std::vector<double>& v) {
    std::vector<std::vector<double>> out;
    const auto grads = grad({y}, differentiable, {from_vector(v, y.shape(), y.dtype())},
                            {.retain_graph = true, .allow_unused = true});
    for (std::size_t k = 0; k < grads.size(); ++k)
      out.push_back(grads[k].defined() ? grads[k].to_vector()
                                       : std::vector<double>(static_cast<std::size_t>(differentiable[k].numel()), 0.0));
    return out;
  };
  std::uniform_real_distribution<double> weight(0.5, 2.0);
  std::vector<double> combined(static_cast<std::size_t>(y.numel()), 0.0);
  std::vector<std::vector<double>> expected;
  std::vector<double> first_cotangent;
  std::vector<std::vector<double>> first;
  for (int b = 0; b < std::max(o.projections, 2); ++b) {
    const std::vector<double> v = random_vector(rng, y.numel());
    const double c = weight(rng);
    for (std::size_t k = 0; k < v.size(); ++k) combined[k] += c * v[k];
    const auto g = vjp(v);
    if (b == 0) {
      first_cotangent = v;
      first = g;
    }
    if (expected.empty()) expected.assign(g.size(), {});
    for (std::size_t k = 0; k < g.size(); ++k) {
      expected[k].resize(g[k].size(), 0.0);
      for (std::size_t e = 0; e < g[k].size(); ++e) expected[k][e] += c * g[k][e];
    }
  }
  const auto batched = vjp(combined);
  const auto repeated = vjp(first_cotangent);
  for (std::size_t k = 0; k < batched.size(); ++k)
    for (std::size_t e = 0; e < batched[k].size(); ++e) {
      worst.offer(report, o, k, static_cast<std::int64_t>(e), -1, batched[k][e], expected[k][e]);
      worst.offer(report, o, k, static_cast<std::int64_t>(e), -1, repeated[k][e], first[k][e]);
    }
  return report;
}

GradcheckReport run_check(const char* name,
                          GradcheckReport (*check)(const GradcheckFunction&, const std::vector<Tensor>&,
                                                   const GradcheckOptions&, std::int64_t&),
                          const GradcheckFunction& f, const std::vector<Tensor>& inputs, const GradcheckOptions& o) {
  try {
    if (o.projections < 1)
      throw ValueError(fmt::format("{}: needs at least one projection, got {}", name, o.projections));
    GradModeGuard enable(true);
    const auto x = to_float64_leaves(inputs);
    std::int64_t output_elements = 0;
    GradcheckReport r = check(f, x, o, output_elements);
    // A function whose output does not depend on its inputs leaves no cotangent to
    // batch; a Jacobian with no entry at all is checked by nothing and fails.
    if (r.checked == 0 && (check == forward_check || output_elements == 0)) {
      r.ok = false;
      r.failure = why_nothing_was_checked(name, inputs, output_elements);
    }
    r.check = name;
    return r;
  } catch (const std::exception& e) {
    GradcheckReport r;
    r.check = name;
    r.ok = false;
    r.failure = e.what();
    return r;
  }
}

}  // namespace

GradcheckReport check_forward_ad(const GradcheckFunction& f, const std::vector<Tensor>& inputs,
                                 const GradcheckOptions& options) {
  return run_check("check_forward_ad", forward_check, f, inputs, options);
}

GradcheckReport check_batched_grad(const GradcheckFunction& f, const std::vector<Tensor>& inputs,
                                   const GradcheckOptions& options) {
  return run_check("check_batched_grad", batched_check, f, inputs, options);
}

std::string GradcheckReport::to_string() const {
  if (!failure.empty()) return check + " failed: " + failure;
  const std::string where =
      input_element < 0 ? fmt::format("input {} (random projection)", input)
                        : fmt::format("input {}, element {}, output element {}", input, input_element, output_element);
  return fmt::format(
      "{} {}: {} entries compared; worst at {}: analytic {:.10g}, numeric {:.10g} (error {:.3g}, {:.3g}x the "
      "tolerance)",
      check, ok ? "passed" : "FAILED", checked, where, analytic, numeric, std::abs(analytic - numeric), error_ratio);
}

GradcheckReport gradcheck(const GradcheckFunction& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options) {
  try {
    if (options.fast_mode && options.projections < 1)
      throw ValueError(fmt::format("gradcheck: fast mode needs at least one projection, got {}", options.projections));
    GradModeGuard enable(true);
    const auto x = to_float64_leaves(inputs);
    std::int64_t output_elements = 0;
    GradcheckReport r = options.fast_mode ? fast_check(f, x, options, output_elements)
                                          : full_check(f, x, options, output_elements);
    if (r.checked == 0) {
      r.ok = false;
      r.failure = why_nothing_was_checked("gradcheck", inputs, output_elements);
    }
    if (options.check_forward_ad) merge(r, check_forward_ad(f, inputs, options));
    if (options.check_batched_grad) merge(r, check_batched_grad(f, inputs, options));
    return r;
  } catch (const std::exception& e) {
    GradcheckReport r;
    r.ok = false;
    r.failure = e.what();
    return r;
  }
}

GradcheckReport gradgradcheck(const GradcheckFunction& f, const std::vector<Tensor>& inputs,
                              const GradcheckOptions& options) {
  GradcheckReport combined;
  try {
    GradModeGuard enable(true);
    const auto x = to_float64_leaves(inputs);
    Tensor y;
    {
      NoGradGuard no_grad;
      y = f(x);
    }
    std::mt19937_64 rng(options.seed + 1);
    std::normal_distribution<double> normal;
    std::vector<double> v(static_cast<std::size_t>(y.numel()));
    for (double& e : v) e = normal(rng);
    Tensor cotangent = from_vector(v, y.shape(), DType::Float64);
    std::vector<Tensor> extended = x;
    extended.push_back(cotangent);
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (!x[i].requires_grad() || x[i].numel() == 0) continue;  // an empty input has no second derivative to check
      // vjp_i(inputs, v) = d<f(inputs), v>/d inputs_i, recorded so it can be differentiated again.
      auto vjp = [&f, i, n = x.size()](const std::vector<Tensor>& all) {
        std::vector<Tensor> in(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n));
        Tensor out = f(in);
        Tensor g = grad({out}, {in[i]}, {all[n]}, {.create_graph = true, .allow_unused = true})[0];
        return g.defined() ? g : zeros(in[i].shape(), DType::Float64);
      };
      // grad() needs the graph even when the numeric side evaluates under NoGradGuard.
      auto vjp_with_grad = [vjp](const std::vector<Tensor>& all) {
        GradModeGuard on(true);
        std::vector<Tensor> leaves;
        for (const Tensor& t : all) leaves.push_back(t.requires_grad() || !is_floating(t.dtype()) ? t : t.detach().requires_grad_());
        return vjp(leaves);
      };
      GradcheckReport r = gradcheck(vjp_with_grad, extended, options);
      const std::size_t checked = combined.checked + r.checked;
      const bool ok = combined.ok && r.ok;
      if (combined.failure.empty() && (combined.checked == 0 || r.error_ratio > combined.error_ratio || !r.failure.empty()))
        combined = r;
      combined.checked = checked;
      combined.ok = ok;
    }
    if (combined.checked == 0 && combined.failure.empty()) {
      combined.ok = false;
      combined.failure = why_nothing_was_checked("gradgradcheck", inputs, y.numel());
    }
  } catch (const std::exception& e) {
    combined.ok = false;
    combined.failure = e.what();
  }
  combined.check = "gradgradcheck";
  return combined;
}

}  // namespace xgrad
