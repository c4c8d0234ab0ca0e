#include "layers/keras_locally_connected.hpp"

#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"

namespace xgrad::nn {

namespace {

constexpr const char* kWho = "from_keras_locally_connected";

// Row-major unravel of `flat` over `dims`.
std::vector<std::int64_t> unravel(std::int64_t flat, const Shape& dims) {
  std::vector<std::int64_t> index(dims.size());
  for (std::size_t j = dims.size(); j-- > 0;) {
    index[j] = flat % dims[j];
    flat /= dims[j];
  }
  return index;
}

std::int64_t ravel(const std::vector<std::int64_t>& index, const Shape& dims) {
  std::int64_t flat = 0;
  for (std::size_t j = 0; j < dims.size(); ++j) flat = flat * dims[j] + index[j];
  return flat;
}

// The VALID stride that maps M inputs to O outputs with window k: the given one
// (checked), or the only one that fits; several that fit need the caller's.
std::int64_t stride_for(std::int64_t M, std::int64_t k, std::int64_t O, std::optional<std::int64_t> given,
                        std::size_t dim) {
  auto outputs = [&](std::int64_t s) { return M < k ? 0 : (M - k) / s + 1; };
  if (given) {
    if (outputs(*given) != O)
      throw ShapeError(fmt::format("{}: the dense kernel has {} inputs and {} outputs in spatial dim {}, but a VALID "
                                   "window of {} with stride {} gives {} outputs (Keras 'same' padding does not "
                                   "convert)",
                                   kWho, M, O, dim, k, *given, outputs(*given)));
    return *given;
  }
  if (O == 1 && M >= k) return 1;
  std::vector<std::int64_t> fits;
  for (std::int64_t s = 1; s <= std::max<std::int64_t>(M, 1); ++s)
    if (outputs(s) == O) fits.push_back(s);
  if (fits.size() == 1) return fits.front();
  if (fits.empty())
    throw ShapeError(fmt::format("{}: the dense kernel has {} inputs and {} outputs in spatial dim {}, which no VALID "
                                 "window of {} gives (Keras 'same' padding does not convert)",
                                 kWho, M, O, dim, k));
  throw ValueError(fmt::format("{}: strides [{}] all give {} outputs from {} inputs in spatial dim {}; pass the "
                               "Keras layer's strides in the options",
                               kWho, fmt::join(fits, ", "), O, M, dim));
}

}  // namespace

std::map<std::string, Tensor> from_keras_locally_connected(const Tensor& kernel, const std::optional<Tensor>& bias,
                                                           const IntOrInts& kernel_size,
                                                           const KerasLocallyConnectedOptions& options) {
  if (!kernel.defined()) throw ValueError(fmt::format("{}: kernel is undefined", kWho));
  const Shape k(kernel_size.begin(), kernel_size.end());
  const std::size_t n = k.size();
  if (n == 0) throw ValueError(fmt::format("{}: kernel_size is empty", kWho));
  for (auto v : k)
    if (v <= 0) throw ValueError(fmt::format("{}: kernel_size {} must be positive", kWho, shape_str(k)));
  const bool channels_last = options.data_format == "channels_last";
  if (!channels_last && options.data_format != "channels_first")
    throw ValueError(fmt::format("{}: data_format must be 'channels_last' or 'channels_first', got '{}'", kWho,
                                 options.data_format));
  const auto rank = static_cast<std::size_t>(kernel.dim());
  int implementation = options.implementation;
  if (implementation == 0) implementation = rank == 3 ? 1 : rank == 2 * n + 2 ? 2 : rank == 1 ? 3 : 0;
  if (implementation < 1 || implementation > 3)
    throw ShapeError(fmt::format("{}: kernel {} is neither implementation 1's (positions, prod(kernel_size) * C, F), "
                                 "implementation 2's dense kernel of rank {} for kernel_size {}, nor implementation "
                                 "3's vector",
                                 kWho, shape_str(kernel.shape()), 2 * n + 2, shape_str(k)));
  const std::int64_t S = numel(k);
  const Shape& ks = kernel.shape();
  if (bias && bias->dim() != static_cast<std::int64_t>(n) + 1)
    throw ShapeError(fmt::format("{}: bias {} must be (output spatial..., F), rank {}", kWho,
                                 shape_str(bias->shape()), n + 1));

  Shape O, M;
  std::int64_t C = 0, F = 0;
  std::vector<std::int64_t> strides;
  if (implementation == 1) {
    if (rank != 3)
      throw ShapeError(fmt::format("{}: an implementation 1 kernel is (positions, prod(kernel_size) * C, F), got {}",
                                   kWho, shape_str(ks)));
    if (ks[1] % S != 0)
      throw ShapeError(fmt::format("{}: kernel {} axis 1 ({}) is not a multiple of prod(kernel_size {}) = {}", kWho,
                                   shape_str(ks), ks[1], shape_str(k), S));
    C = ks[1] / S;
    F = ks[2];
    if (bias) O.assign(bias->shape().begin(), bias->shape().end() - 1);
    else if (!options.output_shape.empty()) O = options.output_shape;
    else if (n == 1) O = {ks[0]};
    else
      throw ValueError(fmt::format("{}: a {}-d implementation 1 kernel {} does not say the output's spatial shape; "
                                   "pass the bias or options.output_shape",
                                   kWho, n, shape_str(ks)));
    if (O.size() != n || numel(O) != ks[0])
      throw ShapeError(fmt::format("{}: output spatial shape {} does not have the kernel's {} positions (kernel {})",
                                   kWho, shape_str(O), ks[0], shape_str(ks)));
  } else if (implementation == 3) {
    // A vector over sorted(conv_kernel_idxs(...)): P * F * S * C weights, VALID only.
    if (rank != 1)
      throw ShapeError(fmt::format("{}: an implementation 3 kernel is a vector, got {}", kWho, shape_str(ks)));
    if (bias) {
      O.assign(bias->shape().begin(), bias->shape().end() - 1);
      F = bias->shape().back();
    } else {
      O = options.output_shape;
      F = options.features;
    }
    if (O.size() != n || F <= 0)
      throw ValueError(fmt::format("{}: an implementation 3 kernel {} does not say the output's shape; pass the bias "
                                   "or options.output_shape and options.features",
                                   kWho, shape_str(ks)));
    const std::int64_t per_channel = numel(O) * F * S;
    if (per_channel <= 0 || ks[0] % per_channel != 0)
      throw ShapeError(fmt::format("{}: implementation 3 kernel {} is not positions {} x F {} x prod(kernel_size {}) "
                                   "x C for any C (Keras 'same' padding does not convert)",
                                   kWho, shape_str(ks), shape_str(O), F, shape_str(k)));
    C = ks[0] / per_channel;
  } else {
    if (rank != 2 * n + 2)
      throw ShapeError(fmt::format("{}: an implementation 2 kernel for kernel_size {} has rank {}, got {}", kWho,
                                   shape_str(k), 2 * n + 2, shape_str(ks)));
    if (channels_last) {  // (M..., C, O..., F)
      M.assign(ks.begin(), ks.begin() + static_cast<std::ptrdiff_t>(n));
      C = ks[n];
      O.assign(ks.begin() + static_cast<std::ptrdiff_t>(n) + 1, ks.end() - 1);
      F = ks.back();
    } else {  // (C, M..., F, O...)
      C = ks[0];
      M.assign(ks.begin() + 1, ks.begin() + 1 + static_cast<std::ptrdiff_t>(n));
      F = ks[n + 1];
      O.assign(ks.begin() + static_cast<std::ptrdiff_t>(n) + 2, ks.end());
    }
    const auto& given = options.strides.values;
    if (given.size() > 1 && given.size() != n)
      throw ValueError(fmt::format("{}: strides [{}] must be one int or one per spatial dim ({})", kWho,
                                   fmt::join(given, ", "), n));
    for (std::size_t j = 0; j < n; ++j) {
      std::optional<std::int64_t> s;
      if (!given.empty()) s = given.size() == 1 ? given[0] : given[j];
      if (s && *s <= 0) throw ValueError(fmt::format("{}: strides [{}] must be positive", kWho, fmt::join(given, ", ")));
      strides.push_back(stride_for(M[j], k[j], O[j], s, j));
    }
  }
  if (bias) {
    Shape expected = O;
    expected.push_back(F);
    if (bias->shape() != expected)
      throw ShapeError(fmt::format("{}: bias {} must be (output spatial..., F) = {}", kWho, shape_str(bias->shape()),
                                   shape_str(expected)));
  }

  // out[o, c*S + r, f] = the Keras weight of output o, window offset r, channel c, feature f.
  const std::int64_t P = numel(O);
  const std::vector<double> src = kernel.to_vector();
  std::vector<double> dst(static_cast<std::size_t>(P * S * C * F));
  for (std::int64_t o = 0; o < P; ++o) {
    const auto oi = unravel(o, O);
    for (std::int64_t r = 0; r < S; ++r) {
      const auto kappa = unravel(r, k);
      std::vector<std::int64_t> m(n);
      if (implementation == 2)
        for (std::size_t j = 0; j < n; ++j) m[j] = oi[j] * strides[j] + kappa[j];
      const std::int64_t m_flat = implementation == 2 ? ravel(m, M) : 0;
      const std::int64_t Mn = implementation == 2 ? numel(M) : 0;
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t f = 0; f < F; ++f) {
          std::int64_t from = 0;
          if (implementation == 1)
            from = (o * S * C + (channels_last ? r * C + c : c * S + r)) * F + f;
          else if (implementation == 3)
            // sorted (output, input) index pairs: channels_last outputs o * F + f, inputs
            // m * C + c (window offsets in row-major order = r); channels_first f * P + o, c * M + m.
            from = channels_last ? ((o * F + f) * S + r) * C + c : ((f * P + o) * C + c) * S + r;
          else if (channels_last)
            from = ((m_flat * C + c) * P + o) * F + f;
          else
            from = ((c * Mn + m_flat) * F + f) * P + o;
          dst[static_cast<std::size_t>(((o * C + c) * S + r) * F + f)] = src[static_cast<std::size_t>(from)];
        }
    }
  }
  Shape shape = O;
  shape.push_back(S * C);
  shape.push_back(F);
  std::map<std::string, Tensor> out;
  out.emplace("kernel", from_vector(dst, shape, kernel.dtype()));
  if (bias) {
    // Keras adds a bias of shape (O..., F) with backend.bias_add, which for
    // channels_first *reshapes* it to (F, O...) (no transpose): output (f, o) gets
    // flat entry f * P + o. ConvLocal adds bias[o, f].
    std::vector<double> b = bias->to_vector();
    if (!channels_last) {
      std::vector<double> moved(b.size());
      for (std::int64_t o = 0; o < P; ++o)
        for (std::int64_t f = 0; f < F; ++f)
          moved[static_cast<std::size_t>(o * F + f)] = b[static_cast<std::size_t>(f * P + o)];
      b = std::move(moved);
    }
    out.emplace("bias", from_vector(b, bias->shape(), bias->dtype()));
  }
  return out;
}

}  // namespace xgrad::nn
