// .npy reading and writing: every dtype bit-exact, layouts NumPy writes, hostile input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "core/io/file_io.hpp"
#include "io_test_support.hpp"

using namespace xgrad;
using namespace io_test;

namespace {

// One tensor per dtype, with the values most likely to go wrong.
std::vector<Tensor> tensors_of_every_dtype() {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  const bool b[] = {true, false, true};
  const std::int32_t i4[] = {std::numeric_limits<std::int32_t>::min(), -1, 0,
                             std::numeric_limits<std::int32_t>::max()};
  const std::int64_t i8[] = {std::numeric_limits<std::int64_t>::min(), 0,
                             std::numeric_limits<std::int64_t>::max()};
  // zero, -0, smallest subnormal, 1, largest finite, +-inf, quiet NaN, NaN with a payload
  const half f2[] = {half::from_bits(0x0000), half::from_bits(0x8000), half::from_bits(0x0001),
                     half::from_bits(0x3c00), half::from_bits(0x7bff), half::from_bits(0x7c00),
                     half::from_bits(0xfc00), half::from_bits(0x7e00), half::from_bits(0x7d01)};
  const bfloat16 bf[] = {
      bfloat16::from_bits(0x0000), bfloat16::from_bits(0x8000), bfloat16::from_bits(0x0001),
      bfloat16::from_bits(0x3f80), bfloat16::from_bits(0x7f7f), bfloat16::from_bits(0x7f80),
      bfloat16::from_bits(0xff80), bfloat16::from_bits(0x7fc0), bfloat16::from_bits(0x7f81)};
  const float f4[] = {-0.0f,
                      1.5f,
                      std::numeric_limits<float>::denorm_min(),
                      std::numeric_limits<float>::max(),
                      static_cast<float>(inf),
                      static_cast<float>(-inf),
                      static_cast<float>(nan),
                      1e-30f};
  const double f8[] = {
      -0.0, 0.1, std::numeric_limits<double>::denorm_min(), std::numeric_limits<double>::max(), inf, -inf,
      nan,  3.0};
  return {from_data(b, {3}),  from_data(i4, {2, 2}),    from_data(i8, {3, 1}), from_data(f2, {3, 3}),
          from_data(bf, {9}), from_data(f4, {2, 2, 2}), from_data(f8, {8})};
}

}  // namespace

TEST_CASE("npy round trip keeps every dtype bit-exact, through memory and through files") {
  TempDir dir;
  for (const Tensor& t : tensors_of_every_dtype()) {
    CAPTURE(dtype_name(t.dtype()));
    check_identical(parse_npy(serialize_npy(t)), t);
    const std::string path = dir.file(std::string(dtype_name(t.dtype())) + ".npy");
    save_npy(path, t);
    check_identical(load_npy(path), t);
    CHECK(read_bytes(path) == serialize_npy(t));
  }
}

TEST_CASE("npy round trip of 0-d and empty arrays") {
  for (const Tensor& t :
       {scalar(2.5, DType::Float64), scalar(7, DType::Int32), zeros({0}, DType::Float32),
        zeros({0, 3}, DType::Int64), zeros({3, 0, 2}, DType::BFloat16), zeros({0}, DType::Bool)}) {
    CAPTURE(t.to_string());
    check_identical(parse_npy(serialize_npy(t)), t);
  }
  CHECK(parse_npy(serialize_npy(scalar(2.5, DType::Float64))).item() == 2.5);
}

TEST_CASE("npy writes exactly what numpy.save writes (the ConvLocal reference file)") {
  const std::string path =
      XGRAD_TEST_DATA "/convlocal-vectors/u01_flax_test_circular_conv_local_1d_custom__inputs.npy";
  const Tensor t = load_npy(path);
  CHECK(t.dtype() == DType::Float64);
  CHECK(t.shape() == Shape{1, 5, 1});
  CHECK(t.to_vector() == std::vector<double>{1, 2, 3, 4, 5});
  CHECK(serialize_npy(t) == read_bytes(path));  // same header text, padding and data
}

