// nn::Module core: naming, lazy parameters, path-derived init, modes, state dicts,
// summary and error messages that name the module path.
#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

// y = x * w + b over the last axis; parameters shaped by the first input.
struct Affine : nn::Module {
  Tensor forward(const Tensor& x) override {
    const Shape features{x.size(-1)};
    Tensor w = param("w", features, nn::initializers::normal(1.0), DType::Float32);
    Tensor b = param("b", features, nn::initializers::zeros(), DType::Float32);
    return x * w + b;
  }
};

struct Encoder : nn::Module {
  Affine a, b;
  explicit Encoder(bool reverse_registration) {
    if (reverse_registration) {
      register_module("b", b);
      register_module("a", a);
    } else {
      register_module("a", a);
      register_module("b", b);
    }
  }
  Tensor forward(const Tensor& x) override { return b(a(x)); }
};

struct Net : nn::Module {
  Affine head;  // declared before the encoder is made
  std::shared_ptr<Encoder> encoder;
  explicit Net(bool reverse = false) {
    if (reverse) {
      register_module("head", head);
      encoder = register_module("encoder", std::make_shared<Encoder>(true));
    } else {
      encoder = register_module("encoder", std::make_shared<Encoder>(false));
      register_module("head", head);
    }
  }
  Tensor forward(const Tensor& x) override { return head((*encoder)(x)); }
};

struct Broken : nn::Module {
  Tensor forward(const Tensor& x) override { return x + ones({4}); }
};

struct Outer : nn::Module {
  Broken broken;
  Outer() { register_module("broken", broken); }
  Tensor forward(const Tensor& x) override { return broken(x); }
};

std::vector<std::string> names(const nn::NamedTensors& list) {
  std::vector<std::string> out;
  for (const auto& [n, t] : list) out.push_back(n);
  return out;
}

Tensor sample() { return from_vector({1, 2, 3, 4, 5, 6}, {2, 3}); }

}  // namespace

TEST_CASE("parameters are created lazily from the first input, under dotted paths") {
  Net net;
  CHECK(net.named_parameters().empty());
  net.init(sample());
  CHECK(names(net.named_parameters()) ==
        std::vector<std::string>{"encoder.a.w", "encoder.a.b", "encoder.b.w", "encoder.b.b", "head.w", "head.b"});
  for (const Tensor& p : net.parameters()) {
    CHECK(p.shape() == Shape{3});
    CHECK(p.requires_grad());
    CHECK(p.is_leaf());
  }
  CHECK(net.num_parameters() == 18);
  CHECK(net.encoder->a.path() == "encoder.a");
  CHECK(names(net.encoder->named_parameters()) == std::vector<std::string>{"a.w", "a.b", "b.w", "b.b"});
  std::vector<std::string> modules;
  for (auto& [p, m] : net.named_modules()) modules.push_back(p);
  CHECK(modules == std::vector<std::string>{"", "encoder", "encoder.a", "encoder.b", "head"});
  // init does not record: the parameters have no gradient yet, and forward then backward fills them.
  CHECK_FALSE(net.parameters()[0].grad().defined());
  net(sample()).sum().backward();
  for (const Tensor& p : net.parameters()) CHECK(p.grad().defined());
  net.zero_grad();
  CHECK_FALSE(net.parameters()[0].grad().defined());
}

TEST_CASE("initial values depend on the seed and the path, not on construction or registration order") {
  Net forward_order(false), reverse_order(true);
  forward_order.init(sample());
  reverse_order.init(sample());
  CHECK(names(reverse_order.named_parameters()) ==
        std::vector<std::string>{"head.w", "head.b", "encoder.b.w", "encoder.b.b", "encoder.a.w", "encoder.a.b"});
  const nn::StateDict a = forward_order.state_dict(), b = reverse_order.state_dict();
  REQUIRE(a.size() == b.size());
  for (const auto& [name, t] : a) CHECK_MESSAGE(t.to_vector() == b.at(name).to_vector(), name);
  // Different paths give different values, and a different seed changes them all.
  CHECK(a.at("encoder.a.w").to_vector() != a.at("encoder.b.w").to_vector());
  Net seeded;
  seeded.set_seed(7);
  seeded.init(sample());
  CHECK(seeded.state_dict().at("head.w").to_vector() != a.at("head.w").to_vector());
  // The value is exactly the initializer applied to fold_in(make_key(seed), path).
  CHECK(a.at("encoder.a.w").to_vector() ==
        nn::initializers::normal(1.0)(fold_in(make_key(0), "encoder.a.w"), {3}, DType::Float32).to_vector());
  CHECK_THROWS_WITH_AS(forward_order.encoder->set_seed(3),
                       "set_seed: only a root module has a seed; 'encoder' is a submodule (set it on the root)",
                       ValueError);
}

TEST_CASE("a parameter shape mismatch names the module path and both shapes") {
  Net net;
  net.init(sample());
  CHECK_THROWS_WITH_AS(net(ones({2, 4})),
                       "encoder.a (Affine): parameter 'w' was created with shape [3] but this call needs [4] "
                       "(initialised for [2, 3], got [2, 4]: input shape changed?)",
                       ShapeError);
}

