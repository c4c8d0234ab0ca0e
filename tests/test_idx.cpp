// IDX reading (plain and gzip'ed), its error messages, and Fashion-MNIST loading.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>

#include "idx_test_files.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using namespace xgrad::testing;

namespace {

// The message of the IOError read_idx throws (fails the test if it throws nothing).
std::string idx_error(const std::string& path) {
  try {
    read_idx(path);
  } catch (const IOError& e) {
    return e.what();
  }
  FAIL("read_idx(" << path << ") did not throw an IOError");
  return {};
}

}  // namespace

TEST_CASE("read_idx reads gzip'ed and plain files alike") {
  TempDir dir;
  const auto data = iota_bytes(24);
  write_gz(dir.file("a.gz"), idx_bytes(0x08, {2, 3, 4}, data));
  write_plain(dir.file("a"), idx_bytes(0x08, {2, 3, 4}, data));
  for (const std::string name : {"a.gz", "a"}) {
    const IdxArray a = read_idx(dir.file(name));
    CHECK(a.shape == Shape{2, 3, 4});
    CHECK(a.bytes == data);
  }
  // A gzip'ed file without the .gz name, and a 1-D labels file.
  write_gz(dir.file("labels"), idx_bytes(0x08, {5}, {9, 0, 3, 2, 7}));
  const IdxArray labels = read_idx(dir.file("labels"));
  CHECK(labels.shape == Shape{5});
  CHECK(labels.bytes == std::vector<std::uint8_t>{9, 0, 3, 2, 7});
}

TEST_CASE("read_idx reports truncated data, plain and gzip'ed") {
  TempDir dir;
  const std::string plain = dir.file("short");
  write_plain(plain, idx_bytes(0x08, {2, 3, 4}, iota_bytes(10)));
  CHECK(idx_error(plain) == plain + ": truncated: header declares 2x3x4 = 24 bytes of data, found 10");

  const std::string labels = dir.file("labels");
  write_plain(labels, idx_bytes(0x08, {6}, iota_bytes(5)));
  CHECK(idx_error(labels) == labels + ": truncated: header declares 6 bytes of data, found 5");

  // A .gz file cut in the middle of the deflate stream: only part of the data arrives.
  std::vector<std::uint8_t> noisy(40 * 28 * 28);
  std::mt19937 rng(7);
  for (auto& b : noisy) b = static_cast<std::uint8_t>(rng());
  const std::string whole = dir.file("whole.gz");
  write_gz(whole, idx_bytes(0x08, {40, 28, 28}, noisy));
  auto gz = read_file_bytes(whole);
  const std::string cut = dir.file("cut.gz");
  write_plain(cut, std::vector<std::uint8_t>(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() / 2)));
  const std::string message = idx_error(cut);
  const std::string expected = cut + ": truncated: header declares 40x28x28 = 31360 bytes of data, found ";
  CHECK(message.substr(0, expected.size()) == expected);
  const auto found = std::stoul(message.substr(expected.size()));
  CHECK(found > 0);
  CHECK(found < 31360);

  // All the data but not the gzip trailer (CRC and length).
  const std::string no_trailer = dir.file("no_trailer.gz");
  write_plain(no_trailer, std::vector<std::uint8_t>(gz.begin(), gz.end() - 4));
  CHECK(idx_error(no_trailer) == no_trailer + ": truncated: the gzip stream ends before its end marker");

  // A header cut short.
  const std::string header = dir.file("header");
  auto bytes = idx_bytes(0x08, {2, 3, 4}, {});
  bytes.resize(12);
  write_plain(header, bytes);
  CHECK(idx_error(header) == header + ": truncated: the file ends inside the header (12 of 16 bytes)");
  write_plain(header, {0, 0});
  CHECK(idx_error(header) == header + ": truncated: the file ends inside the 4-byte magic number");
}

TEST_CASE("read_idx rejects wrong magic numbers and foreign files") {
  TempDir dir;
  const std::string path = dir.file("f");
  write_plain(path, {0x00, 0x01, 0x08, 0x03, 0, 0, 0, 1});
  CHECK(idx_error(path) == path + ": not an IDX file: magic number 0x00010803 does not start with two zero bytes");

  const std::string text = dir.file("notes.txt");
  write_plain(text, {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '\n'});
  CHECK(idx_error(text) == text + ": not an IDX file: magic number 0x68656c6c does not start with two zero bytes");
  const std::string text_gz = dir.file("notes.txt.gz");
  write_gz(text_gz, {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '\n'});
  CHECK(idx_error(text_gz) ==
        text_gz + ": not an IDX file: magic number 0x68656c6c does not start with two zero bytes");

  write_plain(path, idx_bytes(0x05, {1}, {0}));
  CHECK(idx_error(path) == path + ": not an IDX file: magic number 0x00000501 has unknown element type code 0x05");
  write_plain(path, idx_bytes(0x0D, {1}, {0, 0, 0, 0}));
  CHECK(idx_error(path) == path + ": unsupported IDX element type 0x0d (float32) in magic number 0x00000d01; "
                                  "only 0x08 (unsigned byte) is supported");
  write_plain(path, {0, 0, 0x08, 0});
  CHECK(idx_error(path) == path + ": not an IDX file: magic number 0x00000800 declares 0 dimensions");

  write_plain(path, {});
  CHECK(idx_error(path) == path + ": not an IDX file: the file is empty");

  const std::string missing = dir.file("missing.gz");
  CHECK(idx_error(missing) == missing + ": cannot open: No such file or directory");
}

