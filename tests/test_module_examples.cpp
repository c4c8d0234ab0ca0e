// Writing models: a custom module in a few lines (the README example), error
// messages that name the layer, a ConvLocal-style lazy kernel, summary().
#include <doctest/doctest.h>

#include "io_test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

// The README example.
struct MLP : nn::Module {
  nn::Dense fc1{{.features = 128}}, fc2{{.features = 10}};
  MLP() {
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }
  Tensor forward(const Tensor& x) override { return fc2(nn::relu(fc1(x))); }
};

// A layer whose kernel shape depends on the input's spatial size, as ConvLocal's
// does: one [features] weight vector per input position (a 1x1 local conv).
struct LocalScale : nn::Module {
  std::int64_t features;
  explicit LocalScale(std::int64_t f) : features(f) {}
  std::string describe() const override { return "LocalScale"; }
  Tensor forward(const Tensor& x) override {  // x: [batch, H, W, C]
    const Shape kernel_shape{x.size(1), x.size(2), x.size(3), features};
    Tensor kernel = param("kernel", kernel_shape, nn::initializers::lecun_normal(), DType::Float32,
                          "input spatial size changed?");
    return sum(unsqueeze(x, -1) * kernel, {3});
  }
};

struct Encoder : nn::Module {
  LocalScale local{16};
  Encoder() { register_module("local", local); }
  Tensor forward(const Tensor& x) override { return local(x); }
};

struct Net : nn::Module {
  Encoder encoder;
  Net() { register_module("encoder", encoder); }
  Tensor forward(const Tensor& x) override { return encoder(x); }
};

}  // namespace

TEST_CASE("a custom module in a few lines: parameters, forward, backward") {
  MLP model;
  Tensor x = random_normal(make_key(1), {4, 784});
  Tensor logits = model(x);
  CHECK(logits.shape() == Shape{4, 10});
  CHECK(model.num_parameters() == 784 * 128 + 128 + 128 * 10 + 10);
  losses::softmax_cross_entropy(logits, from_vector({1, 2, 3, 4}, {4}, DType::Int64), losses::Reduction::Mean)
      .backward();
  for (auto& [name, p] : model.named_parameters()) CHECK_MESSAGE(p.grad().shape() == p.shape(), name);
}

TEST_CASE("shape errors inside a model name the layer path and description") {
  MLP model;
  model.init(ones({32, 784}));
  CHECK_THROWS_WITH_AS(model.fc2(ones({32, 64})),
                       "fc2 (Dense, features=10): input last dim 64 does not match kernel [128, 10]", ShapeError);
  CHECK_THROWS_WITH_AS(model(ones({32, 100})),
                       "fc1 (Dense, features=128): input last dim 100 does not match kernel [784, 128]", ShapeError);
}

TEST_CASE("a ConvLocal-style kernel is created from the first input's spatial size and then checked") {
  Net net;
  net.init(ones({2, 26, 26, 9}));
  CHECK(net.named_parameters()[0].first == "encoder.local.kernel");
  CHECK(net.named_parameters()[0].second.shape() == Shape{26, 26, 9, 16});
  CHECK(net(ones({1, 26, 26, 9})).shape() == Shape{1, 26, 26, 16});
  CHECK_THROWS_WITH_AS(net(ones({2, 12, 12, 9})),
                       "encoder.local (LocalScale): parameter 'kernel' was created with shape [26, 26, 9, 16] but this "
                       "call needs [12, 12, 9, 16] (initialised for [2, 26, 26, 9], got [2, 12, 12, 9]: input "
                       "spatial size changed?)",
                       ShapeError);
}

TEST_CASE("summary of a Dense MLP") {
  MLP model;
  const std::string table = model.summary(ones({4, 784}));
  CHECK(table ==
        "path    module               input     output            parameters                     count   dtype\n"
        "------  -------------------  --------  ----------------  -----------------------------  ------  -------\n"
        "(root)  MLP                  [4, 784]  [4, 10] float32   -                              0       -\n"
        "fc1     Dense, features=128  [*, 784]  [4, 128] float32  kernel [784, 128], bias [128]  100480  float32\n"
        "fc2     Dense, features=10   [*, 128]  [4, 10] float32   kernel [128, 10], bias [10]    1290    float32\n"
        "Total: 101770 parameters, 407080 bytes\n");
}

TEST_CASE("a Sequential model of layers and functions") {
  nn::Sequential model{std::make_shared<nn::Flatten>(), std::make_shared<nn::Dense>(nn::DenseOptions{.features = 8}),
                       std::make_shared<nn::Lambda>("relu", [](const Tensor& x) { return nn::relu(x); }),
                       std::make_shared<nn::Dropout>(nn::DropoutOptions{.rate = 0.5}),
                       std::make_shared<nn::Dense>(nn::DenseOptions{.features = 2})};
  model.eval();
  Tensor y = model(ones({3, 2, 2}));
  CHECK(y.shape() == Shape{3, 2});
  std::vector<std::string> names;
  for (auto& [n, p] : model.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"layers_1.kernel", "layers_1.bias", "layers_4.kernel", "layers_4.bias"});
}

TEST_CASE("a lazily initialised model trains with optim::Optimizer") {
  MLP model;
  optim::Optimizer opt(model, optim::adam({.learning_rate = 1e-2}));  // parameters fetched at the first step
  const Tensor x = random_normal(make_key(1), {32, 784});
  const Tensor y = from_vector(std::vector<double>(32, 3.0), {32}, DType::Int64);
  double first = 0, last = 0;
  for (int step = 0; step < 10; ++step) {
    Tensor loss = losses::softmax_cross_entropy(model(x), y, losses::Reduction::Mean);
    (step == 0 ? first : last) = loss.item();
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  CHECK(opt.params().size() == 4);
  CHECK(last < 0.1 * first);
}

TEST_CASE("a state dict saves to .npz and loads back into a fresh model") {
  io_test::TempDir dir;
  MLP trained, fresh;
  trained.set_seed(5);
  trained.init(ones({1, 784}));
  fresh.init(ones({1, 784}));
  save_npz(dir.file("mlp.npz"), trained.state_dict());
  fresh.load_state_dict(load_npz(dir.file("mlp.npz")));
  for (const auto& [name, t] : trained.state_dict()) CHECK(fresh.state_dict().at(name).to_vector() == t.to_vector());
}
