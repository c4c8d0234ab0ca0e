// Fashion-MNIST (Zalando): 28x28 grey images of 10 clothing classes, 60000 for
// training and 10000 for testing, as installed by Debian's dataset-fashion-mnist.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>

#include "data/dataset.hpp"

namespace xgrad {

// Which part of the dataset: the 60000 training or the 10000 test examples.
enum class Split { Train, Test };

// Where Debian's dataset-fashion-mnist package installs the files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// Class names by label.
inline constexpr std::array<const char*, 10> kFashionMnistClasses = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] from `dir` (the .gz
// name is tried first). inputs: Float32 [N, 28, 28, 1] (NHWC), pixel / 255 in
// [0, 1]; targets: Int64 [N] in 0..9. `limit` keeps only the first examples.
// Throws IOError when a file is missing or malformed, the counts differ or a
// label is out of range.
TensorDataset load_fashion_mnist(const std::string& dir, Split split,
                                 std::optional<std::size_t> limit = std::nullopt);

}  // namespace xgrad
