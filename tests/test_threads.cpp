// Independent computations on separate threads: each thread builds its own graph
// (or model), runs forward and backward, and gets exactly the single-threaded
// result. Grad and anomaly modes and the conv scratch buffers are thread-local, so
// threads do not see each other. scripts/tsan runs this file under ThreadSanitizer.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "xgrad.hpp"
#include "test_support.hpp"

using namespace xgrad;

namespace {

constexpr int kThreads = 4;
constexpr int kSteps = 150;  // each step records 4 ops: a 600-op graph per thread

struct Outcome {
  std::vector<double> loss_and_grad;  // loss, then d loss / d x
  bool recorded_under_no_grad = true;
  std::string error;
};

// y_0 = x, y_{k+1} = (y_k * 0.5 + x) - x / 4, loss = mean(y_n * x). Then
// y_n = c x with c = r^n + (1 - r^n) / (1 - r) * 0.75, r = 0.5, and
// d loss / d x = 2 c x / size(x).
Outcome run(int id) {
  Outcome out;
  try {
    const Shape shape = {3, 5};
    std::vector<double> values(15);
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = 0.1 * static_cast<double>(i) - 0.7 + id;
    Tensor x = from_vector(values, shape, DType::Float64).requires_grad_();
    Tensor y = x;
    for (int k = 0; k < kSteps; ++k) y = (y * 0.5 + x) - x / 4.0;
    Tensor loss = mean(y * x);
    loss.backward();
    out.loss_and_grad.push_back(loss.item());
    for (double g : x.grad().to_vector()) out.loss_and_grad.push_back(g);
    {
      NoGradGuard no_grad;  // only this thread stops recording
      out.recorded_under_no_grad = (x * 2.0).requires_grad();
    }
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

std::vector<double> expected(int id) {
  const double r = 0.5, rn = std::pow(r, kSteps);
  const double c = rn + (1 - rn) / (1 - r) * 0.75;
  double loss = 0;
  std::vector<double> grad;
  for (int i = 0; i < 15; ++i) {
    const double x = 0.1 * i - 0.7 + id;
    loss += c * x * x / 15;
    grad.push_back(2 * c * x / 15);
  }
  grad.insert(grad.begin(), loss);
  return grad;
}

}  // namespace

TEST_CASE("independent graphs run forward and backward on four threads at once") {
  std::vector<Outcome> outcomes(kThreads);
  std::vector<std::thread> threads;
  std::vector<char> rounds_agree(kThreads, 1);  // not vector<bool>: its bits share bytes across threads
  for (int id = 0; id < kThreads; ++id)
    threads.emplace_back([&outcomes, &rounds_agree, id] {
      outcomes[id] = run(id);
      for (int round = 1; round < 3; ++round)  // more rounds: more overlap between the threads
        rounds_agree[id] = rounds_agree[id] && run(id).loss_and_grad == outcomes[id].loss_and_grad;
    });
  // Meanwhile this thread keeps recording: other threads' NoGradGuards must not leak here.
  Tensor z = ones({2}, DType::Float64).requires_grad_();
  for (int k = 0; k < 200; ++k) CHECK((z * 3.0).requires_grad());
  for (auto& t : threads) t.join();

  for (int id = 0; id < kThreads; ++id) {
    CAPTURE(id);
    const Outcome& o = outcomes[id];
    REQUIRE(o.error.empty());
    CHECK_FALSE(o.recorded_under_no_grad);
    CHECK(rounds_agree[id]);
    const std::vector<double> want = expected(id);
    REQUIRE(o.loss_and_grad.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) CHECK(o.loss_and_grad[i] == doctest::Approx(want[i]).epsilon(1e-12));
    // Every thread does the same floating-point operations as a single-threaded run.
    CHECK(o.loss_and_grad == run(id).loss_and_grad);
  }
}

namespace {

// A small model touching the stateful parts: lazy parameter creation, conv scratch
// buffers, the AVX2 ConvLocal path, pooling, cblas matmuls, an optimizer's state.
struct SmallNet : nn::Module {
  nn::Conv conv{{.features = 4, .kernel_size = {3, 3}}};
  nn::ConvLocal local{{.features = 8, .kernel_size = {3, 3}, .padding = "VALID"}};  // the AVX2 path
  nn::Dense head{{.features = 3}};
  SmallNet() {
    register_module("conv", conv);
    register_module("local", local);
    register_module("head", head);
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = nn::relu(conv(x));
    h = nn::max_pool(nn::relu(local(h)), {2, 2}, {2, 2});
    return head(flatten(h, 1));
  }
};

// Losses of a few SGD steps on fixed data; a pure function of `seed`.
std::vector<double> train(std::uint64_t seed) {
  SmallNet net;
  net.set_seed(seed);
  const Tensor x = random_normal(make_key(seed + 100), {4, 12, 12, 2});
  const Tensor labels = from_vector({0, 1, 2, 1}, {4}, DType::Int64);
  optim::Optimizer opt(net, optim::sgd({.learning_rate = 0.05}));
  std::vector<double> losses;
  for (int step = 0; step < 4; ++step) {
    Tensor loss = losses::softmax_cross_entropy(net(x), labels, losses::Reduction::Mean);
    opt.zero_grad();
    loss.backward();
    opt.step();
    losses.push_back(loss.item());
  }
  return losses;
}

// Runs body(id) on kThreads threads at once; each thread's exception message ("" if none).
std::vector<std::string> on_threads(const std::function<void(int)>& body) {
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id)
    threads.emplace_back([&, id] {
      try {
        body(id);
      } catch (const std::exception& e) {
        errors[id] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

}  // namespace

TEST_CASE("small conv models train on four threads at once, each exactly as alone") {
  // Four user threads whose kernels also split their work over xgrad's pool, of
  // 2 threads; scripts/tsan pins one (XGRAD_NUM_THREADS=1): OpenBLAS's own pool,
  // which follows xgrad's count, is not instrumented and would look racy.
  const test_support::ThreadCountGuard thread_count(std::getenv("XGRAD_NUM_THREADS") ? xgrad::num_threads() : 2);
  std::vector<std::vector<double>> alone;
  for (int id = 0; id < kThreads; ++id) alone.push_back(train(static_cast<std::uint64_t>(id)));
  std::vector<std::vector<double>> together(kThreads);
  const std::vector<std::string> errors = on_threads([&](int id) { together[id] = train(static_cast<std::uint64_t>(id)); });
  for (int id = 0; id < kThreads; ++id) {
    CAPTURE(id);
    REQUIRE(errors[id].empty());
    CHECK(together[id] == alone[id]);
    CHECK(alone[id].back() < alone[id].front());  // it trains
  }
}

TEST_CASE("one initialised model runs inference on four threads at once, each batch exactly as alone") {
  // The Module's thread-safety note: in eval mode under NoGradGuard, an initialised
  // module may run on several threads at once. The LocalNet shape of the main job
  // (conv, pool + ReLU fused by the Sequential, ConvLocal on the fast kernels,
  // Dense), plus a thread whose input has the wrong size: its error names its own
  // input, not another thread's.
  const test_support::ThreadCountGuard thread_count(std::getenv("XGRAD_NUM_THREADS") ? xgrad::num_threads() : 2);
  nn::Sequential net({std::make_shared<nn::Conv>(nn::ConvOptions{.features = 8, .kernel_size = {3, 3}}),
                      std::make_shared<nn::MaxPool>(nn::PoolOptions{.window_shape = {2, 2}, .strides = {2, 2}}),
                      std::make_shared<nn::ReLU>(),
                      std::make_shared<nn::ConvLocal>(
                          nn::ConvOptions{.features = 16, .kernel_size = {3, 3}, .padding = "VALID"}),
                      std::make_shared<nn::ReLU>(), std::make_shared<nn::Flatten>(),
                      std::make_shared<nn::Dense>(nn::DenseOptions{.features = 10})});
  net.init(random_uniform(make_key(7), {1, 16, 16, 1}));
  net.eval();
  constexpr int kBatches = 3;
  auto batch = [](int thread, int b) {
    return random_uniform(make_key(static_cast<std::uint64_t>(100 * thread + b)), {8, 16, 16, 1});
  };
  std::vector<std::vector<std::vector<double>>> alone(kThreads), together(kThreads);
  {
    NoGradGuard no_grad;
    for (int id = 0; id < kThreads; ++id)
      for (int b = 0; b < kBatches; ++b) alone[id].push_back(net(batch(id, b)).to_vector());
  }
  std::string wrong_size_error;  // thread 0's
  const std::vector<std::string> errors = on_threads([&](int id) {
    NoGradGuard no_grad;  // per thread
    for (int b = 0; b < kBatches; ++b) {
      together[id].push_back(net(batch(id, b)).to_vector());
      if (id == 0) wrong_size_error = test_support::error_of<Error>([&] { net(batch(id, b).reshape({8, 8, 32, 1})); });
    }
  });
  for (int id = 0; id < kThreads; ++id) {
    CAPTURE(id);
    REQUIRE(errors[id].empty());
    CHECK(together[id] == alone[id]);
  }
  // The ConvLocal sees the pooled [8, 4, 16, 8] of this thread's [8, 8, 32, 1].
  CHECK(wrong_size_error.find("got [8, 4, 16, 8]") != std::string::npos);
  CHECK(wrong_size_error.find("ConvLocal") != std::string::npos);
}