TEST_CASE("errors inside a model are prefixed once, by the innermost module") {
  Outer outer;
  CHECK_THROWS_WITH_AS(outer(ones({2, 3})),
                       "broken (Broken): add: shapes [2, 3] and [4] cannot be broadcast together (axis 1: 3 vs 4)",
                       ShapeError);
  // A root names itself by its description.
  Broken alone;
  CHECK_THROWS_WITH_AS(alone(ones({2, 3})),
                       "Broken: add: shapes [2, 3] and [4] cannot be broadcast together (axis 1: 3 vs 4)", ShapeError);
}

TEST_CASE("registration errors") {
  Net net;
  Affine extra;
  CHECK_THROWS_WITH_AS(net.register_module("head", extra), "register_module: 'Net' already has an entry named 'head'",
                       ValueError);
  CHECK_THROWS_WITH_AS(net.register_module("x.y", extra),
                       "register_module: name 'x.y' must be non-empty and contain no '.'", ValueError);
  CHECK_THROWS_WITH_AS(net.register_module("again", net.head),
                       "register_module: the module for 'again' is already registered as 'head'", ValueError);
  CHECK_THROWS_WITH_AS(net.head.register_module("loop", net), "register_module: 'loop' would make a cycle",
                       ValueError);
  net.register_parameter("scale", ones({1}));
  CHECK(net.named_parameters().front().first == "scale");
  CHECK(net.named_parameters().front().second.requires_grad());
  net.register_buffer("steps", zeros({1}, DType::Int64));
  CHECK(names(net.named_buffers()) == std::vector<std::string>{"steps"});
  CHECK_FALSE(net.named_buffers()[0].second.requires_grad());
}

TEST_CASE("train() and eval() are recursive") {
  Net net;
  CHECK(net.is_training());
  net.eval();
  CHECK_FALSE(net.encoder->a.is_training());
  CHECK_FALSE(net.head.is_training());
  net.encoder->train();
  CHECK(net.encoder->b.is_training());
  CHECK_FALSE(net.is_training());
}

TEST_CASE("state_dict round trip, strict errors, and a failed load leaves the model unchanged") {
  Net source, target;
  source.set_seed(1);
  source.init(sample());
  target.init(sample());
  target.register_buffer("steps", zeros({1}, DType::Int64));
  nn::StateDict state = source.state_dict();
  state["steps"] = full({1}, 5, DType::Int64);
  target.load_state_dict(state);
  CHECK(target.state_dict().at("head.w").to_vector() == source.state_dict().at("head.w").to_vector());
  CHECK(target.named_buffers()[0].second.item() == 5);
  // The state dict aliases the parameters: a copy_ through it is seen by the model.
  target.state_dict().at("head.b").fill_(3.0);
  CHECK(target.head.named_parameters()[1].second.to_vector() == std::vector<double>{3, 3, 3});

  const std::vector<double> before = target.state_dict().at("encoder.a.w").to_vector();
  nn::StateDict bad = state;
  bad.erase("head.b");
  bad["head.extra"] = ones({3});
  bad["encoder.a.w"] = ones({4});
  bad["encoder.b.b"] = ones({3}, DType::Float64);
  CHECK_THROWS_WITH_AS(target.load_state_dict(bad),
                       "load_state_dict: the state dict does not match the model:\n"
                       "  missing keys: head.b\n"
                       "  unexpected keys: head.extra\n"
                       "  encoder.a.w: shape [4] in the state dict, [3] in the model\n"
                       "  encoder.b.b: dtype float64 in the state dict, float32 in the model",
                       ValueError);
  CHECK(target.state_dict().at("encoder.a.w").to_vector() == before);
  // Non-strict ignores missing and unexpected keys but not mismatches.
  bad.erase("encoder.a.w");
  bad.erase("encoder.b.b");
  bad["head.w"] = full({3}, 2.0);
  target.load_state_dict(bad, /*strict=*/false);
  CHECK(target.head.named_parameters()[0].second.to_vector() == std::vector<double>{2, 2, 2});

  Net uninitialised;
  CHECK_THROWS_WITH_AS(uninitialised.load_state_dict(state, true),
                       doctest::Contains("(the model has no parameters yet: call init(sample_input) first"),
                       ValueError);
}

TEST_CASE("summary lists every module with its output shape and parameters") {
  Net net;
  const std::string table = net.summary(sample());
  CHECK(table ==
        "path       module   input   output          parameters    count  dtype\n"
        "---------  -------  ------  --------------  ------------  -----  -------\n"
        "(root)     Net      [2, 3]  [2, 3] float32  -             0      -\n"
        "encoder    Encoder  [2, 3]  [2, 3] float32  -             0      -\n"
        "encoder.a  Affine   [2, 3]  [2, 3] float32  w [3], b [3]  6      float32\n"
        "encoder.b  Affine   [2, 3]  [2, 3] float32  w [3], b [3]  6      float32\n"
        "head       Affine   [2, 3]  [2, 3] float32  w [3], b [3]  6      float32\n"
        "Total: 18 parameters, 72 bytes\n");
}

