#include "core/random.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>
#include <numbers>

#include <fmt/format.h>

#include "core/tensor_impl.hpp"

namespace xgrad {

namespace {

// SplitMix64's finaliser: a bijective mix with good avalanche, the core of the stream.
constexpr std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

template <class Generate>
Tensor fill_random(const Shape& shape, DType dtype, const char* op, Generate generate) {
  if (!is_floating(dtype))
    throw DTypeError(fmt::format("{}: dtype must be floating, got {}", op, dtype_name(dtype)));
  Tensor t = empty(shape, dtype);
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* out = t.data<T>();
    const std::int64_t n = t.numel();
    for (std::int64_t i = 0; i < n; ++i) out[i] = convert_element<T>(generate(static_cast<std::uint64_t>(i)));
  });
  return t;
}

// Box-Muller on two uniforms of the element's own counters; u1 in (0, 1] avoids log(0).
double standard_normal(Key key, std::uint64_t counter) {
  const double u1 = 1.0 - random_unit(key, 2 * counter);
  const double u2 = random_unit(key, 2 * counter + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

}  // namespace

Key make_key(std::uint64_t seed) { return Key{mix(seed + kGolden)}; }
Key fold_in(Key key, std::uint64_t data) { return Key{mix(key.state ^ mix(data + kGolden))}; }
Key fold_in(Key key, std::string_view name) {
  std::uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a, then mixed
  for (unsigned char c : name) h = (h ^ c) * 0x100000001B3ull;
  return fold_in(key, mix(h));
}
std::pair<Key, Key> split(Key key) { return {fold_in(key, std::uint64_t{1}), fold_in(key, std::uint64_t{2})}; }

std::uint64_t random_bits(Key key, std::uint64_t counter) { return mix(key.state + kGolden * (counter + 1)); }
double random_unit(Key key, std::uint64_t counter) {
  return static_cast<double>(random_bits(key, counter) >> 11) * 0x1.0p-53;
}

Tensor random_uniform(Key key, const Shape& shape, DType dtype, double low, double high) {
  return fill_random(shape, dtype, "random_uniform",
                     [&](std::uint64_t i) { return low + (high - low) * random_unit(key, i); });
}

Tensor random_normal(Key key, const Shape& shape, DType dtype, double mean, double stddev) {
  return fill_random(shape, dtype, "random_normal",
                     [&](std::uint64_t i) { return mean + stddev * standard_normal(key, i); });
}

Tensor random_truncated_normal(Key key, const Shape& shape, DType dtype, double lower, double upper) {
  if (!(lower < upper))
    throw ValueError(fmt::format("random_truncated_normal: lower ({}) must be below upper ({})", lower, upper));
  // Rejection: attempt j of element i draws from its own sub-stream, so the result
  // does not depend on how many attempts other elements needed.
  return fill_random(shape, dtype, "random_truncated_normal", [&](std::uint64_t i) {
    const Key element = fold_in(key, i);
    for (std::uint64_t attempt = 0; attempt < 1000; ++attempt) {
      const double x = standard_normal(element, attempt);
      if (x >= lower && x <= upper) return x;
    }
    return std::clamp(0.0, lower, upper);  // only for absurdly narrow tails
  });
}

Tensor random_bernoulli(Key key, const Shape& shape, double p) {
  Tensor t = empty(shape, DType::Bool);
  bool* out = t.data<bool>();
  for (std::int64_t i = 0; i < t.numel(); ++i) out[i] = random_unit(key, static_cast<std::uint64_t>(i)) < p;
  return t;
}

Tensor random_permutation(Key key, std::int64_t n) {
  Tensor t = empty({n}, DType::Int64);
  std::int64_t* p = t.data<std::int64_t>();
  for (std::int64_t i = 0; i < n; ++i) p[i] = i;
  for (std::int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<std::int64_t>(random_bits(key, static_cast<std::uint64_t>(i)) %
                                             static_cast<std::uint64_t>(i + 1));
    std::swap(p[i], p[j]);
  }
  return t;
}

Tensor random_randint(Key key, const Shape& shape, std::int64_t low, std::int64_t high, DType dtype) {
  if (dtype != DType::Int32 && dtype != DType::Int64)
    throw DTypeError(fmt::format("random_randint: dtype must be int32 or int64, got {}", dtype_name(dtype)));
  if (dtype == DType::Int32) {  // JAX clips the bounds to the dtype's range
    using limits = std::numeric_limits<std::int32_t>;
    low = std::clamp<std::int64_t>(low, limits::min(), limits::max());
    high = std::clamp<std::int64_t>(high, limits::min(), limits::max());
  }
  // span >= 1 (high <= low gives low), computed without overflow.
  const auto span = high > low ? static_cast<std::uint64_t>(high) - static_cast<std::uint64_t>(low) : std::uint64_t{1};
  Tensor t = empty(shape, dtype);
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::int64_t>) {
      T* out = t.data<T>();
      for (std::int64_t i = 0; i < t.numel(); ++i) {
        // The high half of bits * span: uniform in [0, span) up to a bias below 2^-64 * span.
        const auto bits = static_cast<unsigned __int128>(random_bits(key, static_cast<std::uint64_t>(i)));
        const auto offset = static_cast<std::uint64_t>((bits * span) >> 64);
        out[i] = static_cast<T>(static_cast<std::int64_t>(static_cast<std::uint64_t>(low) + offset));
      }
    }
  });
  return t;
}

