// Model checkpoints: save/load round trips, strict errors that leave the model
// unchanged, and a round trip through NumPy.
#include <doctest/doctest.h>

#include "io_test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;
using namespace io_test;

TEST_CASE("save then load restores every parameter exactly") {
  TempDir dir;
  const Tensor sample = ones({1, 3});
  TwoLayer a, b;
  a.set_seed(1);
  b.set_seed(2);
  a.init(sample);
  b.init(sample);
  CHECK(a.fc1.named_parameters()[0].second.to_vector() != b.fc1.named_parameters()[0].second.to_vector());
  nn::save(a, dir.file("ckpt.npz"));
  nn::load(b, dir.file("ckpt.npz"));
  for (const auto& [name, t] : a.state_dict()) CHECK(b.state_dict().at(name).to_vector() == t.to_vector());
}

TEST_CASE("a failed load names the problem and leaves the model unchanged") {
  TempDir dir;
  TwoLayer a;
  a.init(ones({1, 3}));
  std::map<std::string, Tensor> bad = a.state_dict();
  bad["fc2.kernel"] = zeros({5, 2});
  bad.erase("fc2.bias");
  save_npz(dir.file("bad.npz"), bad);
  const auto before = a.state_dict().at("fc1.kernel").clone();
  try {
    nn::load(a, dir.file("bad.npz"));
    FAIL("expected an error");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("fc2.bias") != std::string::npos);
    CHECK(msg.find("fc2.kernel") != std::string::npos);
    CHECK(msg.find("[5, 2]") != std::string::npos);
  }
  CHECK(a.state_dict().at("fc1.kernel").to_vector() == before.to_vector());
  TwoLayer fresh;
  CHECK_THROWS_WITH_AS(nn::load(fresh, dir.file("bad.npz")),
                       doctest::Contains("the model has no parameters yet"), ValueError);
}

TEST_CASE("a checkpoint round-trips through NumPy with dotted names as keys") {
  if (!numpy_available()) {
    MESSAGE("skipped: /usr/bin/python3 with numpy is not available");
    return;
  }
  TempDir dir;
  TwoLayer model;
  model.init(ones({1, 3}));
  nn::save(model, dir.file("ckpt.npz"));
  // NumPy reads the keys, doubles every array and writes a compressed archive back.
  REQUIRE(run_python(dir, R"(
import sys, numpy as np
d = sys.argv[1]
ck = np.load(d + "/ckpt.npz")
assert sorted(ck.files) == ["fc1.bias", "fc1.kernel", "fc2.bias", "fc2.kernel"], ck.files
assert ck["fc1.kernel"].shape == (3, 4) and ck["fc1.kernel"].dtype == np.float32
np.savez_compressed(d + "/doubled.npz", **{k: 2 * ck[k] for k in ck.files})
)"));
  const auto original = model.state_dict().at("fc2.kernel").clone().to_vector();
  nn::load(model, dir.file("doubled.npz"));
  const auto doubled = model.state_dict().at("fc2.kernel").to_vector();
  for (std::size_t i = 0; i < original.size(); ++i) CHECK(doubled[i] == 2 * original[i]);
}
