#include "layers/initializers.hpp"

#include <cmath>

#include <fmt/format.h>

#include "core/error.hpp"

namespace xgrad::nn::initializers {

namespace {

void require_floating(DType dtype, const char* name) {
  if (!is_floating(dtype))
    throw DTypeError(fmt::format("{}: initializer needs a floating dtype, got {}", name, dtype_name(dtype)));
}

// Samples are drawn in float64 and rounded once into the requested dtype, so every
// dtype sees the same underlying values.
Tensor scaled_as(Tensor samples, double factor, DType dtype) {
  double* p = samples.data<double>();
  const std::int64_t n = samples.numel();
  for (std::int64_t i = 0; i < n; ++i) p[i] *= factor;
  if (dtype == DType::Float64) return samples;
  Tensor out = empty(samples.shape(), dtype);
  out.copy_(samples);
  return out;
}

std::int64_t axis_in(const Shape& shape, std::int64_t axis, const char* what) {
  const auto rank = static_cast<std::int64_t>(shape.size());
  if (axis < -rank || axis >= rank)
    throw ShapeError(fmt::format("variance_scaling: {} {} is out of range for shape {} (rank {})", what, axis,
                                 shape_str(shape), rank));
  return axis < 0 ? axis + rank : axis;
}

// Reduced QR of an m x n matrix (m >= n, row-major) by Householder reflections,
// returning Q (m x n) with columns sign-corrected so that diag(R) > 0.
std::vector<double> orthonormal_columns(std::vector<double> a, std::int64_t m, std::int64_t n) {
  std::vector<std::vector<double>> reflectors;
  std::vector<double> diag_sign(static_cast<std::size_t>(n), 1.0);
  auto at = [&](std::vector<double>& x, std::int64_t i, std::int64_t j) -> double& {
    return x[static_cast<std::size_t>(i * n + j)];
  };
  for (std::int64_t j = 0; j < n; ++j) {
    std::vector<double> v(static_cast<std::size_t>(m - j));
    double norm2 = 0;
    for (std::int64_t i = j; i < m; ++i) norm2 += at(a, i, j) * at(a, i, j);
    const double norm = std::sqrt(norm2);
    const double x0 = at(a, j, j);
    const double alpha = x0 > 0 ? -norm : norm;  // R[j][j]; opposite sign to x0 avoids cancellation
    diag_sign[static_cast<std::size_t>(j)] = alpha >= 0 ? 1.0 : -1.0;
    for (std::int64_t i = j; i < m; ++i) v[static_cast<std::size_t>(i - j)] = at(a, i, j);
    v[0] -= alpha;
    double vnorm2 = 0;
    for (double e : v) vnorm2 += e * e;
    if (vnorm2 > 0) {
      for (double& e : v) e /= std::sqrt(vnorm2);
      for (std::int64_t c = j; c < n; ++c) {  // A[j:, c] -= 2 v (v . A[j:, c])
        double dot = 0;
        for (std::int64_t i = j; i < m; ++i) dot += v[static_cast<std::size_t>(i - j)] * at(a, i, c);
        for (std::int64_t i = j; i < m; ++i) at(a, i, c) -= 2 * v[static_cast<std::size_t>(i - j)] * dot;
      }
    }
    reflectors.push_back(std::move(v));
  }
  // Q = H_0 ... H_{n-1} applied to the first n columns of the identity.
  std::vector<double> q(static_cast<std::size_t>(m * n), 0.0);
  for (std::int64_t j = 0; j < n; ++j) at(q, j, j) = 1.0;
  for (std::int64_t j = n - 1; j >= 0; --j) {
    const auto& v = reflectors[static_cast<std::size_t>(j)];
    for (std::int64_t c = 0; c < n; ++c) {
      double dot = 0;
      for (std::int64_t i = j; i < m; ++i) dot += v[static_cast<std::size_t>(i - j)] * at(q, i, c);
      for (std::int64_t i = j; i < m; ++i) at(q, i, c) -= 2 * v[static_cast<std::size_t>(i - j)] * dot;
    }
  }
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t c = 0; c < n; ++c) at(q, i, c) *= diag_sign[static_cast<std::size_t>(c)];
  return q;
}

}  // namespace

std::pair<double, double> compute_fans(const Shape& shape, std::int64_t in_axis, std::int64_t out_axis,
                                       const std::vector<std::int64_t>& batch_axis) {
  const double in_size = static_cast<double>(shape[static_cast<std::size_t>(axis_in(shape, in_axis, "in_axis"))]);
  const double out_size =
      static_cast<double>(shape[static_cast<std::size_t>(axis_in(shape, out_axis, "out_axis"))]);
  double batch_size = 1;
  for (auto b : batch_axis) batch_size *= static_cast<double>(shape[static_cast<std::size_t>(axis_in(shape, b, "batch_axis"))]);
  const double receptive_field = static_cast<double>(numel(shape)) / in_size / out_size / batch_size;
  return {in_size * receptive_field, out_size * receptive_field};
}

