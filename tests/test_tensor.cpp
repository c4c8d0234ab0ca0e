// Tensor basics: creation, element access, copies vs handles, printing, errors.
#include <sstream>

#include <doctest/doctest.h>

#include "core/xarray.hpp"
#include "xgrad.hpp"

using namespace xgrad;

TEST_CASE("creation functions give the requested shape, dtype and values") {
  Tensor z = zeros({2, 3}, DType::Float32);
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.dtype() == DType::Float32);
  CHECK(z.numel() == 6);
  CHECK(z.to_vector() == std::vector<double>(6, 0.0));
  CHECK(ones({2}, DType::Int64).to_vector() == std::vector<double>{1, 1});
  CHECK(full({2, 2}, 2.5, DType::Float64).at({1, 1}) == 2.5);
  CHECK(arange(0.0, 1.0, 0.25, DType::Float64).to_vector() == std::vector<double>{0, 0.25, 0.5, 0.75});
  CHECK(arange(4).dtype() == DType::Int64);
  CHECK(arange(4).to_vector() == std::vector<double>{0, 1, 2, 3});
  CHECK(scalar(3.0).dim() == 0);
  CHECK(scalar(3.0).item() == 3.0);
  Tensor v = from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::Int32);
  CHECK(v.at({1, 0}) == 4);
  CHECK(v.at({-1, -1}) == 6);
  CHECK(v.size(-1) == 3);
}

TEST_CASE("16-bit floats store rounded values") {
  // 1 + 2^-11 is a tie between 1 and 1 + 2^-10 in float16: round to even gives 1.
  CHECK(from_vector({1.0 + 1.0 / 2048}, {1}, DType::Float16).item() == 1.0);
  CHECK(from_vector({1.0 + 3.0 / 2048}, {1}, DType::Float16).item() == 1.0 + 2.0 / 1024);
  // bfloat16 keeps 8 significant bits: 1 + 2^-8 is a tie, rounds to 1.
  CHECK(from_vector({1.0 + 1.0 / 256}, {1}, DType::BFloat16).item() == 1.0);
  CHECK(from_vector({70000.0}, {1}, DType::Float16).item() == INFINITY);
}

TEST_CASE("copies of a Tensor share data; clone does not") {
  Tensor a = zeros({2}, DType::Float64);
  Tensor alias = a;
  Tensor copy = a.clone();
  a.fill_(7.0);
  CHECK(alias.to_vector() == std::vector<double>{7, 7});
  CHECK(copy.to_vector() == std::vector<double>{0, 0});
  CHECK(a.version() == 1);
}

TEST_CASE("the xtensor container is reachable") {
  Tensor t = from_vector({1, 2, 3, 4}, {2, 2}, DType::Float64);
  auto& xa = as_xarray<double>(t);
  CHECK(xa.shape()[0] == 2);
  CHECK(xa(1, 0) == 3.0);
  CHECK_THROWS_AS(as_xarray<float>(t), DTypeError);
  Tensor back = from_xarray(xt::xarray<float>{{1.5f, 2.5f}});
  CHECK(back.dtype() == DType::Float32);
  CHECK(back.shape() == Shape{1, 2});
}

TEST_CASE("printing shows shape, dtype and values") {
  Tensor t = from_vector({1, 2.5}, {2}, DType::Float32);
  CHECK(fmt::format("{}", t) == "Tensor(shape=[2], dtype=float32, values=[1, 2.5])");
  std::ostringstream os;
  os << DType::BFloat16;
  CHECK(os.str() == "bfloat16");
}

TEST_CASE("bad input raises typed errors that name the operation and shapes") {
  Tensor t = zeros({2, 3});
  CHECK_THROWS_WITH_AS(t.item(), "item: the tensor has shape [2, 3] (6 elements); item() needs exactly one",
                       ShapeError);
  CHECK_THROWS_WITH_AS(t.at({2, 0}), "at: index [2, 0] is out of bounds for shape [2, 3]", ShapeError);
  CHECK_THROWS_WITH_AS(from_vector({1, 2}, {3}), "from_vector: 2 values cannot fill shape [3] (3 elements)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(t.data<double>(), "data<float64>: the tensor's dtype is float32", DTypeError);
  CHECK_THROWS_WITH_AS(zeros({2}, DType::Int32).requires_grad_(),
                       "requires_grad_: only floating tensors can require gradients, got int32 [2]", DTypeError);
  CHECK_THROWS_AS(dtype_from_name("complex64"), ValueError);
}

TEST_CASE("shapes whose element count or byte size overflows are typed errors (issue 14.9)") {
  constexpr std::int64_t big = std::int64_t{1} << 40;
  CHECK_THROWS_WITH_AS(numel({big, big}), "shape [1099511627776, 1099511627776] has more elements than an int64 can count",
                       ShapeError);
  CHECK(numel({big, big, 0}) == 0);  // a zero dim empties it, as np.empty((2**40, 2**40, 0))
  CHECK(numel({big, 1024}) == big * 1024);
  CHECK_THROWS_WITH_AS(empty({big, big}),
                       "tensor: shape [1099511627776, 1099511627776] of 4-byte elements is too big for one allocation "
                       "(over 9223372036854775807 bytes)",
                       ShapeError);
  // 2^60 float64 elements count in int64, but their 2^63 bytes do not fit in one allocation.
  CHECK_THROWS_WITH_AS(empty({std::int64_t{1} << 60}, DType::Float64),
                       "tensor: shape [1152921504606846976] of 8-byte elements is too big for one allocation (over "
                       "9223372036854775807 bytes)",
                       ShapeError);
  // Empty, but its strides would overflow: refused, as numpy refuses np.empty((0, 2**40, 2**40)).
  CHECK_THROWS_AS(empty({0, big, big}), ShapeError);
  CHECK_THROWS_WITH_AS(zeros({2, -1}), "tensor: negative dimension in shape [2, -1]", ShapeError);
  CHECK(zeros({big, 0}).numel() == 0);
}
