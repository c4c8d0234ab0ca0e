// load_keras_h5 on fixtures in Keras 2's layout (tests/data/keras, written by
// make_keras_fixtures.py with h5py) and nn::from_keras_locally_connected: a Keras
// LocallyConnected1D / 2D (implementations 1 and 2) converted to ConvLocal gives the
// NumPy reference's outputs. The HDF5 structures beyond h5py's defaults (libver
// 'latest', chunking, filters, compact storage, multi-node groups) read right, and
// hostile files (hand-patched fixtures: bad signatures, addresses past the end,
// B-tree cycles, continuation loops, huge dims, vlen strings pointing outside, every
// truncation) give typed errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "io_test_support.hpp"
#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using test_support::error_of;

namespace {

using V = std::vector<double>;

const std::string kDir = std::string(XGRAD_TEST_DATA) + "/keras/";

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

using test_support::max_abs_diff;

std::vector<std::string> keys_of(const std::map<std::string, Tensor>& m) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : m) keys.push_back(k);
  return keys;
}

// ConvLocal (VALID) with the converted Keras weights, run on x.
Tensor run_converted(const std::map<std::string, Tensor>& converted, const Tensor& x, std::int64_t features,
                     std::vector<std::int64_t> kernel_size, std::vector<std::int64_t> strides) {
  nn::ConvLocal local({.features = features, .kernel_size = kernel_size, .strides = strides, .padding = "VALID"});
  local.init(x);
  local.load_state_dict(converted);
  return local(x);
}

}  // namespace

TEST_CASE("keras_h5_key: layer name, then the weight name without ':0' and its layer prefix, '/' as '.'") {
  CHECK(keras_h5_key("dense", "dense/kernel:0") == "dense.kernel");
  CHECK(keras_h5_key("lc", "kernel:0") == "lc.kernel");
  CHECK(keras_h5_key("encoder", "encoder/dense/bias:0") == "encoder.dense.bias");
  CHECK(keras_h5_key("model", "dense_1/kernel:12") == "model.dense_1.kernel");
  CHECK(keras_h5_key("bn", "bn/moving_mean") == "bn.moving_mean");
  CHECK(keras_h5_key("a", "a/b:x") == "a.b:x");  // only a numeric suffix is TensorFlow's output index
}

TEST_CASE("load_keras_h5 reads save_weights and whole-model files (chunked layer_names / weight_names alike)") {
  const auto weights = load_keras_h5(kDir + "lc_weights.h5");
  CHECK(keys_of(weights) == std::vector<std::string>{"lc1d.bias", "lc1d.kernel", "lc1d_impl2.bias",
                                                     "lc1d_impl2.kernel", "lc2d.bias", "lc2d.kernel",
                                                     "lc2d_impl2.bias", "lc2d_impl2.kernel"});
  CHECK(weights.at("lc2d.kernel").shape() == Shape{10, 18, 4});
  CHECK(weights.at("lc2d.bias").shape() == Shape{2, 5, 4});
  CHECK(weights.at("lc1d.kernel").shape() == Shape{3, 6, 5});
  CHECK(weights.at("lc2d_impl2.kernel").shape() == Shape{5, 6, 3, 2, 5, 4});
  CHECK(weights.at("lc1d_impl2.kernel").shape() == Shape{7, 2, 2, 5});
  for (const auto& [key, t] : weights) CHECK(t.dtype() == DType::Float32);

  // model.save layout: the same weights under model_weights, names split in chunks.
  const auto model = load_keras_h5(kDir + "lc_model.h5");
  REQUIRE(keys_of(model) == keys_of(weights));
  for (const auto& [key, t] : weights) {
    CAPTURE(key);
    CHECK(model.at(key).to_vector() == t.to_vector());
  }
}

TEST_CASE("nn::load recognises Keras HDF5 by its signature and reads it through load_keras_h5") {
  CHECK(nn::detect_checkpoint_format(kDir + "lc_model.h5") == nn::CheckpointFormat::KerasH5);
  const auto direct = load_keras_h5(kDir + "lc_weights.h5");
  const auto via_load = nn::load_checkpoint_tensors(kDir + "lc_weights.h5", {.strip_prefix = "lc2d."});
  CHECK(via_load.count("kernel") == 1);
  CHECK(via_load.at("kernel").to_vector() == direct.at("lc2d.kernel").to_vector());
  CHECK(via_load.count("lc1d.kernel") == 1);
}

