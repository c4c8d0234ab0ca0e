// Shape ops: transpose, swapaxes, broadcast_to, squeeze/unsqueeze/flatten, slice, concat, stack.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

constexpr std::int64_t kStart = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kEnd = std::numeric_limits<std::int64_t>::max();

void check_values(const Tensor& t, const Shape& shape, const std::vector<double>& expected) {
  CHECK(t.shape() == shape);
  CHECK(t.to_vector() == expected);
}

// x[i, j, k] = 12 i + 4 j + k, shape [2, 3, 4].
Tensor cube(DType dtype = DType::Float32) { return arange(0, 24, 1, dtype).reshape({2, 3, 4}); }

}  // namespace

TEST_CASE("transpose: reversed axes, explicit and negative permutations") {
  check_values(transpose(arange(0, 6, 1).reshape({2, 3})), {3, 2}, {0, 3, 1, 4, 2, 5});
  // out[k, i, j] = x[i, j, k]
  std::vector<double> expected;
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) expected.push_back(12 * i + 4 * j + k);
  check_values(transpose(cube(), {2, 0, 1}), {4, 2, 3}, expected);
  check_values(transpose(cube(), {-1, 0, -2}), {4, 2, 3}, expected);
  check_values(transpose(cube(DType::Int32), {0, 1, 2}), {2, 3, 4}, cube().to_vector());
  CHECK(transpose(cube(DType::Int64), {2, 0, 1}).dtype() == DType::Int64);
  // out[k, j, i] = x[i, j, k]
  expected.clear();
  for (int k = 0; k < 4; ++k)
    for (int j = 0; j < 3; ++j)
      for (int i = 0; i < 2; ++i) expected.push_back(12 * i + 4 * j + k);
  check_values(swapaxes(cube(), 0, -1), {4, 3, 2}, expected);
  check_values(transpose(cube()), {4, 3, 2}, expected);
  check_values(transpose(scalar(3.0)), {}, {3});
  check_values(transpose(zeros({0, 2})), {2, 0}, {});
}

TEST_CASE("transpose: large and batched transpositions (tiled copies with partial tiles)") {
  const Tensor m = arange(0, 70 * 45, 1).reshape({70, 45});
  std::vector<double> expected;
  for (int j = 0; j < 45; ++j)
    for (int i = 0; i < 70; ++i) expected.push_back(45 * i + j);
  check_values(transpose(m), {45, 70}, expected);
  const Tensor b = arange(0, 3 * 40 * 70, 1, DType::Float64).reshape({3, 40, 70});  // b[i, j, k] = 2800 i + 70 j + k
  expected.clear();
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 70; ++k)
      for (int j = 0; j < 40; ++j) expected.push_back(2800 * i + 70 * j + k);
  check_values(swapaxes(b, 1, 2), {3, 70, 40}, expected);
  expected.clear();
  for (int k = 0; k < 70; ++k)
    for (int j = 0; j < 40; ++j)
      for (int i = 0; i < 3; ++i) expected.push_back(2800 * i + 70 * j + k);
  check_values(transpose(b), {70, 40, 3}, expected);
  expected.clear();
  for (int j = 0; j < 40; ++j)
    for (int k = 0; k < 70; ++k)
      for (int i = 0; i < 3; ++i) expected.push_back(2800 * i + 70 * j + k);
  check_values(transpose(b, {1, 2, 0}), {40, 70, 3}, expected);
}

TEST_CASE("transpose and swapaxes reject bad axes") {
  CHECK_THROWS_WITH_AS(transpose(zeros({2, 3}), {0, 0}),
                       "transpose: [0, 0] is not a permutation of the axes of a tensor of shape [2, 3]", ShapeError);
  CHECK_THROWS_WITH_AS(transpose(zeros({2, 3}), {0}),
                       "transpose: [0] is not a permutation of the axes of a tensor of shape [2, 3]", ShapeError);
  CHECK_THROWS_WITH_AS(swapaxes(zeros({2, 3}), 0, 2), "swapaxes: axis 2 is out of range for a tensor of rank 2",
                       ShapeError);
}

