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

// A padding spec: a string, an int, or a sequence of Entry (see the top of this file).
class Padding {
 public:
  // One element of a padding sequence: an int p (both sides) or a (lo, hi) pair.
  struct Entry {
    int lo = 0;            // padding before the first element of the dim
    int hi = 0;            // padding after the last element
    bool is_pair = false;  // only changes how the entry prints
    // An int entry: p on both sides.
    Entry(int p) : lo(p), hi(p) {}
    // A (low, high) pair entry.
    Entry(int low, int high) : lo(low), hi(high), is_pair(true) {}
    // A (low, high) pair entry from a std::pair.
    Entry(std::pair<int, int> p) : Entry(p.first, p.second) {}
  };

  Padding() : Padding("SAME") {}  // Flax's default
  // A string padding, e.g. "SAME", "VALID", "CIRCULAR"; checked only when resolved.
  Padding(const char* name) : form_(std::string(name)) {}
  // A string padding (as above).
  Padding(std::string name) : form_(std::move(name)) {}
  // An int padding: (p, p) on every spatial dim.
  Padding(int p) : form_(p) {}
  // A sequence, one entry per spatial dim, written in braces.
  Padding(std::initializer_list<Entry> entries) : form_(std::vector<Entry>(entries)) {}
  // A sequence, one entry per spatial dim.
  Padding(std::vector<Entry> entries) : form_(std::move(entries)) {}
  // A sequence of (lo, hi) pairs, one per spatial dim.
  Padding(const std::vector<std::pair<int, int>>& pairs);
  // A sequence of ints, one per spatial dim, each meaning (p, p).
  Padding(const std::vector<int>& per_dim);

  // True for a string padding.
  bool is_string() const { return std::holds_alternative<std::string>(form_); }
  // True for an int padding.
  bool is_int() const { return std::holds_alternative<int>(form_); }
  // True for a sequence padding.
  bool is_sequence() const { return std::holds_alternative<std::vector<Entry>>(form_); }
  const std::string& name() const;            // is_string() only (ValueError otherwise)
  int value() const;                          // is_int() only (ValueError otherwise)
  const std::vector<Entry>& entries() const;  // is_sequence() only (ValueError otherwise)
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

// Whether `padding` pads nothing on any of `rank` spatial dims: 'VALID' (any case, as
// padtype_to_pads reads it) or (0, 0) everywhere; false for any other padding, and for
// one canonicalize_padding refuses (its user reports that).
bool pads_nothing(const Padding& padding, int rank);

// jax.lax.padtype_to_pads for a string padding, upper-cased first as lax does:
// VALID -> no pads; SAME / SAME_LOWER -> out = ceil(in / stride) and total pad
// max((out - 1) * stride + window - in, 0), the odd unit at the end (SAME) or the
// start (SAME_LOWER). `window` is the dilated kernel extent. Unknown strings throw
// ValueError naming `op`.
PadPairs padtype_to_pads(std::string_view padding_type, const Shape& in_spatial, const Shape& window,
                         const std::vector<std::int64_t>& strides, const char* op);

}  // namespace xgrad