TEST_CASE("load_keras_h5 keeps every dtype h5py writes: float16/32/64, int32/64, bool, scalars, empty") {
  const auto w = load_keras_h5(kDir + "dtypes.h5");
  CHECK(keys_of(w) == std::vector<std::string>{"mixed.count", "mixed.empty", "mixed.f16", "mixed.f32", "mixed.f64",
                                               "mixed.flag", "mixed.i32", "mixed.i64", "mixed.step", "mixed.sub.w"});
  CHECK(w.at("mixed.f16").dtype() == DType::Float16);
  CHECK(w.at("mixed.f16").to_vector() == V{1.5, -2.25, 65504.0});
  CHECK(w.at("mixed.f32").dtype() == DType::Float32);
  CHECK(w.at("mixed.f32").shape() == Shape{2, 2});
  CHECK(w.at("mixed.f32").to_vector() == V{1.0, 2.5, -3.0, 0.125});
  CHECK(w.at("mixed.f64").dtype() == DType::Float64);
  CHECK(w.at("mixed.f64").to_vector() == V{0.1, 1e300});
  CHECK(w.at("mixed.i32").dtype() == DType::Int32);
  CHECK(w.at("mixed.i32").data<std::int32_t>()[1] == 2147483647);
  CHECK(w.at("mixed.i64").dtype() == DType::Int64);
  CHECK(w.at("mixed.i64").shape() == Shape{1, 1});
  CHECK(w.at("mixed.i64").data<std::int64_t>()[0] == -9007199254740993LL);  // not a double
  CHECK(w.at("mixed.flag").dtype() == DType::Bool);
  CHECK(w.at("mixed.flag").to_vector() == V{1, 0, 1});
  CHECK(w.at("mixed.step").shape() == Shape{});
  CHECK(w.at("mixed.step").to_vector() == V{42.0});
  CHECK(w.at("mixed.count").dtype() == DType::Int64);
  CHECK(w.at("mixed.sub.w").to_vector() == V{0, 1, 2, 3, 4, 5});
  CHECK(w.at("mixed.empty").shape() == Shape{0, 4});
}

namespace {

// Implementation 1 layers of the fixtures in `dir` against their NumPy reference.
void check_implementation_1(const std::string& dir) {
  const auto weights = load_keras_h5(dir + "lc_weights.h5");
  const auto reference = load_npz(dir + "lc_reference.npz");
  // LocallyConnected2D(4, (3, 2), strides=(2, 1)) on (2, 5, 6, 3).
  const auto p2 = nn::from_keras_locally_connected(weights.at("lc2d.kernel"), weights.at("lc2d.bias"), {3, 2});
  CHECK(p2.at("kernel").shape() == Shape{2, 5, 18, 4});
  CHECK(p2.at("bias").shape() == Shape{2, 5, 4});
  const Tensor y2 = run_converted(p2, reference.at("x2"), 4, {3, 2}, {2, 1});
  CHECK(max_abs_diff(y2, reference.at("y2")) < 1e-4);
  CHECK(max_abs_diff(reference.at("y2"), zeros_like(reference.at("y2"))) > 0.5);
  // LocallyConnected1D(5, 3, strides=2) on (2, 7, 2).
  const auto p1 = nn::from_keras_locally_connected(weights.at("lc1d.kernel"), weights.at("lc1d.bias"), 3);
  CHECK(p1.at("kernel").shape() == Shape{3, 6, 5});
  CHECK(max_abs_diff(run_converted(p1, reference.at("x1"), 5, {3}, {2}), reference.at("y1")) < 1e-4);
  // Without the patch reordering (Keras's rows used as they are) the outputs differ.
  const Tensor as_is = reshape(weights.at("lc2d.kernel"), {2, 5, 18, 4});
  CHECK(max_abs_diff(run_converted({{"kernel", as_is}, {"bias", weights.at("lc2d.bias")}}, reference.at("x2"), 4,
                                   {3, 2}, {2, 1}),
                     reference.at("y2")) > 0.1);
}

// Implementation 2 (dense masked kernel) layers of the fixtures in `dir`.
void check_implementation_2(const std::string& dir) {
  const auto weights = load_keras_h5(dir + "lc_weights.h5");
  const auto reference = load_npz(dir + "lc_reference.npz");
  // Strides (2, 1) are the only ones that map (5, 6) to (2, 5) with a (3, 2) window.
  const auto p2 =
      nn::from_keras_locally_connected(weights.at("lc2d_impl2.kernel"), weights.at("lc2d_impl2.bias"), {3, 2});
  CHECK(p2.at("kernel").shape() == Shape{2, 5, 18, 4});
  CHECK(max_abs_diff(run_converted(p2, reference.at("x2"), 4, {3, 2}, {2, 1}), reference.at("y2_impl2")) < 1e-4);
  // 1-D: length 7, k 2, 2 outputs: strides 3, 4 and 5 all fit, so they must be given.
  CHECK(contains(error_of<ValueError>([&] {
                   nn::from_keras_locally_connected(weights.at("lc1d_impl2.kernel"), weights.at("lc1d_impl2.bias"), 2);
                 }),
                 "strides [3, 4, 5] all give 2 outputs from 7 inputs in spatial dim 0; pass the Keras layer's strides"));
  const auto p1 = nn::from_keras_locally_connected(weights.at("lc1d_impl2.kernel"), weights.at("lc1d_impl2.bias"), 2,
                                                   {.strides = 3});
  CHECK(p1.at("kernel").shape() == Shape{2, 4, 5});
  CHECK(max_abs_diff(run_converted(p1, reference.at("x1"), 5, {2}, {3}), reference.at("y1_impl2")) < 1e-4);
  CHECK(contains(error_of<ShapeError>([&] {
                   nn::from_keras_locally_connected(weights.at("lc1d_impl2.kernel"), std::nullopt, 2, {.strides = 2});
                 }),
                 "a VALID window of 2 with stride 2 gives 3 outputs"));
}

}  // namespace