Initializer variance_scaling(double scale, FanMode mode, Distribution distribution, std::int64_t in_axis,
                             std::int64_t out_axis, std::vector<std::int64_t> batch_axis) {
  return [=](Key key, const Shape& shape, DType dtype) {
    require_floating(dtype, "variance_scaling");
    const auto [fan_in, fan_out] = compute_fans(shape, in_axis, out_axis, batch_axis);
    const double denominator = mode == FanMode::FanIn ? fan_in : mode == FanMode::FanOut ? fan_out : (fan_in + fan_out) / 2;
    const double variance = scale / denominator;
    switch (distribution) {
      case Distribution::TruncatedNormal:
        // 0.8796... is the stddev of a standard normal truncated to [-2, 2].
        return scaled_as(random_truncated_normal(key, shape, DType::Float64, -2.0, 2.0),
                         std::sqrt(variance) / 0.87962566103423978, dtype);
      case Distribution::Normal:
        return scaled_as(random_normal(key, shape, DType::Float64), std::sqrt(variance), dtype);
      case Distribution::Uniform:
        return scaled_as(random_uniform(key, shape, DType::Float64, -1.0, 1.0), std::sqrt(3 * variance), dtype);
    }
    throw ValueError("variance_scaling: unknown distribution");
  };
}

Initializer lecun_normal(std::int64_t in_axis, std::int64_t out_axis) {
  return variance_scaling(1.0, FanMode::FanIn, Distribution::TruncatedNormal, in_axis, out_axis);
}
Initializer lecun_uniform(std::int64_t in_axis, std::int64_t out_axis) {
  return variance_scaling(1.0, FanMode::FanIn, Distribution::Uniform, in_axis, out_axis);
}
Initializer glorot_normal(std::int64_t in_axis, std::int64_t out_axis) {
  return variance_scaling(1.0, FanMode::FanAvg, Distribution::TruncatedNormal, in_axis, out_axis);
}
Initializer glorot_uniform(std::int64_t in_axis, std::int64_t out_axis) {
  return variance_scaling(1.0, FanMode::FanAvg, Distribution::Uniform, in_axis, out_axis);
}
Initializer he_normal(std::int64_t in_axis, std::int64_t out_axis) {
  return variance_scaling(2.0, FanMode::FanIn, Distribution::TruncatedNormal, in_axis, out_axis);
}
Initializer he_uniform(std::int64_t in_axis, std::int64_t out_axis) {
  return variance_scaling(2.0, FanMode::FanIn, Distribution::Uniform, in_axis, out_axis);
}

Initializer normal(double stddev) {
  return [=](Key key, const Shape& shape, DType dtype) {
    require_floating(dtype, "normal");
    return scaled_as(random_normal(key, shape, DType::Float64), stddev, dtype);
  };
}

Initializer uniform(double scale) {
  return [=](Key key, const Shape& shape, DType dtype) {
    require_floating(dtype, "uniform");
    return scaled_as(random_uniform(key, shape, DType::Float64), scale, dtype);
  };
}

Initializer truncated_normal(double stddev, double lower, double upper) {
  return [=](Key key, const Shape& shape, DType dtype) {
    require_floating(dtype, "truncated_normal");
    return scaled_as(random_truncated_normal(key, shape, DType::Float64, lower, upper), stddev, dtype);
  };
}

Initializer zeros() {
  return [](Key, const Shape& shape, DType dtype) { return xgrad::zeros(shape, dtype); };
}
Initializer ones() {
  return [](Key, const Shape& shape, DType dtype) { return xgrad::ones(shape, dtype); };
}
Initializer constant(double value) {
  return [=](Key, const Shape& shape, DType dtype) { return full(shape, value, dtype); };
}

Initializer orthogonal(double scale, std::int64_t column_axis) {
  return [=](Key key, const Shape& shape, DType dtype) {
    require_floating(dtype, "orthogonal");
    if (shape.size() < 2)
      throw ShapeError(fmt::format("orthogonal: initializer needs at least a 2-D shape, got {}", shape_str(shape)));
    const auto rank = static_cast<std::int64_t>(shape.size());
    if (column_axis < -rank || column_axis >= rank)
      throw ShapeError(fmt::format("orthogonal: column_axis {} is out of range for shape {}", column_axis,
                                   shape_str(shape)));
    const std::size_t col = static_cast<std::size_t>(column_axis < 0 ? column_axis + rank : column_axis);
    const std::int64_t n_cols = shape[col];
    const std::int64_t n_rows = n_cols == 0 ? 0 : numel(shape) / n_cols;
    const bool wide = n_rows < n_cols;
    const std::int64_t m = wide ? n_cols : n_rows, n = wide ? n_rows : n_cols;
    const std::vector<double> q = orthonormal_columns(random_normal(key, {m, n}, DType::Float64).to_vector(), m, n);
    // matrix[r][c] (n_rows x n_cols) is q[r][c], or q[c][r] when the matrix is wide.
    auto matrix = [&](std::int64_t r, std::int64_t c) {
      return wide ? q[static_cast<std::size_t>(c * n + r)] : q[static_cast<std::size_t>(r * n + c)];
    };
    // Row r enumerates the other axes in order; the column index goes to column_axis.
    Tensor out = empty(shape, DType::Float64);
    double* p = out.data<double>();
    std::int64_t inner = 1;
    for (std::size_t a = col + 1; a < shape.size(); ++a) inner *= shape[a];
    const std::int64_t n_elements = out.numel();
    for (std::int64_t flat = 0; flat < n_elements; ++flat) {
      const std::int64_t c = (flat / inner) % n_cols;
      const std::int64_t r = (flat / (inner * n_cols)) * inner + flat % inner;
      p[flat] = matrix(r, c);
    }
    return scaled_as(out, scale, dtype);
  };
}

}  // namespace xgrad::nn::initializers
