// The combinators (identity, chain, masked), apply_updates and state (de)serialisation.
#include "optim/base.hpp"

#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "core/error.hpp"
#include "optim/detail.hpp"

namespace xgrad::optim {

namespace {

template <class Entries>
auto& find_entry(Entries& entries, std::string_view name, const char* kind) {
  for (auto& [key, value] : entries)
    if (key == name) return value;
  throw ValueError(fmt::format("optimizer state has no {} '{}' (was it created by this transformation's init?)",
                               kind, name));
}

}  // namespace

NamedTensors& OptState::buffer(std::string_view name) { return find_entry(buffers, name, "buffer"); }
std::int64_t& OptState::counter(std::string_view name) { return find_entry(counters, name, "counter"); }
std::int64_t OptState::counter(std::string_view name) const { return find_entry(counters, name, "counter"); }

GradientTransformation identity() {
  return detail::stateless([](NamedTensors&, const NamedTensors&) {});
}

GradientTransformation chain(std::vector<GradientTransformation> transformations) {
  auto txs = std::make_shared<const std::vector<GradientTransformation>>(std::move(transformations));
  GradientTransformation tx;
  tx.init = [txs](const NamedTensors& params) {
    OptState state;
    for (std::size_t i = 0; i < txs->size(); ++i) state.inner.emplace_back(std::to_string(i), (*txs)[i].init(params));
    return state;
  };
  tx.update = [txs](NamedTensors& updates, OptState& state, const NamedTensors& params) {
    if (state.inner.size() != txs->size())
      throw ValueError(fmt::format("chain: the state holds {} inner states for {} transformations", state.inner.size(),
                                   txs->size()));
    for (std::size_t i = 0; i < txs->size(); ++i) (*txs)[i].update(updates, state.inner[i].second, params);
  };
  tx.learning_rate = [txs](const OptState& state) -> std::optional<double> {
    for (std::size_t i = 0; i < txs->size() && i < state.inner.size(); ++i)
      if ((*txs)[i].learning_rate)
        if (auto lr = (*txs)[i].learning_rate(state.inner[i].second)) return lr;
    return std::nullopt;
  };
  return tx;
}

GradientTransformation masked(GradientTransformation inner_tx, PathPredicate mask) {
  auto inner = std::make_shared<const GradientTransformation>(std::move(inner_tx));
  auto selected = [mask = std::move(mask)](const NamedTensors& xs) {
    std::vector<std::size_t> indices;
    for (std::size_t i = 0; i < xs.size(); ++i)
      if (!mask || mask(xs[i].first)) indices.push_back(i);
    return indices;
  };
  auto subset = [](const NamedTensors& xs, const std::vector<std::size_t>& indices) {
    NamedTensors sub;
    sub.reserve(indices.size());
    for (std::size_t i : indices) sub.push_back(xs[i]);
    return sub;
  };
  GradientTransformation tx;
  tx.init = [inner, selected, subset](const NamedTensors& params) {
    OptState state;
    state.inner.emplace_back("inner", inner->init(subset(params, selected(params))));
    return state;
  };
  tx.update = [inner, selected, subset](NamedTensors& updates, OptState& state, const NamedTensors& params) {
    const auto indices = selected(updates);
    NamedTensors sub_updates = subset(updates, indices);
    const NamedTensors sub_params = params.empty() ? NamedTensors{} : subset(params, indices);
    inner->update(sub_updates, find_entry(state.inner, "inner", "inner state"), sub_params);
    for (std::size_t k = 0; k < indices.size(); ++k) updates[indices[k]].second = sub_updates[k].second;
  };
  tx.learning_rate = [inner](const OptState& state) -> std::optional<double> {
    if (!inner->learning_rate) return std::nullopt;
    return inner->learning_rate(find_entry(state.inner, "inner", "inner state"));
  };
  return tx;
}

void apply_updates(const NamedTensors& params, const NamedTensors& updates) {
  detail::check_aligned("apply_updates", updates, params, "parameters");
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (params[i].first != updates[i].first)
      throw ValueError(fmt::format("apply_updates: update {} is for '{}' but parameter {} is '{}'", i,
                                   updates[i].first, i, params[i].first));
    detail::elementwise("apply_updates", params[i].first, {params[i].second, updates[i].second}, {true, false},
                        [](std::int64_t n, auto* p, auto* u) {
                          for (std::int64_t k = 0; k < n; ++k) p[k] = p[k] + u[k];
                        });
  }
}

// ---- serialisation