TEST_CASE("Keras LocallyConnected2D / 1D (implementation 1) converted to ConvLocal give Keras's outputs") {
  check_implementation_1(kDir);
}

TEST_CASE("Keras LocallyConnected2D / 1D (implementation 2, dense masked kernel) converted to ConvLocal") {
  check_implementation_2(kDir);
}

TEST_CASE("Keras fixtures regenerated by h5py now read and convert the same (needs python3-h5py)") {
  if (std::system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") != 0) {
    MESSAGE("skipped: /usr/bin/python3 cannot import h5py");
    return;
  }
  io_test::TempDir dir;
  const std::string command = "/usr/bin/python3 " + kDir + "make_keras_fixtures.py " + dir.path().string();
  REQUIRE(std::system(command.c_str()) == 0);
  const std::string fresh = dir.path().string() + "/";
  check_implementation_1(fresh);
  check_implementation_2(fresh);
  const auto weights = load_keras_h5(fresh + "lc_weights.h5"), model = load_keras_h5(fresh + "lc_model.h5");
  CHECK(keys_of(weights) == keys_of(model));
  CHECK(load_keras_h5(fresh + "dtypes.h5").at("mixed.f16").dtype() == DType::Float16);
  // The HDF5 feature fixtures made now read as the checked-in ones.
  for (const char* name : {"latest.h5", "chunked.h5", "lc_impl3.h5"}) {
    CAPTURE(std::string(name));
    const auto now = load_keras_h5(fresh + name), checked_in = load_keras_h5(kDir + name);
    REQUIRE(keys_of(now) == keys_of(checked_in));
    for (const auto& [key, t] : checked_in) CHECK(now.at(key).to_vector() == t.to_vector());
  }
  CHECK(contains(error_of<ValueError>([&] { load_keras_h5(fresh + "hostile/missing_dataset.h5"); }),
                 "is listed but missing"));
}

TEST_CASE("load_keras_h5: hostile and damaged files give typed errors naming the file and the dataset") {
  const std::string bad = kDir + "hostile/";
  std::string msg = error_of<ValueError>([&] { load_keras_h5(bad + "missing_dataset.h5"); });
  CHECK(contains(msg, "dataset /lc/lc/bias:0 is listed but missing from the file"));
  msg = error_of<ValueError>([&] { load_keras_h5(bad + "missing_layer.h5"); });
  CHECK(contains(msg, "layer group '/ghost' is listed but missing"));
  msg = error_of<ValueError>([&] { load_keras_h5(bad + "huge_chunked.h5"); });
  CHECK(contains(msg, "dataset /lc/lc/kernel:0 of shape [1099511627776, 4096]"));
  CHECK(contains(msg, "is larger than a"));
  msg = error_of<ValueError>([&] { load_keras_h5(bad + "huge_contiguous.h5"); });
  CHECK(contains(msg, "has no data stored"));
  msg = error_of<DTypeError>([&] { load_keras_h5(bad + "uint8.h5"); });
  CHECK(contains(msg, "dataset /lc/lc/kernel:0 has HDF5 type unsigned integer of 1 bytes"));
  msg = error_of<DTypeError>([&] { load_keras_h5(bad + "complex.h5"); });
  CHECK(contains(msg, "has HDF5 type compound of 8 bytes"));
  msg = error_of<ValueError>([&] { load_keras_h5(bad + "weight_is_group.h5"); });
  CHECK(contains(msg, "dataset /lc/lc/kernel:0 is not a dataset"));
  msg = error_of<ValueError>([&] { load_keras_h5(bad + "duplicate_key.h5"); });
  CHECK(contains(msg, "weight 'kernel:0' of layer 'lc' gives the key 'lc.kernel' a second time"));
  msg = error_of<ValueError>([&] { load_keras_h5(bad + "not_keras.h5"); });
  CHECK(contains(msg, "is not a Keras 2 weights file"));
  msg = error_of<ValueError>([&] { load_keras_h5(bad + "layer_names_int.h5"); });
  CHECK(contains(msg, "attribute 'layer_names' of / is not a list of strings"));
  // Variable-length names (h5py's str) are read as Keras reads them; this file lists a layer it lacks.
  msg = error_of<ValueError>([&] { load_keras_h5(bad + "variable_length_names.h5"); });
  CHECK(contains(msg, "layer group '/lc' is listed but missing"));
  msg = error_of<IOError>([&] { load_keras_h5(bad + "truncated.h5"); });
  CHECK(contains(msg, "truncated.h5"));
  msg = error_of<IOError>([&] { load_keras_h5(bad + "no_such_file.h5"); });
  CHECK(contains(msg, "no_such_file.h5"));

  // Not HDF5 at all, and a valid file cut at many lengths: always a typed error.
  io_test::TempDir dir;
  io_test::write_bytes(dir.file("text.h5"), "PK\x03\x04 not an hdf5 file");
  CHECK(contains(error_of<IOError>([&] { load_keras_h5(dir.file("text.h5")); }), "is not an HDF5 file"));
  const std::string whole = io_test::read_bytes(kDir + "lc_weights.h5");
  for (std::size_t length : {std::size_t{0}, std::size_t{8}, std::size_t{96}, std::size_t{800}, std::size_t{2048},
                             whole.size() / 3, whole.size() - 4000, whole.size() - 1}) {
    CAPTURE(length);
    io_test::write_bytes(dir.file("cut.h5"), whole.substr(0, length));
    bool typed = false;
    try {
      load_keras_h5(dir.file("cut.h5"));
    } catch (const Error&) {
      typed = true;
    }
    CHECK(typed);
  }
}

