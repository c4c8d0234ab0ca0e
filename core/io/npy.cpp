#include "core/io/npy.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

#include "core/error.hpp"
#include "core/io/file_io.hpp"
#include "core/io/npy_header.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad {

namespace {

constexpr std::string_view kMagic{"\x93NUMPY", 6};
constexpr std::size_t kPreambleSize = 12;  // magic, version, and the widest header-length field
constexpr std::size_t kHeaderAlign = 64;   // NumPy aligns the data to 64 bytes
constexpr std::size_t kMaxDims = 32;       // NumPy's limit
constexpr bool kNativeLittle = std::endian::native == std::endian::little;
constexpr const char* kSupportedDTypes =
    "xgrad reads bool, int32, int64, float16, bfloat16, float32, float64";

static_assert(sizeof(bool) == 1, "npy stores bool as one byte");

// bfloat16 as a one-field structured dtype of raw bits (see npy.hpp).
constexpr std::string_view kBFloat16Little = "[('bfloat16', '<u2')]";
constexpr std::string_view kBFloat16Big = "[('bfloat16', '>u2')]";

// Where the header dictionary lies, read from the first bytes of the file.
struct HeaderSpan {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;  // where the data starts
};

struct DataLayout {
  DType dtype = DType::Float32;
  Shape shape;
  bool fortran_order = false;
  bool byteswap = false;
  std::uint64_t bytes = 0;
};

[[noreturn]] void truncated_header(const std::string& what, std::uint64_t needed, std::uint64_t have) {
  throw IOError("truncated header in " + what + ": the header needs " + std::to_string(needed) +
                " bytes, the file has " + std::to_string(have));
}

// `prefix` holds the first min(file_size, kPreambleSize) bytes.
HeaderSpan locate_header(std::string_view prefix, std::uint64_t file_size, const std::string& what) {
  const std::size_t n = std::min(prefix.size(), kMagic.size());
  if (prefix.substr(0, n) != kMagic.substr(0, n) || file_size == 0)
    throw IOError("bad magic in " + what + ": not an .npy file (it must start with \"\\x93NUMPY\")");
  if (file_size < 8) truncated_header(what, 8, file_size);
  const int major = static_cast<unsigned char>(prefix[6]);
  const int minor = static_cast<unsigned char>(prefix[7]);
  std::size_t length_bytes = 0;
  if (major == 1 && minor == 0)
    length_bytes = 2;
  else if ((major == 2 || major == 3) && minor == 0)
    length_bytes = 4;
  else
    throw IOError("unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                  " in " + what + ": xgrad reads versions 1.0, 2.0 and 3.0");
  HeaderSpan span;
  span.begin = 8 + length_bytes;
  if (file_size < span.begin) truncated_header(what, span.begin, file_size);
  std::uint64_t length = 0;
  for (std::size_t i = 0; i < length_bytes; ++i)
    length |= static_cast<std::uint64_t>(static_cast<unsigned char>(prefix[8 + i])) << (8 * i);
  span.end = span.begin + length;
  if (file_size < span.end) truncated_header(what, span.end, file_size);
  return span;
}

// Maps the canonical descr to a dtype and whether the file's bytes need swapping.
std::pair<DType, bool> dtype_of_descr(const std::string& descr, const std::string& what) {
  if (descr == kBFloat16Little) return {DType::BFloat16, !kNativeLittle};
  if (descr == kBFloat16Big) return {DType::BFloat16, kNativeLittle};
  // A plain descr prints as 'Xkn': byte order X, kind k, size n.
  if (descr.size() == 5 && descr.front() == '\'' && descr.back() == '\'') {
    const char order = descr[1];
    const std::string code = descr.substr(2, 2);
    const bool little = order == '<' || ((order == '|' || order == '=') && kNativeLittle);
    const bool known_order = order == '<' || order == '>' || order == '|' || order == '=';
    struct Code {
      const char* code;
      DType dtype;
    };
    constexpr Code kCodes[] = {{"b1", DType::Bool},    {"i4", DType::Int32},   {"i8", DType::Int64},
                               {"f2", DType::Float16}, {"f4", DType::Float32}, {"f8", DType::Float64}};
    for (const Code& c : kCodes)
      if (known_order && code == c.code) return {c.dtype, little != kNativeLittle && itemsize(c.dtype) > 1};
  }
  throw IOError("unsupported dtype " + descr + " in " + what + ": " + kSupportedDTypes);
}

std::string describe(DType dtype, const Shape& shape) {
  const std::string name(dtype_name(dtype));
  return (name.front() == 'i' ? "an " : "a ") + name + " array of shape " + shape_str(shape);
}

// Validates the header against the bytes that follow it, before anything is allocated.
DataLayout decode_header(std::string_view header_text, std::uint64_t data_available,
                         const std::string& what) {
  const NpyHeader header = parse_npy_header(header_text, what);
  DataLayout layout;
  std::tie(layout.dtype, layout.byteswap) = dtype_of_descr(header.descr, what);
  layout.shape = header.shape;
  layout.fortran_order = header.fortran_order;
  if (layout.shape.size() > kMaxDims)
    throw IOError("bad header in " + what + ": " + std::to_string(layout.shape.size()) +
                  " dimensions, more than NumPy's " + std::to_string(kMaxDims));
  // Zero dims count as one here, so that every stride of the array is representable too.
  const std::uint64_t limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t bytes = itemsize(layout.dtype);
  bool empty_array = false;
  for (std::int64_t d : layout.shape) {
    empty_array = empty_array || d == 0;
    if (d != 0 && (__builtin_mul_overflow(bytes, static_cast<std::uint64_t>(d), &bytes) || bytes > limit))
      throw IOError("bad header in " + what + ": shape " + shape_str(layout.shape) + " is too large");
  }
  layout.bytes = empty_array ? 0 : bytes;
  if (data_available != layout.bytes)
    throw IOError(std::string(data_available < layout.bytes ? "truncated data" : "unexpected trailing data") +
                  " in " + what + ": " + describe(layout.dtype, layout.shape) + " needs " +
                  std::to_string(layout.bytes) + " bytes of data, the file has " +
                  std::to_string(data_available));
  return layout;
}

char* bytes_of(Tensor& t) {
  return visit_dtype(t.dtype(), [&](auto tag) { return reinterpret_cast<char*>(t.data<decltype(tag)>()); });
}

const char* bytes_of(const Tensor& t) {
  return visit_dtype(t.dtype(),
                     [&](auto tag) { return reinterpret_cast<const char*>(t.data<decltype(tag)>()); });
}

// The tensor that receives the file's data bytes as they are: for Fortran order
// that is the row-major array of the reversed shape.
Tensor data_receiver(const DataLayout& layout) {
  Shape shape = layout.shape;
  if (layout.fortran_order) std::reverse(shape.begin(), shape.end());
  return empty(shape, layout.dtype);
}

void swap_bytes(char* p, std::uint64_t bytes, std::size_t width) {
  for (std::uint64_t i = 0; i < bytes; i += width) std::reverse(p + i, p + i + width);
}

// out[i0, ..., in-1] = in[in-1, ..., i0], with `in` row-major of the reversed shape.
template <class T>
void reverse_axes(const T* in, T* out, const Shape& shape) {
  const std::size_t n = shape.size();
  Shape stride(n);  // of `in`, per output axis
  std::int64_t total = 1;
  for (std::size_t k = 0; k < n; ++k) {
    stride[k] = total;
    total *= shape[k];
  }
  const std::int64_t inner = shape[n - 1], inner_stride = stride[n - 1];
  for (std::int64_t row = 0; row < total / inner; ++row) {
    std::int64_t offset = 0, rest = row;
    for (std::size_t k = n - 1; k-- > 0;) {
      offset += (rest % shape[k]) * stride[k];
      rest /= shape[k];
    }
    for (std::int64_t j = 0; j < inner; ++j) *out++ = in[offset + j * inner_stride];
  }
}

// Turns the raw file bytes in `raw` into a native, row-major tensor of the layout's shape.
Tensor finish(Tensor raw, const DataLayout& layout) {
  char* p = bytes_of(raw);
  if (layout.dtype == DType::Bool)  // any nonzero byte is True, as in NumPy; a C++ bool must be 0 or 1
    for (std::uint64_t i = 0; i < layout.bytes; ++i) p[i] = p[i] != 0;
  if (layout.byteswap) swap_bytes(p, layout.bytes, itemsize(layout.dtype));
  if (!layout.fortran_order || layout.shape.size() < 2) return raw;  // already row-major
  if (layout.bytes == 0) return empty(layout.shape, layout.dtype);
  Tensor out = empty(layout.shape, layout.dtype);
  visit_dtype(layout.dtype, [&](auto tag) {
    using T = decltype(tag);
    reverse_axes(raw.data<T>(), out.data<T>(), layout.shape);
  });
  return out;
}

std::string descr_of(DType dtype) {
  switch (dtype) {
    case DType::Bool: return "'|b1'";
    case DType::Int32: return "'<i4'";
    case DType::Int64: return "'<i8'";
    case DType::Float16: return "'<f2'";
    case DType::BFloat16: return std::string(kBFloat16Little);
    case DType::Float32: return "'<f4'";
    case DType::Float64: return "'<f8'";
  }
  throw DTypeError("npy: unknown dtype");
}

// Magic, version 1.0, length, and the dictionary padded so that the data starts 64-byte aligned.
std::string header_block(const Tensor& t, const char* op) {
  if (!t.defined()) throw ValueError(std::string(op) + ": the tensor is undefined");
  if (t.shape().size() > kMaxDims)
    throw ValueError(std::string(op) + ": NumPy reads at most " + std::to_string(kMaxDims) +
                     " dimensions, the tensor has shape " + shape_str(t.shape()));
  std::string dict = format_npy_header({descr_of(t.dtype()), false, t.shape()});
  const std::size_t unpadded = kMagic.size() + 4 + dict.size() + 1;
  dict.append((kHeaderAlign - unpadded % kHeaderAlign) % kHeaderAlign, ' ');
  dict += '\n';
  std::string out(kMagic);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>(dict.size() >> 8);
  return out + dict;
}

std::string_view data_bytes(const Tensor& t) {
  return {bytes_of(t), static_cast<std::size_t>(t.numel()) * itemsize(t.dtype())};
}

}  // namespace

Tensor parse_npy(std::string_view bytes, const std::string& what) {
  const HeaderSpan span = locate_header(bytes.substr(0, kPreambleSize), bytes.size(), what);
  const DataLayout layout =
      decode_header(bytes.substr(span.begin, span.end - span.begin), bytes.size() - span.end, what);
  Tensor raw = data_receiver(layout);
  if (layout.bytes > 0) std::memcpy(bytes_of(raw), bytes.data() + span.end, layout.bytes);
  return finish(raw, layout);
}

Tensor load_npy(const std::string& path) {
  InputFile file(path);
  std::string prefix(std::min<std::uint64_t>(file.size(), kPreambleSize), '\0');
  file.read_at(0, prefix.data(), prefix.size());
  const HeaderSpan span = locate_header(prefix, file.size(), path);
  std::string header(span.end - span.begin, '\0');
  file.read_at(span.begin, header.data(), header.size());
  const DataLayout layout = decode_header(header, file.size() - span.end, path);
  Tensor raw = data_receiver(layout);
  if (layout.bytes > 0) file.read_at(span.end, bytes_of(raw), layout.bytes);
  return finish(raw, layout);
}

std::string serialize_npy(const Tensor& t) {
  std::string out = header_block(t, "serialize_npy");
  const std::size_t header_size = out.size();
  out += data_bytes(t);
  if constexpr (!kNativeLittle)
    swap_bytes(out.data() + header_size, out.size() - header_size, itemsize(t.dtype()));
  return out;
}

void save_npy(const std::string& path, const Tensor& t) {
  if constexpr (kNativeLittle) {
    const std::string header = header_block(t, "save_npy");
    AtomicFileWriter file(path);
    file.write(header);
    file.write(data_bytes(t));
    file.commit();
  } else {
    const std::string bytes = serialize_npy(t);
    AtomicFileWriter file(path);
    file.write(bytes);
    file.commit();
  }
}

}  // namespace xgrad
