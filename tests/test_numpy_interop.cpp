// NumPy itself reads what xgrad writes and xgrad reads what NumPy writes. Runs
// /usr/bin/python3 when it has numpy; otherwise says so and skips.
#include <doctest/doctest.h>

#include <cstdlib>

#include "io_test_support.hpp"

using namespace xgrad;
using namespace io_test;


TEST_CASE("numpy loads what xgrad saves") {
  if (!numpy_available()) {
    MESSAGE("skipped: /usr/bin/python3 with numpy is not available");
    return;
  }
  TempDir dir;
  const std::map<std::string, Tensor> arrays = {
      {"b", from_vector({1, 0, 1}, {3}, DType::Bool)},
      {"i4", from_vector({-2147483648.0, 0, 7, 2147483647.0}, {2, 2}, DType::Int32)},
      {"i8", from_data(std::vector<std::int64_t>{INT64_MIN, INT64_MAX, 5}.data(), {3})},
      {"f2", from_data(std::vector<half>{half::from_bits(0x3c00), half::from_bits(0x7c00),
                                         half::from_bits(0x0001), half::from_bits(0x7e00)}
                           .data(),
                       {4})},
      {"bf16", from_data(std::vector<bfloat16>{bfloat16::from_bits(0x3f80), bfloat16::from_bits(0xff80),
                                               bfloat16::from_bits(0x7fc0)}
                             .data(),
                         {3})},
      {"f4", from_vector({1.5, -INFINITY, NAN}, {3}, DType::Float32)},
      {"f8", scalar(3.25, DType::Float64)},
      {"empty", zeros({0, 3}, DType::Float32)},
      {"dir/x", arange(3, DType::Int64)}};
  for (const auto& [key, t] : arrays)
    if (key != "dir/x") save_npy(dir.file(key + ".npy"), t);
  save_npz(dir.file("stored.npz"), arrays);
  save_npz(dir.file("deflated.npz"), arrays, true);
  const std::string script = R"(
import os, sys
import numpy as np
d = sys.argv[1]

def check(get):
    b = get('b'); assert b.dtype == np.bool_ and b.tolist() == [True, False, True], b
    i4 = get('i4'); assert i4.dtype == np.dtype('<i4') and i4.tolist() == [[-2**31, 0], [7, 2**31 - 1]], i4
    i8 = get('i8'); assert i8.dtype == np.dtype('<i8') and i8.tolist() == [-2**63, 2**63 - 1, 5], i8
    f2 = get('f2'); assert f2.dtype == np.float16 and f2.view(np.uint16).tolist() == [0x3c00, 0x7c00, 0x0001, 0x7e00], f2
    bf = get('bf16')
    assert bf.dtype.names == ('bfloat16',) and bf.shape == (3,), bf.dtype
    assert bf['bfloat16'].tolist() == [0x3f80, 0xff80, 0x7fc0], bf
    assert ((bf['bfloat16'].astype(np.uint32) << 16).view(np.float32)[:2] == [1.0, -np.inf]).all()
    f4 = get('f4'); assert f4.dtype == np.float32 and f4[0] == 1.5 and np.isneginf(f4[1]) and np.isnan(f4[2]), f4
    f8 = get('f8'); assert f8.dtype == np.float64 and f8.shape == () and f8 == 3.25, f8
    e = get('empty'); assert e.dtype == np.float32 and e.shape == (0, 3), e

check(lambda k: np.load(os.path.join(d, k + '.npy')))
for name in ['stored.npz', 'deflated.npz']:
    with np.load(os.path.join(d, name)) as z:
        assert sorted(z.files) == sorted(['b', 'i4', 'i8', 'f2', 'bf16', 'f4', 'f8', 'empty', 'dir/x']), z.files
        check(lambda k: z[k])
        assert z['dir/x'].tolist() == [0, 1, 2]
)";
  CHECK(run_python(dir, script));
}

TEST_CASE("xgrad loads what numpy saves: Fortran order, big-endian, versions 2 and 3, deflated npz") {
  if (!numpy_available()) {
    MESSAGE("skipped: /usr/bin/python3 with numpy is not available");
    return;
  }
  TempDir dir;
  const std::string script = R"(
import os, sys
import numpy as np
d = sys.argv[1]
cube = np.arange(24, dtype='<f8').reshape(2, 3, 4)
np.save(os.path.join(d, 'fortran.npy'), np.asfortranarray(cube))
np.save(os.path.join(d, 'big.npy'), np.arange(6, dtype='>i4').reshape(2, 3))
np.save(os.path.join(d, 'big_fortran.npy'), np.asfortranarray(cube.astype('>f4')))
np.save(os.path.join(d, 'half.npy'), np.array([1.5, -2.0, np.inf], dtype='>f2'))
np.save(os.path.join(d, 'bool.npy'), np.array([[True, False], [False, True]]))
for version in [(2, 0), (3, 0)]:
    with open(os.path.join(d, 'v%d.npy' % version[0]), 'wb') as f:
        np.lib.format.write_array(f, np.array([0.5, 2.0], dtype='<f4'), version=version)
np.savez(os.path.join(d, 'plain.npz'), x=np.arange(3, dtype='<i8'), y=np.float64(2.5))
np.savez_compressed(os.path.join(d, 'compressed.npz'), a=np.zeros((100, 10), dtype='<f4'),
                    b=np.asfortranarray(cube.astype('>f8')), c=np.array(7, dtype='<i4'))
)";
  REQUIRE(run_python(dir, script));
  std::vector<double> cube(24);
  for (int i = 0; i < 24; ++i) cube[i] = i;

  const Tensor fortran = load_npy(dir.file("fortran.npy"));
  CHECK(fortran.shape() == Shape{2, 3, 4});
  CHECK(fortran.to_vector() == cube);
  const Tensor big = load_npy(dir.file("big.npy"));
  CHECK(big.dtype() == DType::Int32);
  CHECK(big.to_vector() == std::vector<double>{0, 1, 2, 3, 4, 5});
  const Tensor big_fortran = load_npy(dir.file("big_fortran.npy"));
  CHECK(big_fortran.dtype() == DType::Float32);
  CHECK(big_fortran.to_vector() == cube);
  CHECK(load_npy(dir.file("half.npy")).to_vector() == std::vector<double>{1.5, -2.0, INFINITY});
  CHECK(load_npy(dir.file("bool.npy")).to_vector() == std::vector<double>{1, 0, 0, 1});
  CHECK(load_npy(dir.file("v2.npy")).to_vector() == std::vector<double>{0.5, 2.0});
  CHECK(load_npy(dir.file("v3.npy")).to_vector() == std::vector<double>{0.5, 2.0});

  const auto plain = load_npz(dir.file("plain.npz"));
  CHECK(plain.at("x").to_vector() == std::vector<double>{0, 1, 2});
  CHECK(plain.at("y").item() == 2.5);
  const auto compressed = load_npz(dir.file("compressed.npz"));
  CHECK(compressed.size() == 3);
  CHECK(compressed.at("a").shape() == Shape{100, 10});
  CHECK(compressed.at("b").dtype() == DType::Float64);
  CHECK(compressed.at("b").to_vector() == cube);
  CHECK(compressed.at("c").dtype() == DType::Int32);
  CHECK(compressed.at("c").item() == 7);
}
