// Counter-based random numbers from explicit keys, in the spirit of jax.random.
//
// A Key is a 64-bit state. fold_in derives independent keys from a key and data
// (an integer or a name such as a module path), so values depend only on the key
// and the element index: not on call order, threads or the standard library.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

#include "core/tensor.hpp"

namespace xgrad {

// A random key (jax.random's PRNG key): a value, cheap to copy; equal keys give equal streams.
struct Key {
  std::uint64_t state = 0;  // the 64-bit state all values derive from
  // Keys are equal when their states are.
  bool operator==(const Key&) const = default;
};

// The key for `seed` (jax.random.key(seed)), its state mixed so nearby seeds give unrelated streams.
Key make_key(std::uint64_t seed);
// A key derived from `key` and an integer (jax.random.fold_in): independent of `key` and of other data.
Key fold_in(Key key, std::uint64_t data);
// A key derived from `key` and a name, e.g. a parameter's module path (FNV-1a of the bytes, then mixed).
Key fold_in(Key key, std::string_view name);
// Two new independent keys (jax.random.split into 2): fold_in(key, 1) and fold_in(key, 2).
std::pair<Key, Key> split(Key key);

// The i-th 64 random bits of a key's stream, and a double uniform in [0, 1).
std::uint64_t random_bits(Key key, std::uint64_t counter);
// The top 53 bits of random_bits(key, counter) as a double in [0, 1).
double random_unit(Key key, std::uint64_t counter);

// Uniform in [low, high), element i from counter i (jax.random.uniform); DTypeError unless dtype is floating.
Tensor random_uniform(Key key, const Shape& shape, DType dtype = DType::Float32, double low = 0.0,
                      double high = 1.0);
// Normal with `mean` and `stddev` (Box-Muller; jax.random.normal scaled); DTypeError unless dtype is floating.
Tensor random_normal(Key key, const Shape& shape, DType dtype = DType::Float32, double mean = 0.0,
                     double stddev = 1.0);
// Standard normal truncated to [lower, upper] (jax.random.truncated_normal).
Tensor random_truncated_normal(Key key, const Shape& shape, DType dtype = DType::Float32, double lower = -2.0,
                               double upper = 2.0);
// Bool tensor, true with probability p.
Tensor random_bernoulli(Key key, const Shape& shape, double p);
// A permutation of 0..n-1 (Int64), Fisher-Yates driven by the key's stream.
Tensor random_permutation(Key key, std::int64_t n);

// Integers uniform in [low, high) (jax.random.randint(key, shape, minval, maxval,
// dtype)): low and high are clipped to the dtype's range, and high <= low gives low
// everywhere, as JAX does. dtype: Int32 or Int64.
Tensor random_randint(Key key, const Shape& shape, std::int64_t low, std::int64_t high, DType dtype = DType::Int64);

// Samples category indices from softmax(logits) along `axis`
// (jax.random.categorical(key, logits, axis, shape)), by the Gumbel-max trick:
// argmax(logits + Gumbel noise). -inf logits are never drawn. The result (Int64) has
// logits' shape without `axis`; a given `shape` must end with that shape, its
// leading dims drawing independent samples.
Tensor random_categorical(Key key, const Tensor& logits, std::int64_t axis = -1,
                          const std::optional<Shape>& shape = std::nullopt);

}  // namespace xgrad
