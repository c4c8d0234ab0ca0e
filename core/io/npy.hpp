// NumPy .npy files: one tensor per file, readable and writable by numpy.load/numpy.save.
//
// Reading accepts format versions 1.0, 2.0 and 3.0, little- and big-endian data
// and C or Fortran order; the tensor is always returned row-major and native-endian.
// Writing produces version 1.0, little-endian, C order, with the header padded to
// 64 bytes as NumPy does.
//
// Dtypes ('descr' in the header):
//   bool '|b1'   int32 '<i4'   int64 '<i8'   float16 '<f2'   float32 '<f4'   float64 '<f8'
//   bfloat16     [('bfloat16', '<u2')]
// NumPy has no bfloat16, so xgrad stores it as a structured dtype with a single
// uint16 field named "bfloat16" holding the raw bits (the upper half of the
// float32). numpy.load opens such a file without extra packages (arr['bfloat16']
// gives the bits; `(bits.astype(np.uint32) << 16).view(np.float32)` the values),
// and xgrad recognises exactly this descr (either byte order) as bfloat16.
// Any other dtype is rejected with an IOError naming the descr.
//
// Every malformed input (bad magic, truncation, bad header syntax, a shape the
// file does not hold the data for) raises an IOError naming the file and the
// problem; nothing is allocated beyond the data the file actually contains.
#pragma once

#include <string>
#include <string_view>

#include "core/tensor.hpp"

namespace xgrad {

// The tensor in the .npy file at `path`; IOError naming the file for anything unreadable or malformed.
Tensor load_npy(const std::string& path);
// Atomic: a crash while saving leaves the previous file (if any) intact.
void save_npy(const std::string& path, const Tensor& t);

// In-memory forms; `what` names the source in error messages.
Tensor parse_npy(std::string_view bytes, const std::string& what = "npy");
std::string serialize_npy(const Tensor& t);  // the bytes save_npy writes

}  // namespace xgrad