TEST_CASE("read_idx does not trust the header's sizes") {
  TempDir dir;
  const std::string path = dir.file("f");
  write_plain(path, idx_bytes(0x08, {3, 0, 28}, {}));
  CHECK(idx_error(path) == path + ": header declares an empty 3x0x28 array (dimension 1 is 0)");

  write_plain(path, idx_bytes(0x08, {65536, 65536, 4}, {}));
  CHECK(idx_error(path) == path + ": header declares 65536x65536x4 elements, more than the limit of 2147483648 (2^31)");

  // Within the limit but far larger than the content: fails without a 2 GiB allocation.
  write_plain(path, idx_bytes(0x08, {1u << 31}, iota_bytes(5)));
  CHECK(idx_error(path) == path + ": truncated: header declares 2147483648 bytes of data, found 5");

  write_gz(path, idx_bytes(0x08, {2, 3}, iota_bytes(8)));
  CHECK(idx_error(path) == path + ": trailing data: header declares 2x3 = 6 bytes of data, found 8");
}

TEST_CASE("read_idx reports a corrupt gzip stream") {
  TempDir dir;
  const std::string path = dir.file("bad_crc.gz");
  write_gz(path, idx_bytes(0x08, {4}, {1, 2, 3, 4}));
  auto gz = read_file_bytes(path);
  gz[gz.size() - 8] ^= 0xFF;  // first byte of the CRC-32 in the trailer
  write_plain(path, gz);
  CHECK(idx_error(path) == path + ": corrupt or unreadable: incorrect data check");
}

TEST_CASE("load_fashion_mnist scales images to [0, 1] NHWC and returns Int64 labels") {
  TempDir dir;
  // Three 2x2 "images" with pixels 0, 20, ..., 200 and a last 255.
  std::vector<std::uint8_t> pixels(12, 255);
  for (std::size_t i = 0; i < 11; ++i) pixels[i] = static_cast<std::uint8_t>(20 * i);
  write_gz(dir.file("t10k-images-idx3-ubyte.gz"), idx_bytes(0x08, {3, 2, 2}, pixels));
  write_plain(dir.file("t10k-labels-idx1-ubyte"), idx_bytes(0x08, {3}, {9, 0, 4}));  // unpacked also works
  const std::string root = dir.file("");

  const TensorDataset test = load_fashion_mnist(root, Split::Test);
  CHECK(test.size() == 3);
  CHECK(test.inputs().shape() == Shape{3, 2, 2, 1});
  CHECK(test.inputs().dtype() == DType::Float32);
  CHECK(test.inputs().at({1, 0, 1, 0}) == doctest::Approx(100.0 / 255.0));
  CHECK(test.inputs().at({2, 1, 1, 0}) == 1.0);  // 255
  CHECK(test.targets().dtype() == DType::Int64);
  CHECK(test.targets().to_vector() == std::vector<double>{9, 0, 4});

  const TensorDataset two = load_fashion_mnist(root, Split::Test, 2);
  CHECK(two.inputs().shape() == Shape{2, 2, 2, 1});
  CHECK(two.targets().to_vector() == std::vector<double>{9, 0});

  const std::string labels = dir.file("t10k-labels-idx1-ubyte");
  write_plain(labels, idx_bytes(0x08, {3}, {9, 10, 4}));
  CHECK_THROWS_WITH_AS(load_fashion_mnist(root, Split::Test), (labels + ": label 10 at index 1 is outside 0..9").c_str(),
                       IOError);
  write_plain(labels, idx_bytes(0x08, {2}, {9, 1}));
  const std::string images = dir.file("t10k-images-idx3-ubyte.gz");
  CHECK_THROWS_WITH_AS(load_fashion_mnist(root, Split::Test),
                       (images + ": 3 images, but " + labels + " has 2 labels").c_str(), IOError);
  const std::string train_images = dir.file("train-images-idx3-ubyte.gz");
  CHECK_THROWS_WITH_AS(load_fashion_mnist(root, Split::Train),
                       (train_images + ": cannot open: No such file or directory").c_str(), IOError);
}

TEST_CASE("the real Fashion-MNIST files load") {
  if (!std::filesystem::exists(kFashionMnistDir)) {
    MESSAGE("skipped: " << kFashionMnistDir << " not found (Debian package dataset-fashion-mnist)");
    return;
  }
  const TensorDataset test = load_fashion_mnist(kFashionMnistDir, Split::Test);
  CHECK(test.inputs().shape() == Shape{10000, 28, 28, 1});
  CHECK(test.targets().shape() == Shape{10000});
  const std::int64_t* labels = test.targets().data<std::int64_t>();
  CHECK(labels[0] == 9);  // ankle boot
  std::vector<int> per_class(10, 0);
  for (std::int64_t i = 0; i < 10000; ++i) {
    REQUIRE(labels[i] >= 0);
    REQUIRE(labels[i] <= 9);
    ++per_class[static_cast<std::size_t>(labels[i])];
  }
  CHECK(per_class == std::vector<int>(10, 1000));  // the test split is balanced
  const float* pixels = test.inputs().data<float>();
  const auto [lo, hi] = std::minmax_element(pixels, pixels + test.inputs().numel());
  CHECK(*lo == 0.0f);
  CHECK(*hi == 1.0f);

  const IdxArray train_labels = read_idx(std::string(kFashionMnistDir) + "/train-labels-idx1-ubyte.gz");
  CHECK(train_labels.shape == Shape{60000});
  CHECK(train_labels.bytes[0] == 9);
}
