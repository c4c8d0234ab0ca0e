// pad (constant, wrap, reflect, edge; big pads; crops), take, take_along_axis, one_hot.
// Expected arrays are written out by hand from numpy.pad's definitions.
#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

void check_values(const Tensor& t, const Shape& shape, const std::vector<double>& expected) {
  CHECK(t.shape() == shape);
  CHECK(t.to_vector() == expected);
}

Tensor ints(const std::vector<double>& v, const Shape& shape) { return from_vector(v, shape, DType::Int64); }

const Tensor kRow = from_vector({1, 2, 3}, {3});

}  // namespace

TEST_CASE("pad constant: value, several axes, 0-d, every dtype") {
  check_values(pad(kRow, {{2, 1}}, PadMode::Constant, 9), {6}, {9, 9, 1, 2, 3, 9});
  check_values(pad(from_vector({1, 2, 3, 4}, {2, 2}), {{1, 0}, {0, 1}}), {3, 3}, {0, 0, 0, 1, 2, 0, 3, 4, 0});
  check_values(pad(scalar(7.0), {}), {}, {7});
  check_values(pad(zeros({0}), {{1, 1}}, PadMode::Constant, 2), {2}, {2, 2});
  Tensor flags = pad(from_vector({1}, {1}, DType::Bool), {{1, 1}});
  CHECK(flags.dtype() == DType::Bool);
  check_values(flags, {3}, {0, 1, 0});
  check_values(pad(from_vector({5}, {1}, DType::Int32), {{0, 2}}, PadMode::Constant, -1), {3}, {5, -1, -1});
}

TEST_CASE("pad wrap is periodic, including pads larger than the axis") {
  check_values(pad(kRow, {{2, 2}}, PadMode::Wrap), {7}, {2, 3, 1, 2, 3, 1, 2});
  check_values(pad(kRow, {{5, 7}}, PadMode::Wrap), {15}, {2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1});
  check_values(pad(from_vector({4}, {1}), {{2, 3}}, PadMode::Wrap), {6}, {4, 4, 4, 4, 4, 4});
  check_values(pad(from_vector({1, 2, 3, 4, 5, 6}, {2, 3}), {{1, 2}, {1, 0}}, PadMode::Wrap), {5, 4},
               {6, 4, 5, 6, 3, 1, 2, 3, 6, 4, 5, 6, 3, 1, 2, 3, 6, 4, 5, 6});
}

TEST_CASE("pad reflect mirrors without repeating the edge, with period 2(M - 1)") {
  check_values(pad(kRow, {{2, 2}}, PadMode::Reflect), {7}, {3, 2, 1, 2, 3, 2, 1});
  check_values(pad(kRow, {{5, 5}}, PadMode::Reflect), {13}, {2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2});
  check_values(pad(from_vector({1, 2}, {2}), {{3, 3}}, PadMode::Reflect), {8}, {2, 1, 2, 1, 2, 1, 2, 1});
  check_values(pad(from_vector({7}, {1}), {{2, 3}}, PadMode::Reflect), {6}, {7, 7, 7, 7, 7, 7});  // M = 1 repeats
  check_values(pad(from_vector({1, 2, 3, 4, 5, 6}, {2, 3}), {{1, 1}, {2, 0}}, PadMode::Reflect), {4, 5},
               {6, 5, 4, 5, 6, 3, 2, 1, 2, 3, 6, 5, 4, 5, 6, 3, 2, 1, 2, 3});
}

