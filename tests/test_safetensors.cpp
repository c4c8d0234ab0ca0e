// safetensors: a file written byte by byte from the spec, exact round trips, the
// reference writer's layout, hostile headers, and Python reading what xgrad writes.
#include <doctest/doctest.h>

#include <cstring>

#include "interop_test_support.hpp"

using namespace xgrad;
using namespace io_test;
using namespace interop_test;

namespace {

std::string le64(std::uint64_t n) {
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

// A file with this header text and data buffer.
std::string st(const std::string& header, const std::string& data = "") { return le64(header.size()) + header + data; }

std::map<std::string, Tensor> all_dtypes() {
  return {{"b", from_vector({1, 0, 1}, {3}, DType::Bool)},
          {"i32", from_vector({-2147483648.0, 7}, {2}, DType::Int32)},
          {"i64", from_data(std::vector<std::int64_t>{INT64_MIN, INT64_MAX}.data(), {2, 1})},
          {"f16", from_data(std::vector<half>{half::from_bits(0x3c00), half::from_bits(0x7c00)}.data(), {2})},
          {"bf16", from_data(std::vector<bfloat16>{bfloat16::from_bits(0x3f80), bfloat16::from_bits(0x7fc1)}.data(), {1, 2})},
          {"f32", from_vector({1.5, -0.0, NAN, 3}, {2, 2}, DType::Float32)},
          {"f64", scalar(-3.25, DType::Float64)},
          {"empty", zeros({0, 5}, DType::Float32)}};
}

}  // namespace

TEST_CASE("load_safetensors reads a file written byte by byte from the spec") {
  const auto got = load_safetensors(fixture("tensors.safetensors"));
  check_same(got, expected("tensors.safetensors"));
  CHECK(got.at("f32").to_vector() == std::vector<double>{0, 0.25, 0.5, 0.75, 1.0, 1.25});
  CHECK(got.at("bf16").to_vector() == std::vector<double>{1.0, -2.5, 0.15625, 65280.0});
  CHECK(got.at("i64").at({0}) == -9223372036854775808.0);
  const auto metadata = load_safetensors_metadata(fixture("tensors.safetensors"));
  CHECK(metadata == std::map<std::string, std::string>{{"format", "pt"}, {"source", "make_fixtures.py"}});
}

TEST_CASE("save_safetensors round-trips every dtype bit-exactly, with metadata") {
  TempDir dir;
  const auto tensors = all_dtypes();
  save_safetensors(dir.file("t.safetensors"), tensors, {{"format", "xgrad"}});
  check_same(load_safetensors(dir.file("t.safetensors")), tensors);
  CHECK(load_safetensors_metadata(dir.file("t.safetensors")) == std::map<std::string, std::string>{{"format", "xgrad"}});
  CHECK(serialize_safetensors(tensors, {{"format", "xgrad"}}) == read_bytes(dir.file("t.safetensors")));
  check_same(parse_safetensors(serialize_safetensors(tensors)), tensors);
}

TEST_CASE("save_safetensors lays the file out as the reference writer does") {
  // Widest dtype first, then by name; the header JSON padded with spaces to 8 bytes.
  const std::map<std::string, Tensor> tensors = {{"a", from_vector({1, 2}, {2}, DType::Float32)},
                                                 {"b", from_vector({3}, {1}, DType::Float64)},
                                                 {"c", from_vector({1}, {1}, DType::Bool)}};
  const std::string bytes = serialize_safetensors(tensors, {{"k", "v"}});
  const std::string header =
      R"({"__metadata__":{"k":"v"},"b":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"c":{"dtype":"BOOL","shape":[1],"data_offsets":[16,17]}})";
  std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  REQUIRE(bytes.size() == 8 + padded.size() + 17);
  CHECK(bytes.substr(0, 8) == le64(padded.size()));
  CHECK(bytes.substr(8, padded.size()) == padded);
  double three = 3;
  float one_two[2] = {1, 2};
  CHECK(std::memcmp(bytes.data() + 8 + padded.size(), &three, 8) == 0);
  CHECK(std::memcmp(bytes.data() + 8 + padded.size() + 8, one_two, 8) == 0);
  CHECK(bytes.back() == '\x01');
}

TEST_CASE("hostile safetensors files fail with an IOError naming the problem, allocating nothing large") {
  const std::string f4 = std::string(4, '\0');  // one float32 zero
  struct Case {
    const char* name;
    std::string bytes;
    const char* message;
  };
  const Case cases[] = {
      {"empty file", "", "fewer than the 8-byte header length"},
      {"truncated length", std::string("\x10\x00\x00", 3), "fewer than the 8-byte header length"},
      {"header longer than the file", le64(1000) + "{}", "the header claims 1000 bytes, the file has 2"},
      {"header over the limit", le64(std::uint64_t{1} << 40) + "{}", "more than the format's limit"},
      {"header length overflowing", le64(~std::uint64_t{0}) + "{}", "more than the format's limit"},
      {"not an object", st("[1, 2]"), "must be a JSON object starting with '{'"},
      {"bad JSON", st("{\"a\": "), "not valid JSON"},
      {"deep nesting", st("{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}"), "nests deeper"},
      {"unknown dtype", st(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x"),
       "unsupported dtype 'U8' of tensor 'w'"},
      {"complex dtype", st(R"({"z":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})", f4 + f4),
       "unsupported dtype 'C64' of tensor 'z'"},
      {"missing field", st(R"({"w":{"dtype":"F32","shape":[1]}})", f4), "tensor 'w' has no \"data_offsets\""},
      {"negative dimension", st(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", f4),
       "each dimension must be a non-negative integer"},
      {"shape vs bytes", st(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", f4),
       "float32 [2] needs 8 bytes, data_offsets [0, 4] give 4"},
      {"byte count overflow",
       st(R"({"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}})"),
       "is too large"},
      {"reversed offsets", st(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", f4), "negative range"},
      {"offsets past the data", st(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", f4),
       "leaving a gap after byte 0"},
      {"overlap", st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", f4 + f4),
       "inside the previous tensor (overlap)"},
      {"gap", st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", f4 + f4 + f4),
       "leaving a gap after byte 4"},
      {"truncated data", st(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f4),
       "cover 8 bytes of data, the file holds 4"},
      {"trailing data", st(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f4 + "x"),
       "cover 4 bytes of data, the file holds 5"},
      {"metadata not strings", st(R"({"__metadata__":{"a":1}})"), "__metadata__ value of 'a' is not a string"},
  };
  TempDir dir;
  for (const Case& c : cases) {
    CAPTURE(c.name);
    CHECK_THROWS_WITH_AS(parse_safetensors(c.bytes, "x.safetensors"), doctest::Contains(c.message), IOError);
    write_bytes(dir.file("x.safetensors"), c.bytes);
    CHECK_THROWS_WITH_AS(load_safetensors(dir.file("x.safetensors")), doctest::Contains(c.message), IOError);
  }
}

TEST_CASE("save_safetensors refuses bad input and keeps the previous file") {
  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  save_safetensors(path, {{"a", ones({2})}});
  const std::string before = read_bytes(path);
  CHECK_THROWS_AS(save_safetensors(path, {{"a", Tensor()}}), ValueError);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"__metadata__", ones({1})}}), doctest::Contains("reserved"),
                       ValueError);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"bad\xff", ones({1})}}), doctest::Contains("UTF-8"), ValueError);
  CHECK(read_bytes(path) == before);
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path()), std::filesystem::directory_iterator()) == 1);
}