TEST_CASE("from_keras_locally_connected: patch order by hand, data_format, and its errors") {
  // One position, kernel 2, C = 2, F = 1. Keras channels_last rows are (offset, channel)
  // with the channel fastest: [k0c0, k0c1, k1c0, k1c1] = [1, 2, 3, 4]; ConvLocal's are
  // channel-major: [c0k0, c0k1, c1k0, c1k1] = [1, 3, 2, 4].
  const Tensor k = from_vector({1, 2, 3, 4}, {1, 4, 1}, DType::Float64);
  auto p = nn::from_keras_locally_connected(k, std::nullopt, 2);
  CHECK(p.count("bias") == 0);
  CHECK(p.at("kernel").shape() == Shape{1, 4, 1});
  CHECK(p.at("kernel").dtype() == DType::Float64);
  CHECK(p.at("kernel").to_vector() == V{1, 3, 2, 4});
  // channels_first already has ConvLocal's order.
  p = nn::from_keras_locally_connected(k, std::nullopt, 2, {.data_format = "channels_first"});
  CHECK(p.at("kernel").to_vector() == V{1, 2, 3, 4});
  // channels_first bias: Keras's bias_add reshapes (O, F) = (2, 3) to (F, O) without a
  // transpose, so output (f, o) gets flat entry f * 2 + o; ConvLocal's bias[o, f] is that.
  const Tensor k13 = from_vector(V(2 * 2 * 3, 1.0), {2, 2, 3}, DType::Float64);
  p = nn::from_keras_locally_connected(k13, from_vector({0, 1, 2, 3, 4, 5}, {2, 3}, DType::Float64), 2,
                                       {.data_format = "channels_first"});
  CHECK(p.at("bias").shape() == Shape{2, 3});
  CHECK(p.at("bias").to_vector() == V{0, 2, 4, 1, 3, 5});
  p = nn::from_keras_locally_connected(k13, from_vector({0, 1, 2, 3, 4, 5}, {2, 3}, DType::Float64), 2);
  CHECK(p.at("bias").to_vector() == V{0, 1, 2, 3, 4, 5});  // channels_last: as stored
  // Implementation 2, 1-D channels_first (C, M, F, O) = (1, 3, 1, 2), k 2, stride 1:
  // output o reads inputs o and o + 1.
  const Tensor dense = from_vector({10, 20, 11, 21, 12, 22}, {1, 3, 1, 2}, DType::Float32);
  p = nn::from_keras_locally_connected(dense, std::nullopt, 2, {.data_format = "channels_first"});
  CHECK(p.at("kernel").shape() == Shape{2, 2, 1});
  CHECK(p.at("kernel").to_vector() == V{10, 11, 21, 22});

  CHECK(contains(error_of<ValueError>([&] { nn::from_keras_locally_connected(ones({12}), std::nullopt, {2, 2}); }),
                 "implementation 3"));
  CHECK(contains(error_of<ValueError>([&] { nn::from_keras_locally_connected(ones({4, 8, 2}), std::nullopt, {2, 2}); }),
                 "does not say the output's spatial shape; pass the bias or options.output_shape"));
  CHECK(nn::from_keras_locally_connected(ones({4, 8, 2}), std::nullopt, {2, 2}, {.output_shape = {2, 2}})
            .at("kernel")
            .shape() == Shape{2, 2, 8, 2});
  CHECK(contains(error_of<ShapeError>([&] { nn::from_keras_locally_connected(ones({4, 8, 2}), ones({3, 2}), {2, 2}); }),
                 "bias [3, 2] must be (output spatial..., F), rank 3"));
  CHECK(contains(error_of<ShapeError>([&] { nn::from_keras_locally_connected(ones({4, 8, 2}), ones({2, 2, 3}), {2, 2}); }),
                 "bias [2, 2, 3] must be (output spatial..., F) = [2, 2, 2]"));
  CHECK(contains(error_of<ShapeError>([&] { nn::from_keras_locally_connected(ones({4, 7, 2}), std::nullopt, 2); }),
                 "axis 1 (7) is not a multiple of prod(kernel_size [2]) = 2"));
  CHECK(contains(error_of<ShapeError>([&] { nn::from_keras_locally_connected(ones({4, 4, 2, 2, 2}), std::nullopt, 2); }),
                 "is neither implementation 1's"));
  CHECK(contains(error_of<ValueError>(
                     [&] { nn::from_keras_locally_connected(k, std::nullopt, 2, {.data_format = "NHWC"}); }),
                 "data_format must be 'channels_last' or 'channels_first', got 'NHWC'"));
}

