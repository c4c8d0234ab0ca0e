// The header dictionary of an .npy file (internal to the npy reader and writer).
//
// NumPy writes it as a Python literal, e.g.
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// and reads it with ast.literal_eval. xgrad parses the subset of Python literal
// syntax that can appear there (strings, integers, True/False, tuples, lists)
// with bounded nesting, so that a hostile header fails with a clear IOError.
#pragma once

#include <string>
#include <string_view>

#include "core/shape.hpp"

namespace xgrad {

struct NpyHeader {
  // The 'descr' value re-printed as canonical Python source, quotes included:
  // "'<f4'" for a plain dtype, "[('bfloat16', '<u2')]" for a structured one.
  std::string descr;
  bool fortran_order = false;
  Shape shape;
};

// `text` is the header between the length field and the data, padding included;
// `what` names the file in error messages.
NpyHeader parse_npy_header(std::string_view text, const std::string& what);

// The dictionary as NumPy prints it (no padding, no newline).
std::string format_npy_header(const NpyHeader& header);

}  // namespace xgrad