TEST_CASE("npy header layout: version 1.0, 64-byte aligned data, NumPy's dict text") {
  const std::string bytes = serialize_npy(zeros({2, 3}, DType::BFloat16));
  const std::string dict = "{'descr': [('bfloat16', '<u2')], 'fortran_order': False, 'shape': (2, 3), }";
  CHECK(bytes.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
  CHECK(bytes.size() == 128 + 12);
  CHECK(bytes.substr(10, dict.size()) == dict);
  CHECK(bytes[127] == '\n');
  CHECK(serialize_npy(scalar(1, DType::Bool)).substr(10, 56) ==
        "{'descr': '|b1', 'fortran_order': False, 'shape': (), } ");
}

TEST_CASE("npy reads Fortran order into row-major tensors") {
  // [[1, 2, 3], [4, 5, 6]] stored column by column.
  Tensor t = parse_npy(npy_bytes("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }",
                                 raw<std::int32_t>({1, 4, 2, 5, 3, 6})));
  CHECK(t.dtype() == DType::Int32);
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.to_vector() == std::vector<double>{1, 2, 3, 4, 5, 6});

  // Element (i, j, k) of a (2, 3, 4) array sits at i + 2 j + 6 k in Fortran order.
  std::vector<double> column_major(24);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) column_major[i + 2 * j + 6 * k] = 100 * i + 10 * j + k;
  std::string data(24 * sizeof(double), '\0');
  std::memcpy(data.data(), column_major.data(), data.size());
  Tensor cube = parse_npy(npy_bytes("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3, 4)}", data));
  CHECK(cube.shape() == Shape{2, 3, 4});
  CHECK(cube.at({1, 2, 3}) == 123);
  CHECK(cube.at({0, 1, 2}) == 12);
  CHECK(cube.at({1, 0, 3}) == 103);

  // Square (shape equals its reverse), one-axis and empty Fortran arrays.
  CHECK(parse_npy(npy_bytes("{'descr': '<i8', 'fortran_order': True, 'shape': (2, 2)}",
                            raw<std::int64_t>({1, 3, 2, 4})))
            .to_vector() == std::vector<double>{1, 2, 3, 4});
  CHECK(parse_npy(
            npy_bytes("{'descr': '<i8', 'fortran_order': True, 'shape': (2,)}", raw<std::int64_t>({1, 2})))
            .to_vector() == std::vector<double>{1, 2});
  CHECK(parse_npy(npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (0, 3)}", "")).shape() ==
        Shape{0, 3});
}

TEST_CASE("npy reads big-endian data") {
  Tensor f8 = parse_npy(npy_bytes("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }",
                                  std::string("\x3f\xf8\0\0\0\0\0\0", 8)));
  CHECK(f8.item() == 1.5);
  Tensor i4 = parse_npy(npy_bytes("{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }",
                                  std::string("\x00\x00\x01\x02\xff\xff\xff\xfe", 8)));
  CHECK(i4.to_vector() == std::vector<double>{258, -2});
  Tensor f2 = parse_npy(
      npy_bytes("{'descr': '>f2', 'fortran_order': False, 'shape': (), }", std::string("\x3e\x00", 2)));
  CHECK(f2.dtype() == DType::Float16);
  CHECK(f2.item() == 1.5);
  Tensor bf = parse_npy(
      npy_bytes("{'descr': [('bfloat16', '>u2')], 'fortran_order': False, 'shape': (1,), }", "\xbf\xc0"));
  CHECK(bf.dtype() == DType::BFloat16);
  CHECK(bf.item() == -1.5);
  // Big-endian and Fortran order together: [[1, 2], [3, 4]].
  Tensor both = parse_npy(
      npy_bytes("{'descr': '>i8', 'fortran_order': True, 'shape': (2, 2), }",
                std::string("\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\3\0\0\0\0\0\0\0\2\0\0\0\0\0\0\0\4", 32)));
  CHECK(both.to_vector() == std::vector<double>{1, 2, 3, 4});
}

