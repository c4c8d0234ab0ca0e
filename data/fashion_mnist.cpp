#include "data/fashion_mnist.hpp"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include "core/error.hpp"
#include "data/idx.hpp"

namespace xgrad {
namespace {

// Debian installs the files gzip'ed; an unpacked copy works as well.
std::string idx_path(const std::string& dir, const std::string& stem) {
  const std::string gz = (std::filesystem::path(dir) / (stem + ".gz")).string();
  const std::string plain = (std::filesystem::path(dir) / stem).string();
  return !std::filesystem::exists(gz) && std::filesystem::exists(plain) ? plain : gz;
}

}  // namespace

TensorDataset load_fashion_mnist(const std::string& dir, Split split, std::optional<std::size_t> limit) {
  const std::string prefix = split == Split::Train ? "train" : "t10k";
  const std::string images_path = idx_path(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = idx_path(dir, prefix + "-labels-idx1-ubyte");
  const IdxArray images = read_idx(images_path);
  const IdxArray labels = read_idx(labels_path);

  if (images.shape.size() != 3)
    throw IOError(fmt::format("{}: expected images of shape [N, rows, columns], found {}", images_path,
                              shape_str(images.shape)));
  if (labels.shape.size() != 1)
    throw IOError(fmt::format("{}: expected labels of shape [N], found {}", labels_path, shape_str(labels.shape)));
  if (images.shape[0] != labels.shape[0])
    throw IOError(fmt::format("{}: {} images, but {} has {} labels", images_path, images.shape[0], labels_path,
                              labels.shape[0]));

  std::int64_t n = images.shape[0];
  if (limit) n = std::min(n, static_cast<std::int64_t>(*limit));
  const std::int64_t rows = images.shape[1];
  const std::int64_t cols = images.shape[2];

  Tensor inputs = empty({n, rows, cols, 1}, DType::Float32);
  float* pixels = inputs.data<float>();
  const std::int64_t pixel_count = n * rows * cols;
  for (std::int64_t i = 0; i < pixel_count; ++i) pixels[i] = static_cast<float>(images.bytes[i]) / 255.0f;

  Tensor targets = empty({n}, DType::Int64);
  std::int64_t* classes = targets.data<std::int64_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint8_t label = labels.bytes[i];
    if (label >= kFashionMnistClasses.size())
      throw IOError(fmt::format("{}: label {} at index {} is outside 0..9", labels_path, label, i));
    classes[i] = label;
  }
  return TensorDataset(inputs, targets);
}

}  // namespace xgrad