namespace {

// Little-endian fields of a file's bytes, for patching fixtures into hostile files.
std::uint64_t get_le(const std::string& bytes, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t{static_cast<unsigned char>(bytes.at(at + i))} << (8 * i);
  return v;
}

void put_le(std::string& bytes, std::size_t at, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) bytes.at(at + i) = static_cast<char>((v >> (8 * i)) & 0xFF);
}

std::string le64(std::uint64_t v) {
  std::string out(8, '\0');
  put_le(out, 0, v, 8);
  return out;
}

// The error message of loading `bytes` as a file; FAILs unless it is an xgrad::Error of type E.
template <class E>
std::string error_loading(const io_test::TempDir& dir, const std::string& bytes) {
  const std::string path = dir.file("patched.h5");
  io_test::write_bytes(path, bytes);
  return error_of<E>([&] { load_keras_h5(path); });
}

}  // namespace

TEST_CASE("load_keras_h5 reads libver='latest' files: superblock v3, OHDR headers, link messages, vlen names") {
  const std::string bytes = io_test::read_bytes(kDir + "latest.h5");
  REQUIRE(bytes.size() > 16);
  CHECK(bytes[8] == 3);                               // superblock version 3
  CHECK(bytes.find("OHDR") != std::string::npos);     // version-2 object headers
  CHECK(bytes.find("SNOD") == std::string::npos);     // no symbol tables: groups are link messages
  const auto w = load_keras_h5(kDir + "latest.h5");   // layer_names is a vlen str attribute (global heap)
  CHECK(keys_of(w) == std::vector<std::string>{"dense.bias", "dense.kernel", "norm.gamma"});
  CHECK(w.at("dense.kernel").shape() == Shape{3, 4});
  CHECK(w.at("dense.kernel").dtype() == DType::Float32);
  V kernel;
  for (int i = 0; i < 12; ++i) kernel.push_back(i / 8.0);
  CHECK(w.at("dense.kernel").to_vector() == kernel);
  // A chunked dataset stored as one deflated, shuffled chunk (version-4 layout, single-chunk index).
  CHECK(w.at("dense.bias").to_vector() == V{0.5, -1.0, 2.0, 4.0});
  CHECK(w.at("norm.gamma").dtype() == DType::Float64);  // weight_names is vlen too
  CHECK(w.at("norm.gamma").to_vector() == V{1.0, 2.0});
}

TEST_CASE("load_keras_h5 reads chunked (v1 B-tree, edge chunks, deflate + shuffle + fletcher32) and compact data") {
  const auto w = load_keras_h5(kDir + "chunked.h5");
  // (37, 29) in (2, 3) chunks: 19 x 10 chunks, the last row and column partly outside;
  // 190 chunks need a chunk B-tree of two levels.
  const Tensor& kernel = w.at("conv.kernel");
  REQUIRE(kernel.shape() == Shape{37, 29});
  CHECK(kernel.dtype() == DType::Float32);
  V expected;
  for (int i = 0; i < 37 * 29; ++i) expected.push_back(i * 0.25 - 100);
  CHECK(kernel.to_vector() == expected);
  // 50 float64 in unfiltered chunks of 7 (the last chunk holds 1 element inside).
  const auto bias = w.at("conv.bias").to_vector();
  REQUIRE(bias.size() == 50);
  for (int i = 0; i < 50; ++i) CHECK(bias[i] == doctest::Approx(-1.0 + 2.0 * i / 49).epsilon(1e-15));
  // Compact storage: the data inside the object header.
  CHECK(w.at("conv.count").dtype() == DType::Int64);
  CHECK(w.at("conv.count").shape() == Shape{1, 3});
  CHECK(w.at("conv.count").to_vector() == V{1, -2, 3});
  // Big-endian float32 (numpy '>f4') comes out in native order.
  CHECK(w.at("conv.big_endian").dtype() == DType::Float32);
  CHECK(w.at("conv.big_endian").to_vector() == V{1.5, -2.0, static_cast<double>(1e30f)});
  // 40 members: a group B-tree over several symbol table nodes.
  for (int i = 0; i < 40; ++i) {
    const std::string key = fmt::format("wide.w{:03d}", i);
    CAPTURE(key);
    REQUIRE(w.count(key) == 1);
    CHECK(w.at(key).dtype() == DType::Int32);
    CHECK(w.at(key).to_vector() == V{static_cast<double>(i)});
  }
  CHECK(w.size() == 44);
}