TEST_CASE("npy reads format versions 2.0 and 3.0, double quotes and Python 2 longs") {
  const std::string data = raw<float>({0.5f, 2.0f});
  for (int major : {2, 3}) {
    CAPTURE(major);
    CHECK(parse_npy(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", data, major))
              .to_vector() == std::vector<double>{0.5, 2.0});
  }
  CHECK(parse_npy(npy_bytes("{\"shape\": (2L,), \"descr\": \"<f4\", \"fortran_order\": False}\n", data))
            .to_vector() == std::vector<double>{0.5, 2.0});
}

TEST_CASE("npy bool bytes other than 0 and 1 read as true") {
  Tensor t = parse_npy(
      npy_bytes("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", std::string("\0\2\xff", 3)));
  CHECK(t.to_vector() == std::vector<double>{0, 1, 1});
}

TEST_CASE("npy rejects malformed files with messages naming the file and the problem") {
  const auto with = [](const std::string& dict, const std::string& data = "") {
    return npy_bytes(dict, data);
  };
  const std::string ok_f4 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  CHECK_THROWS_WITH_AS(parse_npy("PK\3\4 not numpy", "a.npy"),
                       "bad magic in a.npy: not an .npy file (it must start with \"\\x93NUMPY\")", IOError);
  CHECK_THROWS_WITH_AS(parse_npy("", "a.npy"),
                       "bad magic in a.npy: not an .npy file (it must start with \"\\x93NUMPY\")", IOError);
  CHECK_THROWS_WITH_AS(parse_npy("\x93NUM", "a.npy"),
                       "truncated header in a.npy: the header needs 8 bytes, the file has 4", IOError);
  CHECK_THROWS_WITH_AS(parse_npy(std::string("\x93NUMPY\x04\x00\x10\x00", 10), "a.npy"),
                       "unsupported .npy format version 4.0 in a.npy: xgrad reads versions 1.0, 2.0 and 3.0",
                       IOError);
  CHECK_THROWS_WITH_AS(parse_npy(std::string("\x93NUMPY\x01\x00\xff\xff{'descr'", 18), "a.npy"),
                       "truncated header in a.npy: the header needs 65545 bytes, the file has 18", IOError);
  CHECK_THROWS_WITH_AS(parse_npy(std::string("\x93NUMPY\x02\x00\xff\xff\xff\xff", 12), "a.npy"),
                       "truncated header in a.npy: the header needs 4294967307 bytes, the file has 12",
                       IOError);

  // Data that does not match the shape; a huge shape is refused before anything is allocated.
  CHECK_THROWS_WITH_AS(
      parse_npy(with(ok_f4, "1234567"), "a.npy"),
      "truncated data in a.npy: a float32 array of shape [2] needs 8 bytes of data, the file has 7", IOError);
  CHECK_THROWS_WITH_AS(
      parse_npy(with(ok_f4, "123456789"), "a.npy"),
      "unexpected trailing data in a.npy: a float32 array of shape [2] needs 8 bytes of data, "
      "the file has 9",
      IOError);
  CHECK_THROWS_WITH_AS(
      parse_npy(with("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"), "a.npy"),
      "truncated data in a.npy: a float64 array of shape [1000000000000] needs 8000000000000 bytes "
      "of data, the file has 0",
      IOError);
  CHECK_THROWS_WITH_AS(
      parse_npy(with("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 0), }"),
                "a.npy"),
      "bad header in a.npy: shape [4294967296, 4294967296, 0] is too large", IOError);
  CHECK_THROWS_WITH_AS(
      parse_npy(
          with("{'descr': '<f8', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
               "1,1,1,1,1,1,1,1,1,1,1,1,1), }"),
          "a.npy"),
      "bad header in a.npy: 33 dimensions, more than NumPy's 32", IOError);

  // Dtypes.
  CHECK_THROWS_WITH_AS(
      parse_npy(with("{'descr': '<c8', 'fortran_order': False, 'shape': (), }"), "file.npy"),
      "unsupported dtype '<c8' in file.npy: xgrad reads bool, int32, int64, float16, bfloat16, "
      "float32, float64",
      IOError);
  CHECK_THROWS_WITH_AS(
      parse_npy(with("{'descr': [('a', '<f4'),('b','<i4')], 'fortran_order': False, 'shape': (), }"),
                "file.npy"),
      "unsupported dtype [('a', '<f4'), ('b', '<i4')] in file.npy: xgrad reads bool, int32, int64, "
      "float16, bfloat16, float32, float64",
      IOError);
  CHECK_THROWS_WITH_AS(
      parse_npy(with("{'descr': '|O', 'fortran_order': False, 'shape': (), }"), "file.npy"),
      "unsupported dtype '|O' in file.npy: xgrad reads bool, int32, int64, float16, bfloat16, "
      "float32, float64",
      IOError);

  // Header syntax and keys.
  const auto bad_header = [&](const std::string& dict) {
    return error_message([&] { parse_npy(with(dict), "h.npy"); });
  };
  CHECK(bad_header("{'descr' '<f4'}") == "bad header in h.npy: expected ':' at header offset 9");
  CHECK(bad_header("{'descr': '<f4}") == "bad header in h.npy: unterminated string at header offset 15");
  CHECK(bad_header("['descr']") == "bad header in h.npy: expected '{' at header offset 0");
  CHECK(bad_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } x") ==
        "bad header in h.npy: unexpected text after the dictionary at header offset 58");
  CHECK(bad_header("{'descr': '<f4', 'fortran_order': False}") == "bad header in h.npy: missing key 'shape'");
  CHECK(bad_header("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'extra': 1}") ==
        "bad header in h.npy: unexpected key 'extra'");
  CHECK(bad_header("{'descr': '<f4', 'descr': '<f4'}") == "bad header in h.npy: duplicate key 'descr'");
  CHECK(bad_header("{'descr': '<f4', 'fortran_order': 0, 'shape': ()}") ==
        "bad header in h.npy: 'fortran_order' must be True or False at header offset 34");
  CHECK(bad_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1)}") ==
        "bad header in h.npy: 'shape' must be a tuple of non-negative integers, got (2, -1) at header offset "
        "50");
  CHECK(bad_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3)}") ==
        "bad header in h.npy: 'shape' must be a tuple of integers at header offset 50");
  CHECK(bad_header("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}") ==
        "bad header in h.npy: integer out of range at header offset 51");
  CHECK(bad_header("{'descr': None}") == "bad header in h.npy: unexpected name 'None' at header offset 10");
  CHECK(bad_header("{'descr': '\\n'}") ==
        "bad header in h.npy: unsupported escape in a string at header offset 11");
  CHECK(bad_header("{'descr': \x01}") ==
        "bad header in h.npy: unexpected character '\\x01' at header offset 10");
  CHECK(bad_header("{'descr': ") == "bad header in h.npy: unexpected end of header at header offset 10");
  CHECK(bad_header("{'descr': " + std::string(100, '[')) ==
        "bad header in h.npy: nesting deeper than 16 at header offset 27");
}

