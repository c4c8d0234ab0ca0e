// Fit sin(x) on [-pi, pi] with a small MLP: the whole training loop of xgrad in one page.
#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "xgrad.hpp"

using namespace xgrad;

// A model is a Module: register the layers, say what forward does.
struct SineNet : nn::Module {
  nn::Dense hidden1{{.features = 32}}, hidden2{{.features = 32}}, out{{.features = 1}};
  SineNet() {
    register_module("hidden1", hidden1);
    register_module("hidden2", hidden2);
    register_module("out", out);
  }
  Tensor forward(const Tensor& x) override { return out(tanh(hidden2(tanh(hidden1(x))))); }
};

int main() {
  // 256 points x in [-pi, pi], targets sin(x); shape [256, 1].
  const Tensor x = reshape(arange(-std::numbers::pi, std::numbers::pi, 2 * std::numbers::pi / 256), {-1, 1});
  const Tensor y = sin(x);

  SineNet model;
  model.init(x);  // parameters are created from the first input's shape
  optim::Optimizer opt(model, optim::adam({.learning_rate = 1e-2}));
  for (int step = 0; step <= 2000; ++step) {
    Tensor loss = losses::mse(model(x), y, losses::Reduction::Mean);
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step % 500 == 0) fmt::print("step {:4d}  mse {:.6f}\n", step, loss.item());
  }
  NoGradGuard no_grad;
  const Tensor probe = from_vector({0.5, 1.5}, {2, 1});
  const Tensor prediction = model(probe);
  fmt::print("sin(0.5) = {:.4f}, model {:.4f}; sin(1.5) = {:.4f}, model {:.4f}\n", std::sin(0.5),
             double(prediction.at({0, 0})), std::sin(1.5), double(prediction.at({1, 0})));
}