TEST_CASE("pad edge repeats the border element") {
  check_values(pad(kRow, {{2, 1}}, PadMode::Edge), {6}, {1, 1, 1, 2, 3, 3});
  check_values(pad(from_vector({1, 2, 3, 4}, {2, 2}), {{0, 1}, {1, 1}}, PadMode::Edge), {3, 4},
               {1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
}

TEST_CASE("negative pads crop: the window of the extended axis") {
  const Tensor x = from_vector({1, 2, 3, 4}, {4});
  check_values(pad(x, {{-1, 2}}), {5}, {2, 3, 4, 0, 0});
  check_values(pad(x, {{-1, -1}}), {2}, {2, 3});
  check_values(pad(x, {{-4, 0}}), {0}, {});
  check_values(pad(x, {{-1, 2}}, PadMode::Wrap), {5}, {2, 3, 4, 1, 2});
  check_values(pad(x, {{-2, 1}}, PadMode::Reflect), {3}, {3, 4, 3});
  check_values(pad(x, {{2, -3}}, PadMode::Edge), {3}, {1, 1, 1});
}

TEST_CASE("pad errors") {
  CHECK_THROWS_WITH_AS(pad(kRow, {{1, 1}, {1, 1}}), "pad: 2 (lo, hi) pairs given for a tensor of shape [3] (rank 1)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(pad(kRow, {{-2, -2}}), "pad: pads (-2, -2) crop more than axis 0 of shape [3] holds",
                       ShapeError);
  CHECK_THROWS_WITH_AS(pad(zeros({2, 0}), {{0, 0}, {1, 0}}, PadMode::Wrap),
                       "pad: cannot extend the empty axis 1 of shape [2, 0] in wrap mode", ValueError);
}

TEST_CASE("pad gradients add every copy back into its source") {
  Tensor x = from_vector({1, 2, 3}, {3}, DType::Float64).requires_grad_();
  // Sources of the wrap-padded positions: 1 2 0 1 2 0 ... (15 of them); weights 0..14.
  pad(x, {{5, 7}}, PadMode::Wrap).backward(arange(0, 15, 1, DType::Float64));
  CHECK(x.grad().to_vector() == std::vector<double>{2 + 5 + 8 + 11 + 14, 0 + 3 + 6 + 9 + 12, 1 + 4 + 7 + 10 + 13});
  x.zero_grad();
  pad(x, {{5, 5}}, PadMode::Reflect).sum().backward();  // sources 1 0 1 2 1 0 1 2 1 0 1 2 1
  CHECK(x.grad().to_vector() == std::vector<double>{3, 7, 3});
  x.zero_grad();
  pad(x, {{-1, 2}}, PadMode::Constant, 5.0).sum().backward();
  CHECK(x.grad().to_vector() == std::vector<double>{0, 1, 1});
}

TEST_CASE("gradcheck and gradgradcheck: pad in every mode") {
  const Tensor x = arange(0, 6, 1, DType::Float64).reshape({2, 3}) / 4.0;
  const PadMode modes[] = {PadMode::Constant, PadMode::Wrap, PadMode::Reflect, PadMode::Edge};
  for (PadMode mode : modes) {
    test_support::check_first_and_second_order("pad", [mode](const std::vector<Tensor>& in) {
      return pad(in[0] * in[0], {{3, -1}, {4, 2}}, mode, 1.5);
    }, {x});
  }
}

TEST_CASE("take: any index shape, negative indices, 0-d indices, axis") {
  const Tensor x = arange(0, 12, 1).reshape({3, 4});
  check_values(take(x, ints({2, -1, 0}, {3})), {3, 4}, {8, 9, 10, 11, 8, 9, 10, 11, 0, 1, 2, 3});
  // out[i, a, b] = x[i, idx[a, b]]
  check_values(take(x, ints({0, 3, 1, -4}, {2, 2}), 1), {3, 2, 2}, {0, 3, 1, 0, 4, 7, 5, 4, 8, 11, 9, 8});
  check_values(take(x, ints({1}, {}), 0), {4}, {4, 5, 6, 7});
  check_values(take(x, from_vector({3, 0}, {2}, DType::Int32), -1), {3, 2}, {3, 0, 7, 4, 11, 8});
  check_values(take(x, ints({}, {0}), 0), {0, 4}, {});
  CHECK(take(from_vector({1, 0}, {2}, DType::Bool), ints({1, 1}, {2})).dtype() == DType::Bool);
}

TEST_CASE("take errors name the op, the index and the size") {
  const Tensor x = arange(0, 12, 1).reshape({3, 4});
  CHECK_THROWS_WITH_AS(take(x, ints({0, 3}, {2}), 0), "take: index 3 is out of bounds for axis 0 with size 3",
                       ShapeError);
  CHECK_THROWS_WITH_AS(take(x, ints({-5}, {1}), 1), "take: index -5 is out of bounds for axis 1 with size 4",
                       ShapeError);
  CHECK_THROWS_WITH_AS(take(x, from_vector({1}, {1}), 0), "take: indices must be int32 or int64, got float32",
                       DTypeError);
  CHECK_THROWS_WITH_AS(take(x, ints({0}, {1}), 2), "take: axis 2 is out of range for a tensor of rank 2", ShapeError);
  CHECK_THROWS_WITH_AS(take(scalar(1.0), ints({0}, {1})), "take: cannot index a 0-d tensor", ShapeError);
}

TEST_CASE("take gradients accumulate repeated indices") {
  Tensor x = from_vector({1, 2, 3}, {3}, DType::Float64).requires_grad_();
  take(x, ints({0, 2, 0, -3}, {4})).sum().backward();
  CHECK(x.grad().to_vector() == std::vector<double>{3, 0, 1});
  const Tensor table = arange(0, 8, 1, DType::Float64).reshape({4, 2}) / 3.0;
  const Tensor idx = ints({1, 3, 1, 0, 0, 0}, {2, 3});
  test_support::check_first_and_second_order("take rows", [idx](const std::vector<Tensor>& in) { return take(in[0] * in[0], idx); },
                               {table});
  test_support::check_first_and_second_order("take columns",
                               [](const std::vector<Tensor>& in) { return take(in[0] * in[0], ints({1, 0, -1}, {3}), 1); },
                               {table});
}

TEST_CASE("modifying take's indices before backward is an error, not a wrong gradient") {
  Tensor x = from_vector({1, 2, 3}, {3}, DType::Float64).requires_grad_();
  Tensor idx = ints({0, 1}, {2});
  Tensor y = take(x, idx).sum();
  idx.fill_(2);
  CHECK_THROWS_WITH_AS(y.backward(),
                       "backward: the indices (shape [2]) of 'take' were modified in place after the forward pass "
                       "(version 0 when saved, 1 now)",
                       AutogradError);
}

TEST_CASE("take_along_axis: per-row picks, broadcasting, negative indices") {
  const Tensor x = from_vector({10, 30, 20, 60, 40, 50}, {2, 3});
  check_values(take_along_axis(x, ints({1, 0}, {2, 1}), 1), {2, 1}, {30, 60});
  check_values(take_along_axis(x, ints({0, 2, 1, 1, 1, 0}, {2, 3}), 1), {2, 3}, {10, 20, 30, 40, 40, 60});
  check_values(take_along_axis(x, ints({2, 0}, {1, 2}), 1), {2, 2}, {20, 10, 50, 60});  // indices broadcast over rows
  check_values(take_along_axis(x, ints({1, 0, -1}, {1, 3}), 0), {1, 3}, {60, 30, 50});
  check_values(take_along_axis(x, ints({-1}, {1, 1}), -1), {2, 1}, {20, 50});
  check_values(take_along_axis(from_vector({1, 2}, {1, 2}), ints({1, 0, 0, 1}, {2, 2}), 1), {2, 2}, {2, 1, 1, 2});
  CHECK_THROWS_WITH_AS(take_along_axis(x, ints({0}, {1}), 1),
                       "take_along_axis: indices of shape [1] must have the rank of x (shape [2, 3]), at least 1",
                       ShapeError);
  CHECK_THROWS_WITH_AS(take_along_axis(x, ints({0, 0, 0}, {3, 1}), 1),
                       "take_along_axis: indices of shape [3, 1] do not broadcast against x of shape [2, 3] outside "
                       "axis 1 (axis 0: 3 vs 2)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(take_along_axis(x, ints({3, 0}, {2, 1}), 1),
                       "take_along_axis: index 3 is out of bounds for axis 1 with size 3", ShapeError);
}

TEST_CASE("take_along_axis gradients") {
  Tensor x = from_vector({10, 30, 20, 60, 40, 50}, {2, 3}, DType::Float64).requires_grad_();
  take_along_axis(x, ints({1, 1, 0, 2}, {2, 2}), 1).sum().backward();
  CHECK(x.grad().to_vector() == std::vector<double>{0, 2, 0, 1, 0, 1});
  const Tensor idx = ints({2, 0, 1, 1}, {2, 2});
  test_support::check_first_and_second_order("take_along_axis",
                               [idx](const std::vector<Tensor>& in) { return take_along_axis(in[0] * in[0], idx, 1); },
                               {x.detach() / 10.0});
  test_support::check_first_and_second_order("take_along_axis, broadcast x", [](const std::vector<Tensor>& in) {
    return take_along_axis(in[0] * in[0], ints({1, 0, 0, 1}, {2, 2}), 1);
  }, {from_vector({0.5, -1.5}, {1, 2}, DType::Float64)});
}

TEST_CASE("one_hot: labels to rows, out-of-range labels give zero rows") {
  check_values(one_hot(ints({0, 2, -1, 3}, {4}), 3), {4, 3}, {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0});
  Tensor i = one_hot(from_vector({1, 0, 1, 1}, {2, 2}, DType::Int32), 2, DType::Int32);
  CHECK(i.dtype() == DType::Int32);
  check_values(i, {2, 2, 2}, {0, 1, 1, 0, 0, 1, 0, 1});
  CHECK(one_hot(ints({1}, {1}), 2).dtype() == DType::Float32);
  check_values(one_hot(ints({1}, {}), 3, DType::Float64), {3}, {0, 1, 0});
  CHECK_THROWS_WITH_AS(one_hot(from_vector({1}, {1}), 3), "one_hot: labels must be int32 or int64, got float32",
                       DTypeError);
  CHECK_THROWS_WITH_AS(one_hot(ints({1}, {1}), -1), "one_hot: num_classes must be >= 0, got -1", ValueError);
}

TEST_CASE("x.at(index).set / .add / .get: functional updates as JAX's .at[]") {
  const Tensor x = from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  check_values(x.at({0, 2}).set(9.0), {2, 3}, {1, 2, 9, 4, 5, 6});
  check_values(x.at({-1}).set(from_vector({7, 8, 9}, {3})), {2, 3}, {1, 2, 3, 7, 8, 9});
  check_values(x.at({1}).set(0.0), {2, 3}, {1, 2, 3, 0, 0, 0});  // a scalar broadcasts
  check_values(x.at({1}).add(from_vector({10, 20, 30}, {3})), {2, 3}, {1, 2, 3, 14, 25, 36});
  check_values(x.at({0, 0}).add(0.5), {2, 3}, {1.5, 2, 3, 4, 5, 6});
  check_values(x.at({1}).get(), {3}, {4, 5, 6});
  check_values(x, {2, 3}, {1, 2, 3, 4, 5, 6});  // x itself is unchanged
  CHECK(x.at({1, 2}) == 6.0);                    // reading one element, as before
  // The value is cast to x's dtype.
  const Tensor counts = zeros({3}, DType::Int64).at({1}).add(2.7);
  CHECK(counts.dtype() == DType::Int64);
  CHECK(counts.to_vector() == std::vector<double>{0, 2, 0});
  // Building data without raw pointers.
  Tensor onehots = zeros({2, 4});
  onehots = onehots.at({0, 3}).set(1.0).at({1, 0}).set(1.0);
  check_values(onehots, {2, 4}, {0, 0, 0, 1, 1, 0, 0, 0});
}

TEST_CASE("x.at(index) errors name the op, the index and the shapes") {
  const Tensor x = zeros({2, 3});
  CHECK(test_support::error_of<ShapeError>([&] { x.at({2}).set(1.0); }) == "at: index [2] is out of bounds for shape [2, 3]");
  CHECK(test_support::error_of<ShapeError>([&] { x.at({0, -4}); }) == "at: index [0, -4] is out of bounds for shape [2, 3]");
  CHECK(test_support::error_of<ShapeError>([&] { x.at({0}).add(ones({2})); }) ==
        "at([0]).add: value of shape [2] does not broadcast to the selected [3] of the tensor of shape [2, 3]");
  CHECK(test_support::error_of<ShapeError>([&] { x.at({0, 1, 2}).get(); }) ==
        "at: index [0, 1, 2] has 3 entries but the tensor has shape [2, 3]");
  CHECK(test_support::error_of<ShapeError>([&] { [[maybe_unused]] double v = x.at({0}); }) ==
        "at: index [0] has 1 entries but the tensor has shape [2, 3]");  // reading a number needs a full index
}

TEST_CASE("gradcheck and gradgradcheck: at().set, at().add and at().get in x and in the value") {
  const Tensor x = from_vector({0.5, -1, 2, 0.25, 3, -2}, {2, 3}, DType::Float64);
  const Tensor row = from_vector({1.5, -0.5, 2}, {3}, DType::Float64);
  const Tensor one = from_vector({0.7}, {}, DType::Float64);
  // Squares make the second derivatives non-trivial.
  test_support::check_first_and_second_order(
      "set row", [](const std::vector<Tensor>& in) { return square(in[0].at({1}).set(in[1] * in[1])); }, {x, row});
  test_support::check_first_and_second_order(
      "set element (broadcast value)",
      [](const std::vector<Tensor>& in) { return square(in[0]).at({0, 1}).set(in[1]); }, {x, one});
  test_support::check_first_and_second_order(
      "add row", [](const std::vector<Tensor>& in) { return square(in[0].at({-2}).add(in[1])); }, {x, row});
  test_support::check_first_and_second_order(
      "get", [](const std::vector<Tensor>& in) { return square(in[0].at({1}).get()); }, {x});
  // The gradient of set: none into the overwritten block, all of it into the value.
  Tensor xs = x.detach().requires_grad_(), r = row.detach().requires_grad_();
  (xs.at({0}).set(r) * 2.0).sum().backward();
  CHECK(xs.grad().to_vector() == std::vector<double>{0, 0, 0, 2, 2, 2});
  CHECK(r.grad().to_vector() == std::vector<double>{2, 2, 2});
}