namespace {

// Calls on_tensor(key, tensor) for every buffer entry and on_counter(key, value)
// for every counter, depth first, with the checkpoint key of each.
template <class State, class OnTensor, class OnCounter>
void visit_state(State& state, const std::string& prefix, OnTensor&& on_tensor, OnCounter&& on_counter) {
  for (auto& [name, buffer] : state.buffers)
    for (auto& [path, tensor] : buffer) on_tensor(prefix + "." + name + "." + path, tensor);
  for (auto& [name, value] : state.counters) on_counter(prefix + "." + name, value);
  for (auto& [name, inner] : state.inner) visit_state(inner, prefix + "." + name, on_tensor, on_counter);
}

bool is_int64_scalar(const Tensor& t) { return t.dtype() == DType::Int64 && t.dim() == 0; }

// Checkpoints written before counters were stored exactly kept DP-SGD's key as two
// 32-bit halves, "<k>.rng_key_hi" and "<k>.rng_key_lo"; they are read as "<k>.rng_key".
NamedTensors with_legacy_keys_upgraded(const NamedTensors& saved) {
  static const std::string hi_suffix = ".rng_key_hi", lo_suffix = ".rng_key_lo";
  const auto find = [&](const std::string& key) -> const Tensor* {
    for (const auto& [k, t] : saved)
      if (k == key) return &t;
    return nullptr;
  };
  // The key without its suffix when `key` is one half of a well-formed legacy pair.
  const auto legacy_base = [&](const std::string& key) -> std::optional<std::string> {
    for (const std::string* suffix : {&hi_suffix, &lo_suffix}) {
      if (key.size() < suffix->size() || key.compare(key.size() - suffix->size(), suffix->size(), *suffix) != 0)
        continue;
      const std::string base = key.substr(0, key.size() - suffix->size());
      const Tensor* hi = find(base + hi_suffix);
      const Tensor* lo = find(base + lo_suffix);
      if (hi && lo && is_int64_scalar(*hi) && is_int64_scalar(*lo)) return base;
    }
    return std::nullopt;
  };
  NamedTensors out;
  out.reserve(saved.size());
  for (const auto& [key, t] : saved) {
    const auto base = legacy_base(key);
    if (!base) {
      out.emplace_back(key, t);
      continue;
    }
    if (key != *base + hi_suffix) continue;  // the pair becomes one entry, written at its "_hi" half
    const std::uint64_t bits = (static_cast<std::uint64_t>(t.data<std::int64_t>()[0]) << 32) |
                               (static_cast<std::uint64_t>(find(*base + lo_suffix)->data<std::int64_t>()[0]) & 0xffffffffu);
    const auto value = static_cast<std::int64_t>(bits);
    out.emplace_back(*base + ".rng_key", from_data<std::int64_t>(&value, {}));
  }
  return out;
}

}  // namespace

NamedTensors state_to_named_tensors(const OptState& state, const std::string& prefix) {
  NamedTensors out;
  visit_state(
      state, prefix, [&](const std::string& key, const Tensor& t) { out.emplace_back(key, t.clone()); },
      // Written from the integer itself: through a double, counters above 2^53 would lose bits.
      [&](const std::string& key, std::int64_t c) { out.emplace_back(key, from_data<std::int64_t>(&c, {})); });
  return out;
}

void load_state_from_named_tensors(OptState& state, const NamedTensors& saved_as_given, const std::string& prefix,
                                   const std::string& what) {
  const NamedTensors saved = with_legacy_keys_upgraded(saved_as_given);
  std::map<std::string, const Tensor*> given;
  for (const auto& [key, t] : saved)
    if (!given.emplace(key, &t).second) throw ValueError(fmt::format("{}: key '{}' appears twice", what, key));

  // Validate everything first so that a failed load leaves the state untouched.
  std::vector<std::string> missing;
  std::set<std::string> expected;
  auto lookup = [&](const std::string& key) -> const Tensor* {
    expected.insert(key);
    auto it = given.find(key);
    if (it == given.end()) {
      missing.push_back(key);
      return nullptr;
    }
    return it->second;
  };
  visit_state(
      state, prefix,
      [&](const std::string& key, Tensor& t) {
        const Tensor* s = lookup(key);
        if (!s) return;
        if (s->shape() != t.shape())
          throw ShapeError(fmt::format("{}: '{}' has shape {} but the optimizer state has shape {}", what, key,
                                       shape_str(s->shape()), shape_str(t.shape())));
        if (s->dtype() != t.dtype())
          throw DTypeError(fmt::format("{}: '{}' is {} but the optimizer state is {}", what, key,
                                       dtype_name(s->dtype()), dtype_name(t.dtype())));
      },
      [&](const std::string& key, std::int64_t&) {
        const Tensor* s = lookup(key);
        if (s && (s->dtype() != DType::Int64 || s->dim() != 0))
          throw DTypeError(fmt::format("{}: counter '{}' must be a 0-d int64 tensor, got {} {}", what, key,
                                       dtype_name(s->dtype()), shape_str(s->shape())));
      });
  std::vector<std::string> unexpected;
  for (const auto& [key, t] : saved)
    if (!expected.count(key)) unexpected.push_back(key);
  if (!missing.empty() || !unexpected.empty()) {
    std::string message = what + ":";
    if (!missing.empty()) message += fmt::format(" missing keys: {}.", fmt::join(missing, ", "));
    if (!unexpected.empty()) message += fmt::format(" unexpected keys: {}.", fmt::join(unexpected, ", "));
    throw ValueError(message);
  }

  visit_state(
      state, prefix, [&](const std::string& key, Tensor& t) { t.copy_(*given.at(key)); },
      [&](const std::string& key, std::int64_t& c) { c = given.at(key)->data<std::int64_t>()[0]; });
}

}  // namespace xgrad::optim
