// nn::save / nn::load across formats: each format round-trips a model, load() tells
// the formats apart by their first bytes, strips a prefix and renames keys, and keeps
// the model unchanged on every error.
#include <doctest/doctest.h>

#include "core/io/zip.hpp"
#include "interop_test_support.hpp"

using namespace xgrad;
using namespace io_test;
using namespace interop_test;

namespace {

void init(TwoLayer& m, std::uint64_t seed) {
  m.set_seed(seed);
  m.init(ones({1, 3}));
}

void check_same_state(const nn::Module& a, const nn::Module& b) { check_same(a.state_dict(), b.state_dict()); }

}  // namespace

TEST_CASE("nn::save writes every format and nn::load recognises each one") {
  TempDir dir;
  TwoLayer source;
  init(source, 1);
  const std::pair<nn::CheckpointFormat, const char*> formats[] = {
      {nn::CheckpointFormat::Npz, "m.npz"},
      {nn::CheckpointFormat::Safetensors, "m.safetensors"},
      {nn::CheckpointFormat::FlaxMsgpack, "m.msgpack"},
      {nn::CheckpointFormat::Torch, "m.pt"}};
  for (const auto& [format, name] : formats) {
    CAPTURE(name);
    const std::string path = dir.file(name);
    nn::save(source, path, {.format = format});
    CHECK(nn::detect_checkpoint_format(path) == format);
    TwoLayer target;
    init(target, 2);
    CHECK(target.fc1.state_dict().at("kernel").to_vector() != source.fc1.state_dict().at("kernel").to_vector());
    nn::load(target, path);
    check_same_state(target, source);
    const Tensor x = from_vector({0.5, -1, 2, 1, 0, -0.25}, {2, 3});
    CHECK(target(x).to_vector() == source(x).to_vector());
  }
  // The format-specific readers see the same tensors.
  check_same(load_safetensors(dir.file("m.safetensors")), source.state_dict());
  check_same(load_flax_msgpack(dir.file("m.msgpack")), source.state_dict());
  check_same(load_torch(dir.file("m.pt")), source.state_dict());
  // Compressed npz through the options, and the old signatures.
  nn::save(source, dir.file("c.npz"), nn::SaveOptions{.compress = true});
  CHECK(nn::detect_checkpoint_format(dir.file("c.npz")) == nn::CheckpointFormat::Npz);
  TwoLayer target;
  init(target, 3);
  nn::load(target, dir.file("c.npz"), false);
  check_same_state(target, source);
}

TEST_CASE("nn::load strips a prefix and renames keys") {
  TempDir dir;
  TwoLayer source;
  init(source, 1);
  std::map<std::string, Tensor> flax, torch_names;
  for (const auto& [k, t] : source.state_dict()) flax["params." + k] = t;
  flax["batch_stats.unused.mean"] = zeros({1});
  save_flax_msgpack(dir.file("p.msgpack"), flax);
  TwoLayer target;
  init(target, 2);
  // Without the prefix nothing matches; strict loading names the keys and changes nothing.
  const auto before = target.state_dict().at("fc1.kernel").clone();
  CHECK_THROWS_WITH_AS(nn::load(target, dir.file("p.msgpack")), doctest::Contains("params.fc1.kernel"), Error);
  CHECK(target.state_dict().at("fc1.kernel").to_vector() == before.to_vector());
  // The batch_stats entry keeps its key, so strict loading refuses it; non-strict skips it.
  CHECK_THROWS_WITH_AS(nn::load(target, dir.file("p.msgpack"), nn::LoadOptions{.strip_prefix = "params."}),
                       doctest::Contains("batch_stats.unused.mean"), Error);
  nn::load(target, dir.file("p.msgpack"), {.strict = false, .strip_prefix = "params."});  // as docs/weights_interop.md writes it
  check_same_state(target, source);

  // PyTorch-style names mapped onto xgrad's with rename.
  torch_names["first.w"] = source.state_dict().at("fc1.kernel");
  torch_names["first.b"] = source.state_dict().at("fc1.bias");
  torch_names["fc2.kernel"] = source.state_dict().at("fc2.kernel");
  torch_names["fc2.bias"] = source.state_dict().at("fc2.bias");
  save_torch(dir.file("t.pt"), torch_names);
  TwoLayer renamed;
  init(renamed, 4);
  nn::load(renamed, dir.file("t.pt"), nn::LoadOptions{.rename = {{"first.w", "fc1.kernel"}, {"first.b", "fc1.bias"}}});
  check_same_state(renamed, source);
  const auto tensors = nn::load_checkpoint_tensors(dir.file("t.pt"), {.strip_prefix = "first."});
  CHECK(tensors.count("w") == 1);
  CHECK(tensors.count("fc2.kernel") == 1);
}