TEST_CASE("load_npy names the path; truncated files and missing files fail cleanly") {
  TempDir dir;
  const std::string path = dir.file("cut.npy");
  const std::string full = serialize_npy(arange(10, DType::Int64));
  write_bytes(path, full.substr(0, full.size() - 3));
  CHECK_THROWS_WITH_AS(
      load_npy(path),
      ("truncated data in " + path + ": an int64 array of shape [10] needs 80 bytes of data, the file has 77")
          .c_str(),
      IOError);
  write_bytes(path, full.substr(0, 50));
  CHECK_THROWS_WITH_AS(
      load_npy(path),
      ("truncated header in " + path + ": the header needs 128 bytes, the file has 50").c_str(), IOError);
  CHECK_THROWS_WITH_AS(load_npy(dir.file("missing.npy")),
                       ("cannot open " + dir.file("missing.npy") + ": No such file or directory").c_str(),
                       IOError);
  CHECK_THROWS_WITH_AS(load_npy(dir.path().string()),
                       ("cannot read " + dir.path().string() + ": not a regular file").c_str(), IOError);
}

TEST_CASE("saving is atomic: the previous file survives a failed save and no temporary file is left") {
  TempDir dir;
  const std::string path = dir.file("w.npy");
  const Tensor first = arange(4, DType::Int32);
  save_npy(path, first);
  CHECK_THROWS_WITH_AS(save_npy(path, Tensor()), "save_npy: the tensor is undefined", ValueError);
  check_identical(load_npy(path), first);
  {
    AtomicFileWriter writer(path);  // a save interrupted before commit()
    writer.write("partial");
  }
  check_identical(load_npy(path), first);
  const Tensor second = full({2, 2}, 0.25, DType::Float64);
  save_npy(path, second);
  check_identical(load_npy(path), second);
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path()),
                      std::filesystem::directory_iterator()) == 1);
  CHECK_THROWS_WITH_AS(
      save_npy(dir.file("no/such/dir.npy"), first),
      ("cannot write " + dir.file("no/such/dir.npy") + ": No such file or directory").c_str(), IOError);
}

TEST_CASE("saving refuses more dimensions than NumPy reads") {
  CHECK_THROWS_WITH_AS(
      serialize_npy(zeros(Shape(33, 1))),
      "serialize_npy: NumPy reads at most 32 dimensions, the tensor has shape [1, 1, 1, 1, 1, 1, 1, 1, "
      "1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]",
      ValueError);
}
