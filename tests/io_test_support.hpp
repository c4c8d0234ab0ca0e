// Shared by the npy/npz tests: a scratch directory, raw file bytes, hand-made npy
// bytes, and exact bit comparison of tensors.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/tensor_impl.hpp"
#include "xgrad.hpp"

namespace io_test {

// A two-layer model (Dense 4 -> relu -> Dense 2) for checkpoint round trips.
struct TwoLayer : xgrad::nn::Module {
  xgrad::nn::Dense fc1{{.features = 4}}, fc2{{.features = 2}};
  TwoLayer() {
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }
  xgrad::Tensor forward(const xgrad::Tensor& x) override { return fc2(xgrad::relu(fc1(x))); }
};

// A fresh directory under the system temp dir, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "xgrad-io-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// An .npy file with the given header dictionary (unpadded) and raw data bytes.
inline std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(major);
  out += '\0';
  const std::size_t n = dict.size();
  out += static_cast<char>(n & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  if (major >= 2) out += std::string(2, '\0');
  return out + dict + data;
}

template <class T>
std::string raw(std::initializer_list<T> values) {
  std::string out(values.size() * sizeof(T), '\0');
  std::memcpy(out.data(), values.begin(), out.size());
  return out;
}

// Same dtype, same shape, and bit-identical elements (NaN payloads and -0 included).
inline void check_identical(const xgrad::Tensor& a, const xgrad::Tensor& b) {
  REQUIRE(a.dtype() == b.dtype());
  REQUIRE(a.shape() == b.shape());
  const std::size_t bytes = static_cast<std::size_t>(a.numel()) * xgrad::itemsize(a.dtype());
  xgrad::visit_dtype(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (bytes > 0) CHECK(std::memcmp(a.data<T>(), b.data<T>(), bytes) == 0);
  });
}

template <class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

// Whether /usr/bin/python3 can import numpy (tests that need it skip, saying so, when not).
inline bool numpy_available() {
  static const bool available = std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
  return available;
}

// Runs `script` with the directory as argv[1]; true when it exits 0.
inline bool run_python(const TempDir& dir, const std::string& script) {
  write_bytes(dir.file("script.py"), script);
  const std::string command = "/usr/bin/python3 " + dir.file("script.py") + " " + dir.path().string();
  return std::system(command.c_str()) == 0;
}

}  // namespace io_test