TEST_CASE("Python reads what save_safetensors writes, following the spec") {
  if (!numpy_available()) {
    MESSAGE("skipped: /usr/bin/python3 with numpy is not available");
    return;
  }
  TempDir dir;
  save_safetensors(dir.file("t.safetensors"), all_dtypes(), {{"who", "xgrad"}});
  const std::string script = R"(
import json, os, struct, sys
import numpy as np
raw = open(os.path.join(sys.argv[1], 't.safetensors'), 'rb').read()
n, = struct.unpack('<Q', raw[:8])
assert n % 8 == 0
header = json.loads(raw[8:8 + n])
data = raw[8 + n:]
assert header.pop('__metadata__') == {'who': 'xgrad'}
types = {'BOOL': '?', 'I32': '<i4', 'I64': '<i8', 'F16': '<f2', 'BF16': '<u2', 'F32': '<f4', 'F64': '<f8'}
ends = sorted(tuple(v['data_offsets']) for v in header.values())
assert ends[0][0] == 0 and ends[-1][1] == len(data) and all(a[1] == b[0] for a, b in zip(ends, ends[1:]))
t = {k: np.frombuffer(data[v['data_offsets'][0]:v['data_offsets'][1]], types[v['dtype']]).reshape(v['shape'])
     for k, v in header.items()}
assert t['b'].tolist() == [True, False, True]
assert t['i32'].tolist() == [-2**31, 7]
assert t['i64'].tolist() == [[-2**63], [2**63 - 1]]
assert t['f16'].view('<u2').tolist() == [0x3c00, 0x7c00]
assert t['bf16'].tolist() == [[0x3f80, 0x7fc1]]
f32 = t['f32']; assert f32.shape == (2, 2) and f32[0, 0] == 1.5 and np.signbit(f32[0, 1]) and np.isnan(f32[1, 0])
assert t['f64'].shape == () and t['f64'] == -3.25
assert t['empty'].shape == (0, 5)
)";
  CHECK(run_python(dir, script));
}