TEST_CASE("broadcast_to copies along new and size-1 axes, for every dtype") {
  check_values(broadcast_to(from_vector({1, 2, 3}, {3}), {2, 3}), {2, 3}, {1, 2, 3, 1, 2, 3});
  check_values(broadcast_to(from_vector({1, 2}, {2, 1}), {2, 3}), {2, 3}, {1, 1, 1, 2, 2, 2});
  check_values(broadcast_to(from_vector({1, 2}, {2, 1}), {2, 2, 3}), {2, 2, 3}, {1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2});
  Tensor flags = broadcast_to(from_vector({1, 0}, {2, 1}, DType::Bool), {2, 2});
  CHECK(flags.dtype() == DType::Bool);
  check_values(flags, {2, 2}, {1, 1, 0, 0});
  Tensor ints = broadcast_to(from_vector({7}, {1}, DType::Int32), {3});
  CHECK(ints.dtype() == DType::Int32);
  check_values(ints, {3}, {7, 7, 7});
  check_values(broadcast_to(scalar(4.0), {2}), {2}, {4, 4});
  check_values(broadcast_to(zeros({1, 3}), {0, 3}), {0, 3}, {});
  CHECK_THROWS_WITH_AS(broadcast_to(zeros({3}), {2, 4}), "broadcast_to: shape [3] cannot be broadcast to [2, 4]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(broadcast_to(zeros({2, 3}), {3}), "broadcast_to: shape [2, 3] cannot be broadcast to [3]",
                       ShapeError);
}

TEST_CASE("squeeze, unsqueeze and flatten") {
  const Tensor x = arange(0, 3, 1).reshape({1, 3, 1});
  check_values(squeeze(x), {3}, {0, 1, 2});
  check_values(squeeze(x, {-1}), {1, 3}, {0, 1, 2});
  check_values(squeeze(x, {0, 2}), {3}, {0, 1, 2});
  check_values(squeeze(scalar(1.0)), {}, {1});
  CHECK_THROWS_WITH_AS(squeeze(x, {1}), "squeeze: cannot squeeze axis 1 of shape [1, 3, 1]: its size is 3, not 1",
                       ShapeError);
  check_values(unsqueeze(arange(0, 3, 1), 0), {1, 3}, {0, 1, 2});
  check_values(unsqueeze(arange(0, 3, 1), -1), {3, 1}, {0, 1, 2});
  check_values(unsqueeze(scalar(2.0), 0), {1}, {2});
  CHECK_THROWS_WITH_AS(unsqueeze(arange(0, 3, 1), 2), "unsqueeze: axis 2 is out of range for a tensor of rank 2",
                       ShapeError);
  CHECK(flatten(cube()).shape() == Shape{24});
  CHECK(flatten(cube(), 1).shape() == Shape{2, 12});
  CHECK(flatten(cube(), 0, 1).shape() == Shape{6, 4});
  CHECK(flatten(cube(), -2, -2).shape() == Shape{2, 3, 4});
  check_values(flatten(scalar(5.0)), {1}, {5});
  CHECK_THROWS_WITH_AS(flatten(cube(), 2, 1), "flatten: start axis 2 comes after end axis 1 (shape [2, 3, 4])",
                       ShapeError);
}

