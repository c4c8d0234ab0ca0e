// Two things a user reaches for after the basics.
//
// 1. A custom op through the path autograd/node.hpp recommends: a gradient-reversal
//    layer (identity forward, -lambda * g backward, as in domain-adversarial
//    training) recorded with record(), its VJP checked with gradcheck.
// 2. A float16 mixed-precision training loop with dynamic loss scaling:
//    DynamicLossScale::step unscales the gradients and steps the optimizer, or skips
//    the step and shrinks the scale when a gradient overflowed.
#include <fmt/format.h>

#include "xgrad.hpp"

using namespace xgrad;

// The output is the input itself: record() gives back a new handle on its storage,
// so `h` keeps its own place on the tape.
Tensor grad_reverse(const Tensor& h, double lambda) {
  return record("grad_reverse", h, {h}, [lambda](const Tensor& g, const Tensor&) -> Grads { return {g * -lambda}; },
                Saves::Nothing);
}

struct Classifier : nn::Module {
  nn::Dense hidden{{.features = 32}}, head{{.features = 2}};
  Classifier() {
    register_module("hidden", hidden);
    register_module("head", head);
  }
  Tensor forward(const Tensor& x) override { return head(nn::relu(hidden(x))); }
};

bool check_custom_op() {
  const Tensor x = random_normal(make_key(0), {3, 4});
  // With lambda = -1 the op is the identity both ways: gradcheck must pass.
  const GradcheckReport identity =
      gradcheck([](const std::vector<Tensor>& in) { return grad_reverse(in[0], -1.0); }, {x});
  fmt::print("grad_reverse, lambda = -1:  {}\n", identity.to_string());
  // With lambda = 0.5 the VJP is -0.5 times the true derivative, by design: gradcheck
  // reports it, and the ratio analytic / numeric is exactly -lambda.
  const GradcheckReport reversed =
      gradcheck([](const std::vector<Tensor>& in) { return grad_reverse(in[0], 0.5); }, {x});
  const double ratio = reversed.analytic / reversed.numeric;
  fmt::print("grad_reverse, lambda = 0.5: analytic / numeric at the worst entry = {:.6f} (expected -0.5)\n", ratio);

  // In a graph: the features get the reversed gradient, the leaf stays a leaf.
  Tensor w = random_normal(make_key(1), {4}).requires_grad_();
  Tensor features = x * w;
  Tensor loss = square(grad_reverse(features, 0.5)).sum();
  loss.backward();
  const Tensor expected = sum(2.0 * features * x, {0}) * -0.5;  // d/dw of the reversed objective
  const bool graph_ok = w.is_leaf() && w.grad().defined() &&
                        max(abs(w.grad() - expected.detach())).item() < 1e-5;
  fmt::print("grad_reverse inside a graph: gradient {}\n", graph_ok ? "as expected" : "WRONG");
  return identity.ok && std::abs(ratio + 0.5) < 1e-6 && graph_ok;
}

bool train_float16() {
  // Two Gaussian blobs, labels drawn with random_randint; no raw pointers.
  const std::int64_t n = 512;
  const Tensor labels = random_randint(make_key(2), {n}, 0, 2);
  const Tensor centres = zeros({2, 2}).at({0}).set(from_vector({-1.5, 0.5}, {2})).at({1}).set(from_vector({1.5, -0.5}, {2}));
  const Tensor x = random_normal(make_key(3), {n, 2}) + take(centres, labels, 0);

  Classifier model;
  nn::apply_policy(model, nn::parse_policy("params=float32,compute=float16"));
  model.init(x);
  optim::Optimizer opt(model, optim::adam({.learning_rate = 1e-2}));
  // Deliberately too large (float16 overflows above 65504): the first steps are skipped.
  nn::DynamicLossScale scaler({.initial_scale = 1 << 24, .growth_interval = 50});
  int skipped = 0;
  double first_loss = 0, last_loss = 0;
  for (int step = 0; step < 200; ++step) {
    const Tensor logits = model(x);  // float16
    const Tensor loss = losses::softmax_cross_entropy(logits, labels, losses::Reduction::Mean);  // float32
    opt.zero_grad();
    scaler.scale(loss).backward();
    if (!scaler.step(opt, model)) ++skipped;
    if (step == 0) first_loss = loss.item();
    last_loss = loss.item();
    if (step % 50 == 0 || step == 199)
      fmt::print("step {:3d}  loss {:.4f} ({} logits, {} loss)  scale {:g}  skipped so far {}\n", step, loss.item(),
                 dtype_name(logits.dtype()), dtype_name(loss.dtype()), scaler.loss_scale(), skipped);
  }
  NoGradGuard no_grad;
  const double accuracy = losses::accuracy(model(x), labels);
  fmt::print("float16 training: loss {:.4f} -> {:.4f}, {} steps skipped, accuracy {:.1f}%\n", first_loss, last_loss,
             skipped, 100 * accuracy);
  return skipped > 0 && last_loss < first_loss && accuracy > 0.85;
}

int main() {
  const bool op_ok = check_custom_op();
  const bool training_ok = train_float16();
  return op_ok && training_ok ? 0 : 1;
}