Tensor random_categorical(Key key, const Tensor& logits, std::int64_t axis, const std::optional<Shape>& shape) {
  if (!logits.defined()) throw ValueError("random_categorical: logits are undefined");
  if (!is_floating(logits.dtype()))
    throw DTypeError(fmt::format("random_categorical: logits must be floating, got {} {}",
                                 dtype_name(logits.dtype()), shape_str(logits.shape())));
  const Shape& s = logits.shape();
  const auto rank = static_cast<std::int64_t>(s.size());
  if (rank == 0 || axis < -rank || axis >= rank)
    throw ShapeError(fmt::format("random_categorical: axis {} is out of range for logits of shape {}", axis,
                                 shape_str(s)));
  if (axis < 0) axis += rank;
  const std::int64_t classes = s[static_cast<std::size_t>(axis)];
  Shape batch = s;
  batch.erase(batch.begin() + axis);
  Shape out_shape = shape.value_or(batch);
  const auto n_batch = static_cast<std::ptrdiff_t>(batch.size());
  if (out_shape.size() < batch.size() || !std::equal(batch.begin(), batch.end(), out_shape.end() - n_batch))
    throw ShapeError(fmt::format("random_categorical: shape {} must end with the logits' shape without axis {}: {}",
                                 shape_str(out_shape), axis, shape_str(batch)));
  if (classes == 0 && numel(out_shape) > 0)
    throw ValueError(fmt::format("random_categorical: logits of shape {} have no category along axis {}",
                                 shape_str(s), axis));
  std::int64_t inner = 1;  // stride of the class axis
  for (std::int64_t d = axis + 1; d < rank; ++d) inner *= s[static_cast<std::size_t>(d)];
  const std::vector<double> values = logits.to_vector();
  Tensor t = empty(out_shape, DType::Int64);
  std::int64_t* out = t.data<std::int64_t>();
  const std::int64_t per_sample = std::max<std::int64_t>(numel(batch), 1);
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    const std::int64_t b = i % per_sample;  // the position in `batch`: (before axis, after axis)
    const std::int64_t before = b / inner, after = b % inner;
    std::int64_t best = 0;
    double best_score = -std::numeric_limits<double>::infinity();
    for (std::int64_t c = 0; c < classes; ++c) {
      // u in (0, 1), never 0 or 1, so the Gumbel noise -log(-log u) is finite.
      const auto bits = random_bits(key, static_cast<std::uint64_t>(i * classes + c));
      const double u = (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53;
      const double logit = values[static_cast<std::size_t>((before * classes + c) * inner + after)];
      const double score = logit - std::log(-std::log(u));
      if (score > best_score) best_score = score, best = c;
    }
    out[i] = best;
  }
  return t;
}

}  // namespace xgrad