TEST_CASE("slice follows Python: negative indices, negative steps, clamping, empty results") {
  const Tensor x = arange(0, 10, 1);
  check_values(slice(x, 0, 2, 8, 2), {3}, {2, 4, 6});            // x[2:8:2]
  check_values(slice(x, 0, -3, kEnd), {3}, {7, 8, 9});           // x[-3:]
  check_values(slice(x, 0, 8, 2, -2), {3}, {8, 6, 4});           // x[8:2:-2]
  check_values(slice(x, 0, kEnd, kStart, -1), {10}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0});  // x[::-1]
  check_values(slice(x, 0, -1, -11, -3), {4}, {9, 6, 3, 0});    // x[-1:-11:-3]
  check_values(slice(x, 0, -100, 100), {10}, x.to_vector());     // x[-100:100]
  check_values(slice(x, 0, 5, 2), {0}, {});                      // x[5:2]
  check_values(slice(x, 0, 2, 5, -1), {0}, {});                  // x[2:5:-1]
  check_values(slice(x, 0, 20, 30), {0}, {});                    // x[20:30]
  check_values(slice(x, 0, 3, 100, 4), {2}, {3, 7});             // x[3:100:4]
  // 2-D, along the last axis: x[:, 3:0:-2]
  check_values(slice(arange(0, 12, 1).reshape({3, 4}), 1, 3, 0, -2), {3, 2}, {3, 1, 7, 5, 11, 9});
  // along the first axis: x[1:, :]
  check_values(slice(arange(0, 12, 1).reshape({3, 4}), -2, 1, kEnd), {2, 4}, {4, 5, 6, 7, 8, 9, 10, 11});
  CHECK(slice(from_vector({1, 0, 1}, {3}, DType::Bool), 0, 1, 3).to_vector() == std::vector<double>{0, 1});
  CHECK_THROWS_WITH_AS(slice(x, 0, 0, 5, 0), "slice: step cannot be zero", ValueError);
  CHECK_THROWS_WITH_AS(slice(x, 1, 0, 5), "slice: axis 1 is out of range for a tensor of rank 1", ShapeError);
  CHECK_THROWS_WITH_AS(slice(scalar(1.0), 0, 0, 1), "slice: cannot slice a 0-d tensor", ShapeError);
}