TEST_CASE("load_keras_h5 on an h5py file made now: a 300-member group, a two-level group B-tree (needs python3-h5py)") {
  if (std::system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") != 0) {
    MESSAGE("skipped: /usr/bin/python3 cannot import h5py");
    return;
  }
  io_test::TempDir dir;
  // 300 layers: the root group's B-tree needs an internal level over its symbol table nodes.
  const std::string script =
      "import h5py, numpy as np, sys\n"
      "f = h5py.File(sys.argv[1], 'w')\n"
      "layers = ['layer_%03d' % i for i in range(300)]\n"
      "f.attrs['layer_names'] = np.array([n.encode() for n in layers])\n"
      "for i, n in enumerate(layers):\n"
      "    g = f.create_group(n)\n"
      "    g.attrs['weight_names'] = np.array([(n + '/w:0').encode()])\n"
      "    g.create_dataset(n + '/w:0', data=np.full((2,), i, np.float32))\n"
      "f.close()\n";
  io_test::write_bytes(dir.file("make.py"), script);
  REQUIRE(std::system(("/usr/bin/python3 " + dir.file("make.py") + " " + dir.file("wide.h5")).c_str()) == 0);
  const auto w = load_keras_h5(dir.file("wide.h5"));
  REQUIRE(w.size() == 300);
  for (int i = 0; i < 300; i += 37) CHECK(w.at(fmt::format("layer_{:03d}.w", i)).to_vector() == V{1.0 * i, 1.0 * i});
  const std::string bytes = io_test::read_bytes(dir.file("wide.h5"));
  // Some B-tree node of the file has level 1.
  bool internal = false;
  for (std::size_t at = bytes.find("TREE"); at != std::string::npos; at = bytes.find("TREE", at + 1))
    if (bytes[at + 4] == 0 && bytes[at + 5] == 1) internal = true;
  CHECK(internal);
}

TEST_CASE("load_keras_h5: unsupported HDF5 features are typed errors that name them") {
  const std::string bad = kDir + "hostile/";
  CHECK(contains(error_of<IOError>([&] { load_keras_h5(bad + "dense_links.h5"); }),
                 "keeps its links in dense (fractal heap) storage"));
  CHECK(contains(error_of<IOError>([&] { load_keras_h5(bad + "latest_chunked.h5"); }),
                 "dataset /lc/lc/kernel:0 is chunked with a version-4 chunk index of type 3"));
}

