// Reader for the IDX format of (Fashion-)MNIST, plain or gzip'ed.
//
// An IDX file is a 4-byte magic number 0x0000TTNN (TT: element type code, NN:
// number of dimensions), NN big-endian uint32 dimensions, then the elements in
// row-major order. Only unsigned bytes (TT = 0x08) are read; the other IDX types
// are rejected with an IOError.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/shape.hpp"

namespace xgrad {

// xgrad has no uint8 dtype, so the raw bytes come back as they are; callers
// convert (see load_fashion_mnist).
struct IdxArray {
  Shape shape;                      // the dimensions from the header
  std::vector<std::uint8_t> bytes;  // numel(shape) elements, row-major
};

// Largest element count read_idx accepts from a header (2^31), so that a lying
// header cannot make it allocate without bound.
inline constexpr std::int64_t kMaxIdxElements = std::int64_t{1} << 31;

// Reads an IDX file, gzip'ed or not (detected from the content, not the name).
// Throws IOError naming the file and the problem: missing file, not an IDX file,
// unsupported element type, zero dimension, oversized header, truncated data,
// trailing data or a corrupt gzip stream. The data is decompressed incrementally,
// so memory grows with what actually arrives, never with what the header claims.
IdxArray read_idx(const std::string& path);

}  // namespace xgrad