TEST_CASE("concat joins along an axis and promotes dtypes") {
  const Tensor a = arange(0, 4, 1).reshape({2, 2});
  const Tensor b = from_vector({10, 11}, {2, 1});
  check_values(concat({a, b}, 1), {2, 3}, {0, 1, 10, 2, 3, 11});
  check_values(concat({a, b}, -1), {2, 3}, {0, 1, 10, 2, 3, 11});
  check_values(concat({a, transpose(b)}, 0), {3, 2}, {0, 1, 2, 3, 10, 11});
  check_values(concat({a}, 0), {2, 2}, {0, 1, 2, 3});
  check_values(concat({zeros({0, 2}), a}, 0), {2, 2}, {0, 1, 2, 3});
  Tensor mixed = concat({from_vector({1}, {1}, DType::Int32), from_vector({2.5}, {1}, DType::Float32)});
  CHECK(mixed.dtype() == DType::Float32);
  check_values(mixed, {2}, {1, 2.5});
  CHECK_THROWS_WITH_AS(concat({a, b}, 0),
                       "concat: tensor 1 has shape [2, 1] but tensor 0 has shape [2, 2] (they must match except "
                       "along axis 0)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(concat({a, zeros({4})}, 0),
                       "concat: tensor 1 has shape [4] but tensor 0 has shape [2, 2] (they must match except "
                       "along axis 0)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(concat({}, 0), "concat: needs at least one tensor", ValueError);
  CHECK_THROWS_WITH_AS(concat({scalar(1.0), scalar(2.0)}, 0), "concat: zero-dimensional tensors cannot be concatenated",
                       ShapeError);
  CHECK_THROWS_WITH_AS(concat({a, a}, 2), "concat: axis 2 is out of range for a tensor of rank 2", ShapeError);
}

TEST_CASE("stack adds a new axis") {
  const Tensor a = from_vector({1, 2}, {2}), b = from_vector({3, 4}, {2});
  check_values(stack({a, b}), {2, 2}, {1, 2, 3, 4});
  check_values(stack({a, b}, 1), {2, 2}, {1, 3, 2, 4});
  check_values(stack({a, b}, -1), {2, 2}, {1, 3, 2, 4});
  check_values(stack({scalar(1.0), scalar(2.0)}), {2}, {1, 2});
  CHECK_THROWS_WITH_AS(stack({a, zeros({3})}),
                       "stack: tensor 1 has shape [3] but tensor 0 has shape [2] (stack needs equal shapes)", ShapeError);
  CHECK_THROWS_WITH_AS(stack({}), "stack: needs at least one tensor", ValueError);
  CHECK_THROWS_WITH_AS(stack({a, b}, 2), "stack: axis 2 is out of range for a tensor of rank 2", ShapeError);
}

TEST_CASE("shape op gradients: hand values") {
  Tensor x = arange(0, 6, 1, DType::Float64).reshape({2, 3}).detach().requires_grad_();
  // x[:, ::-2] picks columns 2 and 0; their gradient is the cotangent, the middle column gets 0.
  slice(x, 1, kEnd, kStart, -2).backward(from_vector({1, 2, 3, 4}, {2, 2}, DType::Float64));
  CHECK(x.grad().to_vector() == std::vector<double>{2, 0, 1, 4, 0, 3});
  x.zero_grad();
  broadcast_to(x, {4, 2, 3}).sum().backward();
  CHECK(x.grad().to_vector() == std::vector<double>{4, 4, 4, 4, 4, 4});
  x.zero_grad();
  Tensor y = from_vector({5}, {1, 1}, DType::Float64).requires_grad_();
  concat({x, broadcast_to(y, {2, 1})}, 1).backward(arange(0, 8, 1, DType::Float64).reshape({2, 4}));
  CHECK(x.grad().to_vector() == std::vector<double>{0, 1, 2, 4, 5, 6});
  CHECK(y.grad().item() == 3 + 7);
}

TEST_CASE("a large reshape copies every element at any thread count (the copy is split over the threads)") {
  // 300,001 elements: several ranges per thread, the last one uneven.
  const Tensor x = arange(0, 300001, 1, DType::Float32);
  for (const int threads : {1, 2, 3}) {
    CAPTURE(threads);
    const test_support::ThreadCountGuard guard(threads);
    const Tensor y = reshape(x, {1, 300001, 1});
    CHECK(y.shape() == Shape{1, 300001, 1});
    CHECK(y.to_vector() == x.to_vector());
  }
}

TEST_CASE("gradcheck: transpose, swapaxes, broadcast_to, reshapes") {
  const Tensor x = arange(0, 12, 1, DType::Float64).reshape({2, 3, 2}) / 7.0;
  auto ok = [](const GradcheckFunction& f, const std::vector<Tensor>& in) {
    const GradcheckReport r = gradcheck(f, in, test_support::every_check);
    CHECK_MESSAGE(r.ok, r.to_string());
  };
  ok([](const std::vector<Tensor>& in) { return transpose(in[0] * in[0], {1, 2, 0}); }, {x});
  ok([](const std::vector<Tensor>& in) { return swapaxes(in[0] * in[0], 0, 2); }, {x});
  ok([](const std::vector<Tensor>& in) { return broadcast_to(in[0] * in[0], {2, 2, 3, 2}); }, {x});
  ok([](const std::vector<Tensor>& in) { return broadcast_to(unsqueeze(in[0], 1), {2, 4, 3, 2}) * 2.0; }, {x});
  ok([](const std::vector<Tensor>& in) { return squeeze(flatten(unsqueeze(in[0], -1), 0, 1)); }, {x});
}

TEST_CASE("gradcheck and gradgradcheck: slice, concat, stack") {
  const Tensor x = arange(0, 12, 1, DType::Float64).reshape({3, 4}) / 5.0;
  const Tensor y = arange(0, 8, 1, DType::Float64).reshape({2, 4}) / 3.0;
  test_support::check_first_and_second_order("slice with a negative step",
                               [](const std::vector<Tensor>& in) { return slice(in[0] * in[0], 1, -1, 0, -2); }, {x});
  test_support::check_first_and_second_order("slice rows",
                               [](const std::vector<Tensor>& in) { return slice(in[0] * in[0], 0, 1, kEnd); }, {x});
  test_support::check_first_and_second_order("concat",
                               [](const std::vector<Tensor>& in) { return concat({in[0] * in[1], in[1]}, 0) * in[0]; },
                               {slice(x, 0, 0, 1), y});
  test_support::check_first_and_second_order("stack",
                               [](const std::vector<Tensor>& in) { return stack({in[0] * in[0], in[1]}, 1); },
                               {y, y * 2.0});
}
