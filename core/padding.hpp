// Convolution padding as the user writes it (Flax's `padding` attribute), kept
// unresolved until the conv rank and input shape are known.
//
//   Padding p = "SAME";            // a string: 'SAME', 'VALID', 'CIRCULAR', 'REFLECT', 'CAUSAL', ...
//   Padding p = 1;                 // an int: (1, 1) on every spatial dim
//   Padding p = {{1, 2}, {0, 0}};  // a sequence of (lo, hi) pairs, one per spatial dim
//   Padding p = {1, {2, 3}};       // a mixed sequence: ints mean (p, p)
//
// Braces are a Python list: `{2}` is the one-entry sequence [2], not the int 2.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/shape.hpp"

namespace xgrad {

class Padding {
 public:
  // One element of a padding sequence: an int p (both sides) or a (lo, hi) pair.
  struct Entry {
    int lo = 0;
    int hi = 0;
    bool is_pair = false;  // only changes how the entry prints
    Entry(int p) : lo(p), hi(p) {}
    Entry(int low, int high) : lo(low), hi(high), is_pair(true) {}
    Entry(std::pair<int, int> p) : Entry(p.first, p.second) {}
  };

  Padding() : Padding("SAME") {}  // Flax's default
  Padding(const char* name) : form_(std::string(name)) {}
  Padding(std::string name) : form_(std::move(name)) {}
  Padding(int p) : form_(p) {}
  Padding(std::initializer_list<Entry> entries) : form_(std::vector<Entry>(entries)) {}
  Padding(std::vector<Entry> entries) : form_(std::move(entries)) {}
  Padding(const std::vector<std::pair<int, int>>& pairs);
  Padding(const std::vector<int>& per_dim);

  bool is_string() const { return std::holds_alternative<std::string>(form_); }
  bool is_int() const { return std::holds_alternative<int>(form_); }
  bool is_sequence() const { return std::holds_alternative<std::vector<Entry>>(form_); }
  const std::string& name() const;            // is_string() only
  int value() const;                          // is_int() only
  const std::vector<Entry>& entries() const;  // is_sequence() only
  // The sequence as (lo, hi) pairs, ints expanded to (p, p); is_sequence() only.
  std::vector<std::pair<int, int>> pairs() const;

  std::string to_string() const;  // Python-like: 'SAME', 2, [(1, 2), 3]

 private:
  std::variant<std::string, int, std::vector<Entry>> form_;
};

// flax.linen.linear.canonicalize_padding: a string is returned unchanged (case
// included); an int p becomes [(p, p)] * rank; a sequence of length `rank` has its
// ints expanded to pairs. Anything else throws ValueError("Invalid padding format: ...").
Padding canonicalize_padding(const Padding& padding, int rank);

// jax.lax.padtype_to_pads for a string padding, upper-cased first as lax does:
// VALID -> no pads; SAME / SAME_LOWER -> out = ceil(in / stride) and total pad
// max((out - 1) * stride + window - in, 0), the odd unit at the end (SAME) or the
// start (SAME_LOWER). `window` is the dilated kernel extent. Unknown strings throw
// ValueError naming `op`.
PadPairs padtype_to_pads(std::string_view padding_type, const Shape& in_spatial, const Shape& window,
                         const std::vector<std::int64_t>& strides, const char* op);

}  // namespace xgrad
