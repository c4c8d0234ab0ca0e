#include "core/padding.hpp"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "core/error.hpp"

namespace xgrad {

Padding::Padding(const std::vector<std::pair<int, int>>& pairs)
    : form_(std::vector<Entry>(pairs.begin(), pairs.end())) {}

Padding::Padding(const std::vector<int>& per_dim) : form_(std::vector<Entry>(per_dim.begin(), per_dim.end())) {}

const std::string& Padding::name() const {
  if (!is_string()) throw ValueError("Padding::name: padding " + to_string() + " is not a string");
  return std::get<std::string>(form_);
}

int Padding::value() const {
  if (!is_int()) throw ValueError("Padding::value: padding " + to_string() + " is not an int");
  return std::get<int>(form_);
}

const std::vector<Padding::Entry>& Padding::entries() const {
  if (!is_sequence()) throw ValueError("Padding::entries: padding " + to_string() + " is not a sequence");
  return std::get<std::vector<Entry>>(form_);
}

std::vector<std::pair<int, int>> Padding::pairs() const {
  std::vector<std::pair<int, int>> out;
  for (const Entry& e : entries()) out.emplace_back(e.lo, e.hi);
  return out;
}

std::string Padding::to_string() const {
  if (is_string()) return "'" + name() + "'";
  if (is_int()) return std::to_string(value());
  std::string s = "[";
  for (const Entry& e : entries()) {
    if (s.size() > 1) s += ", ";
    s += e.is_pair ? fmt::format("({}, {})", e.lo, e.hi) : std::to_string(e.lo);
  }
  return s + "]";
}

Padding canonicalize_padding(const Padding& padding, int rank) {
  if (padding.is_string()) return padding;
  if (padding.is_int()) return Padding(std::vector<Padding::Entry>(static_cast<std::size_t>(rank),
                                                                   Padding::Entry(padding.value(), padding.value())));
  if (static_cast<int>(padding.entries().size()) == rank) {
    std::vector<Padding::Entry> pairs;
    for (const auto& e : padding.entries()) pairs.emplace_back(e.lo, e.hi);
    return Padding(std::move(pairs));
  }
  throw ValueError(fmt::format("Invalid padding format: {}, should be str, int, or a sequence of len {} where each "
                               "element is an int or pair of ints.",
                               padding.to_string(), rank));
}

namespace {

std::string upper_case(std::string_view s) {
  std::string upper(s);
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
  return upper;
}

}  // namespace

bool pads_nothing(const Padding& padding, int rank) {
  if (padding.is_string()) return upper_case(padding.name()) == "VALID";
  try {
    const Padding pairs = canonicalize_padding(padding, rank);
    return pairs.pairs() == std::vector<std::pair<int, int>>(static_cast<std::size_t>(rank), {0, 0});
  } catch (const ValueError&) {
    return false;
  }
}

PadPairs padtype_to_pads(std::string_view padding_type, const Shape& in_spatial, const Shape& window,
                         const std::vector<std::int64_t>& strides, const char* op) {
  const std::string upper = upper_case(padding_type);
  PadPairs pads;
  if (upper == "VALID") {
    pads.assign(in_spatial.size(), {0, 0});
    return pads;
  }
  if (upper != "SAME" && upper != "SAME_LOWER")
    throw ValueError(fmt::format("{}: Unrecognized padding type: expected 'VALID', 'SAME', or 'SAME_LOWER', got "
                                 "'{}'. (Flax-level 'CIRCULAR', 'REFLECT' and 'CAUSAL' are upper-case only.)",
                                 op, padding_type));
  for (std::size_t j = 0; j < in_spatial.size(); ++j) {
    // out = ceil(in / s), total = (out - 1) s + window - in, computed so that no
    // intermediate overflows whatever the sizes: in - (out - 1) s lies in [1, s]
    // (and is s when in = 0).
    const std::int64_t s = strides[j], in = in_spatial[j];
    const std::int64_t out = in / s + (in % s != 0);
    const std::int64_t last_step = out == 0 ? s : in - (out - 1) * s;
    const std::int64_t total = std::max<std::int64_t>(window[j] - last_step, 0);
    const std::int64_t lo = upper == "SAME" ? total / 2 : total - total / 2;
    pads.emplace_back(lo, total - lo);
  }
  return pads;
}

}  // namespace xgrad
