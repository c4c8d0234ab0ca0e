// FlushDenormalsGuard (JAX's CPU mode: denormal results and operands count as 0),
// the pool's workers computing in their caller's mode, and the Optimizer's step
// flushing: a first moment whose gradient stays 0 reaches exactly 0, where the
// caller's default mode leaves it stuck among the denormals.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

// volatile: computed at run time, in the current mode, not folded by the compiler.
float times(float a, float b) {
  volatile float x = a, y = b;
  return x * y;
}

constexpr float kDenormal = 1e-39f;  // below FLT_MIN (1.18e-38)

bool denormal(double v) { return v != 0 && std::fabs(v) < std::numeric_limits<float>::min(); }

// One chunk's view: the thread it ran on, whether it flushed, and 1e-39 * 1.
struct ChunkSeen {
  std::thread::id thread;
  bool flushing = false;
  float product = -1;
};

// Two chunks on two threads: each chunk waits (up to 5 s) until the other has
// started, so one thread cannot run both (a worker that comes first could otherwise
// finish its chunk and take the caller's).
std::vector<ChunkSeen> run_two_chunks() {
  std::vector<ChunkSeen> seen(2);
  std::atomic<bool> started[2] = {false, false};
  parallel_for(2, [&](std::int64_t chunk) {
    started[chunk].store(true);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!started[1 - chunk].load() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    auto& s = seen[static_cast<std::size_t>(chunk)];
    s.thread = std::this_thread::get_id();
    s.flushing = flushing_denormals();
    s.product = times(kDenormal, 1.0f);
  });
  return seen;
}

}  // namespace

TEST_CASE("FlushDenormalsGuard flushes denormal results and operands, nests, and restores the mode") {
  if (!flush_denormals_supported()) {
    MESSAGE("skipped: this CPU architecture has no switch xgrad sets (x86 only)");
    return;
  }
  REQUIRE_FALSE(flushing_denormals());
  CHECK(times(kDenormal, 1.0f) == kDenormal);          // gradual underflow by default
  CHECK(denormal(times(1e-30f, 1e-10f)));
  {
    const FlushDenormalsGuard flush;
    CHECK(flushing_denormals());
    CHECK(times(kDenormal, 1.0f) == 0.0f);             // DAZ: a denormal operand reads as 0
    CHECK(times(1e-30f, 1e-10f) == 0.0f);              // FTZ: a denormal result becomes 0
    CHECK(times(1e-20f, 1e-10f) == doctest::Approx(1e-30f));  // normal results are untouched
    {
      const FlushDenormalsGuard keep(false);
      CHECK_FALSE(flushing_denormals());
      CHECK(times(kDenormal, 1.0f) == kDenormal);
    }
    CHECK(flushing_denormals());
  }
  CHECK_FALSE(flushing_denormals());
  CHECK(times(kDenormal, 1.0f) == kDenormal);
  try {  // restored when the scope ends by an exception too
    const FlushDenormalsGuard flush;
    throw ValueError("leaving the scope");
  } catch (const ValueError&) {
  }
  CHECK_FALSE(flushing_denormals());
}

TEST_CASE("parallel_for's workers compute in the caller's floating-point mode") {
  if (!flush_denormals_supported()) {
    MESSAGE("skipped: this CPU architecture has no switch xgrad sets (x86 only)");
    return;
  }
  const test_support::ThreadCountGuard threads(2);
  for (const bool flush : {true, false, true}) {
    CAPTURE(flush);
    const FlushDenormalsGuard mode(flush);
    const std::vector<ChunkSeen> seen = run_two_chunks();
    REQUIRE(seen[0].thread != seen[1].thread);  // a worker ran one of them
    for (const ChunkSeen& s : seen) {
      CHECK(s.flushing == flush);
      CHECK(s.product == (flush ? 0.0f : kDenormal));
    }
  }
  // After the flushing jobs, a job from a caller that does not flush: no thread flushes.
  for (const ChunkSeen& s : run_two_chunks()) {
    CHECK_FALSE(s.flushing);
    CHECK(s.product == kDenormal);
  }
}

TEST_CASE("Optimizer::step flushes denormals: a moment whose gradient stays 0 reaches exactly 0, as under JAX") {
  if (!flush_denormals_supported()) {
    MESSAGE("skipped: this CPU architecture has no switch xgrad sets (x86 only)");
    return;
  }
  // One gradient of 1, then 0 for 900 steps: mu_k = 0.1 * 0.9^(k-1) falls below
  // FLT_MIN after 808 steps. Gradual underflow then sticks: 0.9 * k ulps rounds back
  // to k ulps for k <= 4. Flushed, mu becomes 0 and stays 0. The parameter's value
  // is the same either way (the updates are far below its last bit).
  constexpr int kSteps = 901;
  const auto tx = optim::adam({.learning_rate = 1e-3});
  // through_optimizer false: the functional API, which computes in the caller's mode
  // (flushing when `flush_functional`).
  auto mu_after = [&](bool fused, bool through_optimizer, int threads, bool flush_functional = false) {
    const test_support::ThreadCountGuard thread_count(threads);
    optim::NamedTensors params{{"w", full({70000}, 0.5f).requires_grad_()}};  // above the 2-thread split
    optim::GradientTransformation t = tx;
    if (!fused) t.fused_step = nullptr;
    if (through_optimizer) {
      optim::Optimizer opt(params, t);
      for (int step = 0; step < kSteps; ++step) {
        params[0].second.set_grad(full({70000}, step == 0 ? 1.0f : 0.0f));
        opt.step();
      }
      CHECK_FALSE(flushing_denormals());  // the step restored the caller's mode
      for (const auto& [name, value] : opt.state_dict())
        if (name.ends_with("mu.w")) return std::pair{value, params[0].second};
      FAIL("no mu in the optimizer's state");
    }
    const FlushDenormalsGuard mode(flush_functional);
    optim::OptState state = t.init(params);
    for (int step = 0; step < kSteps; ++step) {
      optim::NamedTensors updates{{"w", full({70000}, step == 0 ? 1.0f : 0.0f)}};
      t.update(updates, state, params);
      optim::apply_updates(params, updates);
    }
    for (const auto& [key, buffer] : state.inner.front().second.buffers)
      if (key == "mu") return std::pair{buffer.front().second, params[0].second};
    FAIL("no mu in the transformation's state");
    return std::pair<Tensor, Tensor>{};
  };
  const auto [stuck, unflushed_w] = mu_after(false, false, 1);
  const std::vector<double> stuck_values = stuck.to_vector();
  CHECK(std::all_of(stuck_values.begin(), stuck_values.end(), denormal));
  CHECK(unflushed_w.to_vector()[0] < 0.5 - 1e-3);  // the first steps moved it
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    for (bool fused : {true, false}) {
      CAPTURE(fused);
      const auto [mu, w] = mu_after(fused, true, threads);
      CHECK(mu.to_vector() == std::vector<double>(70000, 0.0));
      CHECK(w.to_vector() == unflushed_w.to_vector());
    }
  }
  const auto [flushed, flushed_w] = mu_after(false, false, 2, true);  // base.hpp's note on update
  CHECK(flushed.to_vector() == std::vector<double>(70000, 0.0));
  CHECK(flushed_w.to_vector() == unflushed_w.to_vector());
}