TEST_CASE("load_keras_h5: hand-patched hostile files give typed IOErrors, never a crash or a huge allocation") {
  io_test::TempDir dir;
  const std::string good = io_test::read_bytes(kDir + "lc_weights.h5");  // superblock v0, symbol tables
  REQUIRE(good.size() > 1000);
  REQUIRE(good[8] == 0);
  const std::uint64_t root = get_le(good, 64, 8);  // root group symbol table entry: object header address

  SUBCASE("bad signature and unknown superblock version") {
    std::string b = good;
    b[1] = 'X';
    CHECK(contains(error_loading<IOError>(dir, b), "is not an HDF5 file"));
    b = good;
    b[8] = 9;
    CHECK(contains(error_loading<IOError>(dir, b), "unsupported HDF5 feature: superblock version 9"));
    b = good;
    b[13] = 3;  // 3-byte offsets
    CHECK(contains(error_loading<IOError>(dir, b), "3-byte offsets"));
  }
  SUBCASE("the root object header address past the end of the file") {
    std::string b = good;
    put_le(b, 64, good.size() + 4096, 8);
    CHECK(contains(error_loading<IOError>(dir, b), "runs past the end of the"));
    put_le(b, 64, ~std::uint64_t{0} - 3, 8);  // an address that overflows when added to
    CHECK(contains(error_loading<IOError>(dir, b), "damaged HDF5 file"));
  }
  SUBCASE("damaged signatures of B-tree, local heap and symbol table nodes") {
    for (const char* sig : {"TREE", "HEAP", "SNOD"}) {
      CAPTURE(sig);
      std::string b = good;
      const std::size_t at = b.find(sig);
      REQUIRE(at != std::string::npos);
      b[at] = 'x';
      CHECK(contains(error_loading<IOError>(dir, b), fmt::format("no \"{}\" signature", sig)));
    }
  }
  SUBCASE("a cycle in the group B-tree") {
    // The root group's B-tree node claims level 1 and lists itself as its child.
    std::string b = good;
    const std::size_t tree = b.find("TREE");
    REQUIRE(b[tree + 4] == 0);
    b[tree + 5] = 1;
    put_le(b, tree + 24 + 8, tree, 8);  // key 0 (8 bytes), then child 0
    const std::string msg = error_loading<IOError>(dir, b);
    CHECK((contains(msg, "is reached twice") || contains(msg, "where 0 was expected")));
  }
  SUBCASE("a layer group that is the root again: lookups follow listed paths only, so it terminates") {
    // The root group's symbol table entry "lc2d" now points at the root's own header.
    std::string b = good;
    const std::uint64_t tree = get_le(good, 80, 8), heap = get_le(good, 88, 8);  // root entry's scratch pad
    const std::uint64_t snod = get_le(good, tree + 24 + 8, 8);                   // key 0, then child 0
    const std::uint64_t names = get_le(good, heap + 24, 8);                      // the heap's data segment
    REQUIRE(good.compare(snod, 4, "SNOD") == 0);
    bool patched = false;
    for (std::uint64_t i = 0; i < get_le(good, snod + 6, 2); ++i) {
      const std::uint64_t entry = snod + 8 + i * 40;
      if (std::string(good.c_str() + names + get_le(good, entry, 8)) == "lc2d") {
        put_le(b, entry + 8, root, 8);
        patched = true;
      }
    }
    REQUIRE(patched);
    io_test::write_bytes(dir.file("cycle.h5"), b);
    const auto w = load_keras_h5(dir.file("cycle.h5"));  // the root lists no weight_names: no lc2d weights
    CHECK(w.count("lc2d.kernel") == 0);
    CHECK(w.at("lc1d.kernel").shape() == Shape{3, 6, 5});
  }
  SUBCASE("a symbol name outside the local heap, and a heap larger than the file") {
    std::string b = good;
    const std::size_t snod = b.find("SNOD");
    put_le(b, snod + 8, 1u << 30, 8);  // the first entry's name offset
    CHECK(contains(error_loading<IOError>(dir, b), "outside its"));
    b = good;
    const std::size_t heap = b.find("HEAP");
    put_le(b, heap + 8, std::uint64_t{1} << 40, 8);  // data segment size
    CHECK(contains(error_loading<IOError>(dir, b), "claims 1099511627776 bytes"));
  }
  SUBCASE("a continuation message that loops back to its own block") {
    std::string b = good;
    REQUIRE(b[root] == 1);  // a version-1 object header
    const std::uint64_t size = get_le(b, root + 8, 4);
    // Turn the first message big enough to hold a continuation into one pointing at
    // the header's own message block.
    std::size_t at = root + 16;
    bool patched = false;
    while (at + 8 <= root + 16 + size) {
      const std::uint64_t type = get_le(b, at, 2), msize = get_le(b, at + 2, 2);
      if (type != 0x11 && msize >= 16) {
        put_le(b, at, 0x10, 2);
        put_le(b, at + 8, root + 16, 8);
        put_le(b, at + 16, size, 8);
        patched = true;
        break;
      }
      at += 8 + msize;
    }
    REQUIRE(patched);
    CHECK(contains(error_loading<IOError>(dir, b), "is a loop"));
  }
  SUBCASE("huge dataspace dims: past the file, and an element count that overflows") {
    // lc2d/kernel:0 is (10, 18, 4): its dataspace message (v1, rank 3, max dims present).
    const std::string pattern = std::string("\x01\x03\x01\x00\x00\x00\x00\x00", 8) + le64(10) + le64(18) + le64(4);
    std::string b = good;
    const std::size_t at = b.find(pattern);
    REQUIRE(at != std::string::npos);
    put_le(b, at + 8, std::uint64_t{1} << 40, 8);
    std::string msg = error_loading<IOError>(dir, b);
    CHECK(contains(msg, "dataset /lc2d/lc2d/kernel:0 of shape [1099511627776, 18, 4]"));
    CHECK(contains(msg, "runs past the end"));
    put_le(b, at + 16, std::uint64_t{1} << 40, 8);
    CHECK(contains(error_loading<IOError>(dir, b), "element count overflows"));
  }
  SUBCASE("variable-length strings pointing outside the file, at no object, or longer than their object") {
    const std::string latest = io_test::read_bytes(kDir + "latest.h5");
    const std::size_t gcol = latest.find("GCOL");
    REQUIRE(gcol != std::string::npos);
    // layer_names' first element: length (4), collection address (8), object index (4).
    const std::size_t ref = latest.find(le64(gcol));
    REQUIRE(ref != std::string::npos);
    REQUIRE(get_le(latest, ref - 4, 4) == 5);  // "dense"
    std::string b = latest;
    put_le(b, ref, latest.size() + 64, 8);
    CHECK(contains(error_loading<IOError>(dir, b), "runs past the end"));
    b = latest;
    put_le(b, ref + 8, 999, 4);
    CHECK(contains(error_loading<IOError>(dir, b), "which has no such object"));
    b = latest;
    put_le(b, ref - 4, 4000, 4);
    CHECK(contains(error_loading<IOError>(dir, b), "a string of 4000 bytes in a 5-byte global heap object"));
    b = latest;
    put_le(b, gcol + 8, std::uint64_t{1} << 40, 8);  // the collection's size
    CHECK(contains(error_loading<IOError>(dir, b), "global heap collection"));
  }
  SUBCASE("a deflated chunk that does not inflate") {
    std::string b = io_test::read_bytes(kDir + "chunked.h5");
    bool patched = false;
    // A leaf of conv/kernel:0's chunk B-tree (type 1, rank 2: keys of 4 + 4 + 3 * 8 bytes).
    for (std::size_t at = b.find("TREE"); at != std::string::npos && !patched; at = b.find("TREE", at + 1)) {
      if (b[at + 4] != 1 || b[at + 5] != 0 || get_le(b, at + 24 + 8 + 16, 8) != 0) continue;
      const std::uint64_t chunk = get_le(b, at + 24 + 32, 8);
      put_le(b, chunk, 0xDEADBEEFDEADBEEFull, 8);
      patched = true;
    }
    REQUIRE(patched);
    CHECK(contains(error_loading<IOError>(dir, b), "does not inflate"));
  }
}