TEST_CASE("nn::load errors: unknown formats, HDF5, bad renames, mismatches; the model stays unchanged") {
  TempDir dir;
  TwoLayer model;
  init(model, 1);
  const auto before = model.state_dict().at("fc2.kernel").clone();
  // An HDF5 signature goes to the Keras reader, which refuses a file that is no HDF5 file.
  write_bytes(dir.file("w.h5"), std::string("\x89HDF\r\n\x1a\n", 8) + std::string(64, '\0'));
  CHECK(nn::detect_checkpoint_format(dir.file("w.h5")) == nn::CheckpointFormat::KerasH5);
  CHECK_THROWS_AS(nn::load(model, dir.file("w.h5")), Error);
  CHECK_THROWS_AS(nn::save(model, dir.file("out.h5"), nn::SaveOptions{.format = nn::CheckpointFormat::KerasH5}),
                  ValueError);
  write_bytes(dir.file("junk"), "hello world, not a checkpoint");
  CHECK_THROWS_WITH_AS(nn::load(model, dir.file("junk")), doctest::Contains("unrecognised checkpoint format"), IOError);
  write_bytes(dir.file("legacy.pt"), std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e"));
  CHECK_THROWS_WITH_AS(nn::load(model, dir.file("legacy.pt")), doctest::Contains("torch >= 1.6"), IOError);
  write_bytes(dir.file("empty"), "");
  CHECK_THROWS_AS(nn::load(model, dir.file("empty")), IOError);
  CHECK_THROWS_AS(nn::load(model, dir.file("missing")), IOError);
  nn::save(model, dir.file("m.safetensors"), nn::SaveOptions{.format = nn::CheckpointFormat::Safetensors});
  CHECK_THROWS_WITH_AS(nn::load(model, dir.file("m.safetensors"), nn::LoadOptions{.rename = {{"fc9.kernel", "x"}}}),
                       doctest::Contains("the file has no key 'fc9.kernel'"), ValueError);
  CHECK_THROWS_WITH_AS(
      nn::load(model, dir.file("m.safetensors"), nn::LoadOptions{.rename = {{"fc1.kernel", "fc1.bias"}}}),
      doctest::Contains("two keys 'fc1.bias'"), ValueError);
  // A PyTorch file whose Linear weight is (out, in): the shape mismatch is reported, nothing changes.
  auto state = model.state_dict();
  state["fc2.kernel"] = zeros({2, 4});
  save_torch(dir.file("t.pt"), state);
  CHECK_THROWS_WITH_AS(nn::load(model, dir.file("t.pt")), doctest::Contains("[2, 4]"), Error);
  CHECK(model.state_dict().at("fc2.kernel").to_vector() == before.to_vector());
  // A hostile file through nn::load: the reader's IOError, the model unchanged.
  write_bytes(dir.file("evil.pt"), [] {
    std::string out;
    ZipWriter zip([&](std::string_view b) { out += b; }, "evil.pt");
    zip.add("archive/data.pkl", std::string("\x80\x02" "cos\nsystem\nX\x02\x00\x00\x00lsR.", 22), false);
    zip.finish();
    return out;
  }());
  CHECK_THROWS_WITH_AS(nn::load(model, dir.file("evil.pt")), doctest::Contains("'os.system' is not allowed"), IOError);
  CHECK(model.state_dict().at("fc2.kernel").to_vector() == before.to_vector());
}
