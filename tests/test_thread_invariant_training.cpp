// Training gives the same bits at any thread count: a few AdamW steps of a small
// Conv -> ConvLocal -> Dense model (the LocalNet of examples/fashion_mnist, smaller)
// leave bitwise-identical parameters and losses at 1 and 2 threads.
#include <vector>

#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

struct Trained {
  optim::NamedTensors params;
  std::vector<double> losses;
};

Trained train(int threads) {
  test_support::ThreadCountGuard guard(threads);
  const auto pool_relu = [](const char* name) {
    return std::make_shared<nn::Lambda>(name, [](const Tensor& x) { return relu(nn::max_pool(x, {2, 2}, {2, 2})); });
  };
  nn::Sequential model{
      std::make_shared<nn::Conv>(nn::ConvOptions{.features = 8, .kernel_size = {3, 3}}), pool_relu("pool1"),
      std::make_shared<nn::ConvLocal>(nn::ConvOptions{.features = 16, .kernel_size = {3, 3}, .padding = "VALID"}),
      pool_relu("pool2"), std::make_shared<nn::Flatten>(), std::make_shared<nn::Dense>(nn::DenseOptions{.features = 10})};
  model.set_seed(7);
  const auto batch = [](std::uint64_t step) { return random_normal(make_key(100 + step), {32, 28, 28, 1}); };
  model.init(batch(0));
  optim::Optimizer opt(model, optim::adamw({.learning_rate = 1e-2, .weight_decay = 1e-2}));
  Trained t;
  for (std::uint64_t step = 0; step < 4; ++step) {
    const Tensor labels = softmax(random_normal(make_key(200 + step), {32, 10}));
    const Tensor loss = losses::softmax_cross_entropy(model(batch(step)), labels, losses::Reduction::Mean);
    opt.zero_grad();
    loss.backward();
    opt.step();
    t.losses.push_back(loss.item());
  }
  t.params = model.named_parameters();
  return t;
}

}  // namespace

TEST_CASE("training: AdamW steps of Conv -> ConvLocal -> Dense give the same bits at 1 and 2 threads") {
  const Trained one = train(1), two = train(2);
  CHECK(one.losses == two.losses);
  REQUIRE(one.params.size() == two.params.size());
  REQUIRE(one.params.size() == 6);
  for (std::size_t k = 0; k < one.params.size(); ++k) {
    CAPTURE(one.params[k].first);
    const test_support::BitDifference d = test_support::bit_difference(one.params[k].second, two.params[k].second);
    CHECK_MESSAGE(d.count == 0, d.count << " of " << one.params[k].second.numel() << " elements differ, by up to "
                                        << d.largest);
  }
}