TEST_CASE("load_keras_h5: every truncation of every fixture is a typed error") {
  io_test::TempDir dir;
  for (const char* name : {"lc_weights.h5", "latest.h5", "chunked.h5", "dtypes.h5"}) {
    const std::string whole = io_test::read_bytes(kDir + name);
    const auto full = load_keras_h5(kDir + name);
    std::size_t typed = 0, cuts = 0;
    for (std::size_t length = 0; length < whole.size(); length += (length < 4096 ? 7 : 97)) {
      ++cuts;
      io_test::write_bytes(dir.file("cut.h5"), whole.substr(0, length));
      try {
        // A cut that only loses bytes nothing refers to (free space at the end) loads the same.
        const auto cut = load_keras_h5(dir.file("cut.h5"));
        CAPTURE(length);
        REQUIRE(keys_of(cut) == keys_of(full));
        for (const auto& [key, t] : full) CHECK(cut.at(key).to_vector() == t.to_vector());
      } catch (const Error&) {
        ++typed;
      }
    }
    CAPTURE(std::string(name));
    // dtypes.h5 ends in 160 bytes nothing refers to, where one sampled cut falls.
    CHECK(typed + 1 >= cuts);
  }
}

TEST_CASE("load_keras_h5 from several threads at once gives the same weights (no global reader state)") {
  const auto expected = load_keras_h5(kDir + "chunked.h5");
  std::vector<std::map<std::string, Tensor>> results(4);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < results.size(); ++i)
    threads.emplace_back([&, i] { results[i] = load_keras_h5(kDir + (i % 2 ? "chunked.h5" : "latest.h5")); });
  for (auto& t : threads) t.join();
  const auto latest = load_keras_h5(kDir + "latest.h5");
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto& want = i % 2 ? expected : latest;
    REQUIRE(keys_of(results[i]) == keys_of(want));
    for (const auto& [key, t] : want) CHECK(results[i].at(key).to_vector() == t.to_vector());
  }
}

TEST_CASE("Keras LocallyConnected2D / 1D (implementation 3, sparse kernel vector) converted to ConvLocal") {
  // Reference: the sparse matrix built from sorted conv_kernel_idxs in NumPy, y = x_flat @ A^T.
  const auto weights = load_keras_h5(kDir + "lc_impl3.h5");
  const auto reference = load_npz(kDir + "lc_impl3_reference.npz");
  // LocallyConnected2D(4, (3, 2), strides=(2, 1)), channels_last, with bias: O and F from the bias.
  const Tensor& k2 = weights.at("lc2d_impl3.kernel");
  CHECK(k2.shape() == Shape{10 * 4 * 6 * 3});
  const auto p2 = nn::from_keras_locally_connected(k2, weights.at("lc2d_impl3.bias"), {3, 2});
  CHECK(p2.at("kernel").shape() == Shape{2, 5, 18, 4});
  const Tensor y2 = run_converted(p2, reference.at("x2"), 4, {3, 2}, {2, 1});
  CHECK(max_abs_diff(y2, reference.at("y2")) < 1e-4);
  CHECK(max_abs_diff(reference.at("y2"), zeros_like(reference.at("y2"))) > 0.5);
  // Read as implementation 1's order instead, the outputs differ.
  const auto wrong = nn::from_keras_locally_connected(reshape(k2, {10, 18, 4}), weights.at("lc2d_impl3.bias"), {3, 2});
  CHECK(max_abs_diff(run_converted(wrong, reference.at("x2"), 4, {3, 2}, {2, 1}), reference.at("y2")) > 0.1);
  // LocallyConnected1D(5, 3, strides=2), channels_first, no bias: O and F from the options.
  const Tensor& k1 = weights.at("lc1d_impl3.kernel");
  CHECK(contains(error_of<ValueError>([&] {
                   nn::from_keras_locally_connected(k1, std::nullopt, 3, {.data_format = "channels_first"});
                 }),
                 "pass the bias or options.output_shape and options.features"));
  const auto p1 = nn::from_keras_locally_connected(
      k1, std::nullopt, 3, {.data_format = "channels_first", .output_shape = {3}, .features = 5});
  CHECK(p1.at("kernel").shape() == Shape{3, 6, 5});
  CHECK(p1.count("bias") == 0);
  // ConvLocal is channels-last: (N, C, L) -> (N, L, C) in, (N, O, F) -> (N, F, O) out.
  nn::ConvLocal local({.features = 5, .kernel_size = {3}, .strides = {2}, .padding = "VALID", .use_bias = false});
  const Tensor x1 = transpose(reference.at("x1"), {0, 2, 1});
  local.init(x1);
  local.load_state_dict(p1);
  CHECK(max_abs_diff(transpose(local(x1), {0, 2, 1}), reference.at("y1")) < 1e-4);
  // A kernel length that fits no channel count (e.g. from 'same' padding) is a ShapeError.
  CHECK(contains(error_of<ShapeError>([&] {
                   nn::from_keras_locally_connected(ones({7}), std::nullopt, 3, {.output_shape = {3}, .features = 5});
                 }),
                 "is not positions [3] x F 5 x prod(kernel_size [3]) x C for any C"));
}