TEST_CASE("Sequential names its layers layers_<i> and applies them in order") {
  nn::Sequential seq{std::make_shared<Affine>(), std::make_shared<nn::Lambda>("double", [](const Tensor& x) {
                       return x * 2.0;
                     })};
  seq.add("last", std::make_shared<Affine>());
  CHECK(seq.size() == 3);
  seq.init(sample());
  CHECK(names(seq.named_parameters()) == std::vector<std::string>{"layers_0.w", "layers_0.b", "last.w", "last.b"});
  CHECK(seq[1].describe() == "double");
  // Zero the biases and set the weights to 1: the output is 2x.
  for (auto& [n, p] : seq.named_parameters()) p.fill_(n.back() == 'w' ? 1.0 : 0.0);
  CHECK(seq(sample()).to_vector() == std::vector<double>{2, 4, 6, 8, 10, 12});
  nn::Sequential empty_seq;
  CHECK_THROWS_WITH_AS(empty_seq(sample()), "Sequential: no layers to apply", ValueError);
}

TEST_CASE("the root casts its output to the output dtype when one is set") {
  Net net;
  net.set_output_dtype(DType::Float64);
  CHECK(net(sample()).dtype() == DType::Float64);
  CHECK(net.head(sample()).dtype() == DType::Float32);
}

namespace {

// A module that calls a member it forgot to register.
struct Forgetful : nn::Module {
  Affine registered, forgotten;
  Forgetful() { register_module("registered", registered); }
  Tensor forward(const Tensor& x) override { return forgotten(registered(x)); }
};

struct Holder : nn::Module {
  Forgetful inner;
  Holder() { register_module("inner", inner); }
  Tensor forward(const Tensor& x) override { return inner(x); }
};

// Calls a parameter-free module without registering it: harmless, allowed.
struct UsesLambda : nn::Module {
  nn::Lambda twice{"twice", [](const Tensor& x) { return x * 2.0; }};
  Affine a;
  UsesLambda() { register_module("a", a); }
  Tensor forward(const Tensor& x) override { return a(twice(x)); }
};

}  // namespace

TEST_CASE("an unregistered submodule with parameters is an error naming the calling module's path") {
  Holder model;
  CHECK_THROWS_WITH_AS(model.init(sample()),
                       doctest::Contains("inner (Forgetful): a submodule (Affine) with parameters or buffers [w [3], "
                                         "b [3]] ran inside this forward but was never registered"),
                       ValueError);
  // The same at a plain call, every time (not only at init).
  CHECK_THROWS_AS(model(sample()), ValueError);
  CHECK_THROWS_WITH_AS(model(sample()), doctest::Contains("register_module(\"name\", member)"), ValueError);
  // Parameter-free helpers may stay unregistered; a module run on its own is a root, not an error.
  UsesLambda ok;
  CHECK(ok(sample()).shape() == sample().shape());
  Affine alone;
  CHECK(alone(sample()).shape() == sample().shape());
}

TEST_CASE("shape-mismatch errors and summary() state the input shape a layer was initialised for") {
  struct Seq1d : nn::Module {
    nn::ConvLocal local{{.features = 2, .kernel_size = {3}, .padding = "SAME"}};
    Seq1d() { register_module("local", local); }
    Tensor forward(const Tensor& x) override { return local(x); }
  } model;
  model.init(ones({200, 4}));  // unbatched: Flax treats it as a sequence of 200 positions
  CHECK(model.local.initialised_for() == "[*, 200, 4]");
  CHECK(model(ones({3, 200, 4})).shape() == Shape{3, 200, 2});  // batches of it are fine
  CHECK_THROWS_WITH_AS(model(ones({4, 800})),
                       "local (ConvLocal, features=2, kernel_size=[3]): parameter 'kernel' was created with shape "
                       "[200, 12, 2] but this call needs [4, 2400, 2] (initialised for [*, 200, 4], got [4, 800]: "
                       "input spatial size changed?)",
                       ShapeError);
  const std::string table = model.summary(ones({200, 4}));
  CHECK(table.find("local   ConvLocal, features=2, kernel_size=[3]  [*, 200, 4]") != std::string::npos);
}

TEST_CASE("a module's error does not repeat the layer type the functional code already named") {
  nn::ConvLocal local({.features = 8, .kernel_size = {9}});
  // plan_conv reports "ConvLocal: input of shape ..."; the module prefix already says ConvLocal.
  CHECK_THROWS_WITH_AS(local(ones({5})),
                       doctest::Contains("ConvLocal, features=8, kernel_size=[9]: input of shape [5] has rank 1"),
                       ShapeError);
  const std::string message = test_support::error_of<ShapeError>([&] { local(ones({5})); });
  CHECK(message.find("ConvLocal: ") == std::string::npos);
}
