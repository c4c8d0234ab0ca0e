// nn::RNN and nn::Bidirectional: the options of flax.linen.RNN (time_major,
// reverse, keep_order, return_carry, seq_lengths, initial_carry) against the cell
// stepped by hand, the fused LSTM sequence against the step-by-step path,
// gradchecks in float64 (both directions, seq_lengths, return_carry), PyTorch 1.13
// nn.LSTM / nn.GRU reference values (tests/data/rnn/make_torch_reference.py), a
// 10,000-step sequence trained without deep recursion, and the typed errors.
#include <cmath>
#include <memory>

#include <doctest/doctest.h>

#include "test_support.hpp"
#include "xgrad.hpp"

using namespace xgrad;

namespace {

void fill_params(nn::Module& m, double scale = 0.4) {
  int k = 0;
  for (auto& [name, t] : m.state_dict()) {
    std::vector<double> v(static_cast<std::size_t>(t.numel()));
    for (auto& e : v) e = scale * std::sin(1.7 * ++k + 0.3);
    t.copy_(from_vector(v, t.shape(), t.dtype()));
  }
}

Tensor pattern(const Shape& shape, double phase, double scale = 0.8) {
  std::vector<double> v(static_cast<std::size_t>(numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = scale * std::cos(0.9 * static_cast<double>(i) + phase);
  return from_vector(v, shape, DType::Float64);
}

void check_close(const Tensor& a, const Tensor& b, double tol = 1e-12) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> va = a.to_vector(), vb = b.to_vector();
  double worst = 0;
  for (std::size_t i = 0; i < va.size(); ++i) worst = std::max(worst, std::abs(va[i] - vb[i]));
  CHECK_MESSAGE(worst <= tol, "largest difference ", worst);
}

// x [B, T, F] row b, steps [from, to) in the given order, through the cell by hand.
struct ByHand {
  std::vector<Tensor> outputs;  // [H] per processed step
  nn::Carry carry;              // [H] each
};
ByHand run_by_hand(nn::RNNCellBase& cell, const Tensor& x, std::int64_t b, const std::vector<std::int64_t>& steps,
                   nn::Carry carry) {
  ByHand r;
  for (Tensor& t : carry) t = reshape(t, {1, -1});
  for (std::int64_t t : steps) {
    auto [next, y] = cell(carry, reshape(x.at({b, t}).get(), {1, -1}));
    carry = next;
    r.outputs.push_back(reshape(y, {-1}));
  }
  for (Tensor& t : carry) r.carry.push_back(reshape(t, {-1}));
  return r;
}

std::vector<std::int64_t> range(std::int64_t from, std::int64_t to, bool reversed = false) {
  std::vector<std::int64_t> r;
  for (std::int64_t t = from; t < to; ++t) r.push_back(t);
  if (reversed) std::reverse(r.begin(), r.end());
  return r;
}

template <class Cell, class Options>
std::shared_ptr<nn::RNNCellBase> make_cell(std::int64_t features) {
  return std::make_shared<Cell>(Options{.features = features, .param_dtype = DType::Float64});
}

}  // namespace

TEST_CASE("RNN runs the cell over time with Flax's options") {
  for (int kind = 0; kind < 3; ++kind) {
    CAPTURE(kind);
    auto cell = kind == 0   ? make_cell<nn::LSTMCell, nn::LSTMCellOptions>(3)
                : kind == 1 ? make_cell<nn::OptimizedLSTMCell, nn::LSTMCellOptions>(3)
                            : make_cell<nn::GRUCell, nn::GRUCellOptions>(3);
    nn::RNN rnn(cell);
    const Tensor x = pattern({2, 4, 5}, 0.3);
    const Tensor y = rnn(x);
    REQUIRE(y.shape() == Shape{2, 4, 3});
    fill_params(rnn, 0.5);
    CHECK(rnn.named_parameters().front().first.rfind("cell.", 0) == 0);
    const nn::Carry zero = cell->initialize_carry(make_key(0), {3});
    const std::vector<std::int64_t> lengths{4, 2};
    const Tensor seq_lengths = from_vector({4, 2}, {2}, DType::Int64);

    {
      INFO("forward, return_carry, time_major");
      auto [carry, ys] = rnn(x, {.return_carry = true});
      for (std::int64_t b = 0; b < 2; ++b) {
        const ByHand ref = run_by_hand(*cell, x, b, range(0, 4), zero);
        for (std::int64_t t = 0; t < 4; ++t) check_close(ys.at({b, t}).get(), ref.outputs[static_cast<std::size_t>(t)]);
        for (std::size_t k = 0; k < carry.size(); ++k) check_close(carry[k].at({b}).get(), ref.carry[k]);
      }
      check_close(rnn(swapaxes(x, 0, 1), {.time_major = true}).outputs, swapaxes(ys, 0, 1));
      // The option, on a second RNN whose cell holds the same parameters.
      auto twin = kind == 2 ? make_cell<nn::GRUCell, nn::GRUCellOptions>(3) : make_cell<nn::LSTMCell, nn::LSTMCellOptions>(3);
      nn::RNN time_major(twin, {.time_major = true});
      time_major(swapaxes(x, 0, 1));
      time_major.load_state_dict(rnn.state_dict());
      check_close(time_major(swapaxes(x, 0, 1)), swapaxes(ys, 0, 1));
    }
    {
      INFO("reverse and keep_order, with and without seq_lengths");
      auto reversed = rnn(x, {.return_carry = true, .reverse = true});
      auto kept = rnn(x, {.reverse = true, .keep_order = true});
      auto padded = rnn(x, {.seq_lengths = seq_lengths, .return_carry = true, .reverse = true});
      auto padded_kept = rnn(x, {.seq_lengths = seq_lengths, .reverse = true, .keep_order = true});
      for (std::int64_t b = 0; b < 2; ++b) {
        const ByHand full = run_by_hand(*cell, x, b, range(0, 4, true), zero);
        const std::int64_t len = lengths[static_cast<std::size_t>(b)];
        const ByHand part = run_by_hand(*cell, x, b, range(0, len, true), zero);
        for (std::int64_t t = 0; t < 4; ++t) {
          check_close(reversed.outputs.at({b, t}).get(), full.outputs[static_cast<std::size_t>(t)]);
          check_close(kept.outputs.at({b, 3 - t}).get(), full.outputs[static_cast<std::size_t>(t)]);
        }
        for (std::int64_t t = 0; t < len; ++t) {
          check_close(padded.outputs.at({b, t}).get(), part.outputs[static_cast<std::size_t>(t)]);
          check_close(padded_kept.outputs.at({b, len - 1 - t}).get(), part.outputs[static_cast<std::size_t>(t)]);
        }
        for (std::size_t k = 0; k < full.carry.size(); ++k) {
          check_close(reversed.carry[k].at({b}).get(), full.carry[k]);
          check_close(padded.carry[k].at({b}).get(), part.carry[k]);
        }
      }
    }
    {
      INFO("seq_lengths select each sequence's last valid carry; outputs at padding are not zeroed");
      auto [carry, ys] = rnn(x, {.seq_lengths = seq_lengths, .return_carry = true});
      check_close(ys, rnn(x));
      for (std::int64_t b = 0; b < 2; ++b) {
        const ByHand ref = run_by_hand(*cell, x, b, range(0, lengths[static_cast<std::size_t>(b)]), zero);
        for (std::size_t k = 0; k < carry.size(); ++k) check_close(carry[k].at({b}).get(), ref.carry[k]);
      }
    }
    {
      INFO("initial_carry and extra batch dims");
      nn::Carry initial = cell->initialize_carry(make_key(0), {2, 5});
      for (std::size_t k = 0; k < initial.size(); ++k) initial[k] = pattern({2, 3}, 0.5 + static_cast<double>(k));
      auto [carry, ys] = rnn(x, {.initial_carry = initial, .return_carry = true});
      for (std::int64_t b = 0; b < 2; ++b) {
        nn::Carry start;
        for (const Tensor& t : initial) start.push_back(t.at({b}).get());
        const ByHand ref = run_by_hand(*cell, x, b, range(0, 4), start);
        check_close(ys.at({b, 3}).get(), ref.outputs.back());
      }
      const Tensor y4 = rnn(reshape(x, {2, 1, 4, 5}));
      CHECK(y4.shape() == Shape{2, 1, 4, 3});
      check_close(reshape(y4, {2, 4, 3}), rnn(x));
      check_close(rnn(x.at({0}).get()), rnn(x).at({0}).get());  // [time, features]: no batch dims
    }
  }
}

TEST_CASE("RNN's fused LSTM sequence matches stepping the cell on the tape, values and gradients") {
  auto cell = make_cell<nn::LSTMCell, nn::LSTMCellOptions>(4);
  nn::RNN rnn(cell);
  const Tensor x = pattern({3, 6, 2}, 0.1);
  rnn(x);
  fill_params(rnn, 0.7);
  const nn::NamedTensors params = rnn.named_parameters();
  // Reference: the cell stepped by hand, each step recorded on the tape.
  auto stepped = [&](const Tensor& input) {
    nn::Carry carry = cell->initialize_carry(make_key(0), {3, 2});
    std::vector<Tensor> ys;
    for (std::int64_t t = 0; t < 6; ++t) {
      auto [next, y] = (*cell)(carry, squeeze(slice(input, 1, t, t + 1), {1}));
      carry = next;
      ys.push_back(y);
    }
    return stack(ys, 1);
  };
  Tensor xg = x.clone().requires_grad_();
  const Tensor y_fused = rnn(xg), y_stepped = stepped(xg);
  check_close(y_fused, y_stepped, 1e-14);
  const Tensor w = pattern(y_fused.shape(), 2.0);
  std::vector<Tensor> wrt{xg};
  for (const auto& [name, t] : params) wrt.push_back(t);
  const auto g_fused = grad({sum(y_fused * w)}, wrt), g_stepped = grad({sum(y_stepped * w)}, wrt);
  for (std::size_t k = 0; k < wrt.size(); ++k) check_close(g_fused[k], g_stepped[k], 1e-13);
  // float32 runs the same kernels.
  nn::RNN rnn32(std::make_shared<nn::LSTMCell>(nn::LSTMCellOptions{.features = 4}));
  rnn32(x.astype(DType::Float32));
  for (const auto& [name, t] : rnn.state_dict()) rnn32.state_dict().at(name).copy_(t);
  const Tensor y32 = rnn32(x.astype(DType::Float32));
  CHECK(y32.dtype() == DType::Float32);
  check_close(y32.astype(DType::Float64), y_fused, 1e-6);
}

TEST_CASE("RNN and Bidirectional: gradcheck in float64 w.r.t. inputs, initial carry and parameters") {
  const Tensor x = pattern({2, 3, 2}, 0.6);
  const Tensor seq_lengths = from_vector({3, 2}, {2}, DType::Int64);
  for (int kind = 0; kind < 2; ++kind) {
    CAPTURE(kind);
    auto cell = kind == 0 ? make_cell<nn::LSTMCell, nn::LSTMCellOptions>(2) : make_cell<nn::GRUCell, nn::GRUCellOptions>(2);
    nn::RNN rnn(cell);
    rnn(x);
    fill_params(rnn, 0.6);
    const nn::NamedTensors params = rnn.named_parameters();
    nn::Carry initial = cell->initialize_carry(make_key(0), {2, 2});
    for (std::size_t k = 0; k < initial.size(); ++k) initial[k] = pattern({2, 2}, 1.5 + static_cast<double>(k));
    std::vector<Tensor> inputs{x};
    inputs.insert(inputs.end(), initial.begin(), initial.end());
    for (const auto& [name, t] : params) inputs.push_back(t.detach().clone());
    const std::size_t n_carry = initial.size();
    for (int variant = 0; variant < 4; ++variant) {
      CAPTURE(variant);
      auto f = [&](const std::vector<Tensor>& in) {
        nn::StateDict substitutes;
        for (std::size_t i = 0; i < params.size(); ++i) substitutes[params[i].first] = in[1 + n_carry + i];
        return rnn.functional_call(substitutes, [&] {
          nn::RNNCall call{.initial_carry = nn::Carry(in.begin() + 1, in.begin() + 1 + static_cast<std::ptrdiff_t>(n_carry)),
                           .return_carry = true};
          if (variant >= 1) call.reverse = true;
          if (variant == 2) call.keep_order = true;
          if (variant >= 2) call.seq_lengths = seq_lengths;
          if (variant == 3) call.time_major = true;
          auto [carry, ys] = rnn(variant == 3 ? swapaxes(in[0], 0, 1) : in[0], call);
          std::vector<Tensor> parts{reshape(ys, {-1})};
          for (const Tensor& t : carry) parts.push_back(reshape(t, {-1}));
          return concat(parts, 0);
        });
      };
      const GradcheckReport r = gradcheck(f, inputs);
      CHECK_MESSAGE(r.ok, r.to_string());
    }
  }
  SUBCASE("Bidirectional") {
    nn::RNN fwd(make_cell<nn::LSTMCell, nn::LSTMCellOptions>(2)), bwd(make_cell<nn::GRUCell, nn::GRUCellOptions>(2));
    nn::Bidirectional bi(fwd, bwd);
    CHECK(bi(x).shape() == Shape{2, 3, 4});
    fill_params(bi, 0.6);
    const nn::NamedTensors params = bi.named_parameters();
    CHECK(params.front().first == "forward_rnn.cell.ii.kernel");
    std::vector<Tensor> inputs{x};
    for (const auto& [name, t] : params) inputs.push_back(t.detach().clone());
    auto f = [&](const std::vector<Tensor>& in) {
      nn::StateDict substitutes;
      for (std::size_t i = 0; i < params.size(); ++i) substitutes[params[i].first] = in[1 + i];
      return bi.functional_call(substitutes, [&] {
        auto out = bi(in[0], {.seq_lengths = seq_lengths, .return_carry = true});
        std::vector<Tensor> parts{reshape(out.outputs, {-1})};
        for (const Tensor& t : out.carry_forward) parts.push_back(reshape(t, {-1}));
        for (const Tensor& t : out.carry_backward) parts.push_back(reshape(t, {-1}));
        return concat(parts, 0);
      });
    };
    const GradcheckReport r = gradcheck(f, inputs);
    CHECK_MESSAGE(r.ok, r.to_string());
  }
}

TEST_CASE("lstm_sequence: gradgradcheck through the replayed backward") {
  const Tensor xp = pattern({3, 2, 8}, 0.2, 1.0), wh = pattern({2, 8}, 1.2, 0.5), b = pattern({8}, 0.4, 0.3),
               c0 = pattern({2, 2}, 2.2), h0 = pattern({2, 2}, 3.1);
  test_support::check_first_and_second_order(
      "lstm_sequence",
      [](const std::vector<Tensor>& in) { return lstm_sequence(in[0], in[1], in[2], in[3], in[4]); },
      {xp, wh, b, c0, h0});
  CHECK_THROWS_AS(lstm_sequence(xp, pattern({2, 7}, 0), b, c0, h0), ShapeError);
  CHECK_THROWS_AS(lstm_sequence(xp, wh, b, c0.astype(DType::Float32), h0), DTypeError);
}

TEST_CASE("Bidirectional merges a forward and a reversed, re-ordered RNN") {
  nn::RNN fwd(make_cell<nn::LSTMCell, nn::LSTMCellOptions>(3)), bwd(make_cell<nn::LSTMCell, nn::LSTMCellOptions>(3));
  nn::Bidirectional bi(fwd, bwd);
  const Tensor x = pattern({2, 4, 5}, 0.3);
  const Tensor seq_lengths = from_vector({4, 3}, {2}, DType::Int64);
  auto out = bi(x, {.seq_lengths = seq_lengths, .return_carry = true});
  auto f = fwd(x, {.seq_lengths = seq_lengths, .return_carry = true});
  auto b = bwd(x, {.seq_lengths = seq_lengths, .return_carry = true, .reverse = true, .keep_order = true});
  check_close(out.outputs, concat({f.outputs, b.outputs}, -1));
  REQUIRE(out.carry_backward.size() == 2);
  check_close(out.carry_backward[1], b.carry[1]);
  // merge_fn, on two more RNNs holding the same parameters.
  nn::RNN fwd2(make_cell<nn::LSTMCell, nn::LSTMCellOptions>(3)), bwd2(make_cell<nn::LSTMCell, nn::LSTMCellOptions>(3));
  nn::Bidirectional summed(fwd2, bwd2, {.merge_fn = [](const Tensor& a, const Tensor& c) { return a + c; }});
  summed(x);
  summed.load_state_dict(bi.state_dict());
  check_close(summed(x), fwd(x) + bwd(x, {.reverse = true, .keep_order = true}).outputs);
  CHECK(bi(x, {}).carry_forward.empty());
}

TEST_CASE("RNN and Bidirectional match PyTorch 1.13 nn.LSTM / nn.GRU in float64") {
  const auto ref = load_npz(std::string(XGRAD_TEST_DATA) + "/rnn/torch_reference.npz");
  const Tensor x = ref.at("x");
  auto load = [&](nn::Module& m, const std::string& prefix) {
    nn::StateDict state;
    for (const auto& [name, t] : ref)
      if (name.rfind(prefix, 0) == 0 && (name.find(".kernel") != std::string::npos || name.find(".bias") != std::string::npos))
        state[name.substr(prefix.size())] = t;
    m.load_state_dict(state);
  };
  SUBCASE("LSTM with an initial carry") {
    nn::RNN rnn(make_cell<nn::LSTMCell, nn::LSTMCellOptions>(6));
    rnn(x);
    load(rnn, "lstm/");
    auto [carry, y] = rnn(x, {.initial_carry = {ref.at("c0"), ref.at("h0")}, .return_carry = true});
    check_close(y, ref.at("lstm/y"), 1e-12);
    check_close(carry[0], ref.at("lstm/cn"), 1e-12);
    check_close(carry[1], ref.at("lstm/hn"), 1e-12);
  }
  SUBCASE("GRU") {
    nn::RNN rnn(make_cell<nn::GRUCell, nn::GRUCellOptions>(6));
    rnn(x);
    load(rnn, "gru/");
    auto [carry, y] = rnn(x, {.initial_carry = {ref.at("h0")}, .return_carry = true});
    check_close(y, ref.at("gru/y"), 1e-12);
    check_close(carry[0], ref.at("gru/hn"), 1e-12);
  }
  const Tensor lengths = ref.at("lengths");
  for (const std::string name : {"bilstm", "bigru"}) {
    CAPTURE(name);
    const bool lstm = name == "bilstm";
    nn::RNN fwd(lstm ? make_cell<nn::LSTMCell, nn::LSTMCellOptions>(6) : make_cell<nn::GRUCell, nn::GRUCellOptions>(6));
    nn::RNN bwd(lstm ? make_cell<nn::LSTMCell, nn::LSTMCellOptions>(6) : make_cell<nn::GRUCell, nn::GRUCellOptions>(6));
    nn::Bidirectional bi(fwd, bwd);
    bi(x);
    load(bi, name + "/");
    auto out = bi(x, {.seq_lengths = lengths, .return_carry = true});
    // torch zeroes the outputs at padding; compare the valid steps.
    const Tensor expected = ref.at(name + "/y");
    const std::vector<double> len = lengths.to_vector();
    for (std::int64_t b = 0; b < x.size(0); ++b)
      for (std::int64_t t = 0; t < static_cast<std::int64_t>(len[static_cast<std::size_t>(b)]); ++t)
        check_close(out.outputs.at({b, t}).get(), expected.at({b, t}).get(), 1e-12);
    const std::size_t h = lstm ? 1 : 0;
    check_close(out.carry_forward[h], ref.at(name + "/hn_forward"), 1e-12);
    check_close(out.carry_backward[h], ref.at(name + "/hn_backward"), 1e-12);
    if (lstm) {
      check_close(out.carry_forward[0], ref.at(name + "/cn_forward"), 1e-12);
      check_close(out.carry_backward[0], ref.at(name + "/cn_backward"), 1e-12);
    }
  }
}

TEST_CASE("RNN trains on a 10,000-step sequence without deep recursion") {
  // Backward through time is a loop (the fused LSTM op) or the engine's iterative
  // sweep over 10,000 steps of nodes (GRU): either would overflow the stack if it recursed.
  const std::int64_t steps = 10000;
  const Tensor x = pattern({1, steps, 2}, 0.1, 0.5).astype(DType::Float32);
  for (int kind = 0; kind < 2; ++kind) {
    CAPTURE(kind);
    std::shared_ptr<nn::RNNCellBase> cell;
    if (kind == 0) cell = std::make_shared<nn::LSTMCell>(nn::LSTMCellOptions{.features = 4});
    else cell = std::make_shared<nn::GRUCell>(nn::GRUCellOptions{.features = 4});
    nn::RNN rnn(cell);
    rnn.init(x);
    optim::Optimizer opt(rnn, optim::sgd({.learning_rate = 0.05}));
    Tensor loss = mean(square(rnn(x) - 0.25));
    opt.zero_grad();
    loss.backward();
    double norm = 0;
    for (const Tensor& p : rnn.parameters()) norm += sum(square(p.grad())).item();
    CHECK(std::isfinite(norm));
    CHECK(norm > 0);
    opt.step();
    NoGradGuard no_grad;
    CHECK(mean(square(rnn(x) - 0.25)).item() < loss.item());
  }
}

TEST_CASE("RNN: typed errors for carries, feature counts and seq_lengths") {
  nn::RNN rnn(std::make_shared<nn::LSTMCell>(nn::LSTMCellOptions{.features = 3}));
  const Tensor x = ones({2, 4, 5});
  rnn(x);
  CHECK_THROWS_WITH_AS(rnn(x, {.initial_carry = {ones({2, 3})}}),
                       "RNN, cell=LSTMCell, features=3: initial_carry [[2, 3]] does not match the carry [[2, 3], [2, 3]] "
                       "of LSTMCell, features=3 for inputs [2, 4, 5]",
                       ShapeError);
  CHECK_THROWS_AS(rnn(x, {.initial_carry = {ones({2, 4}), ones({2, 4})}}), ShapeError);
  CHECK_THROWS_AS(rnn(ones({2, 4, 6})), ShapeError);  // input features changed
  CHECK_THROWS_AS(rnn(ones({5})), ShapeError);
  CHECK_THROWS_AS(rnn(ones({2, 0, 5})), ShapeError);
  CHECK_THROWS_AS(rnn(x, {.seq_lengths = from_vector({4, 5}, {2}, DType::Int64)}), ValueError);
  CHECK_THROWS_AS(rnn(x, {.seq_lengths = from_vector({4, 0}, {2}, DType::Int64)}), ValueError);
  CHECK_THROWS_AS(rnn(x, {.seq_lengths = from_vector({4}, {1}, DType::Int64)}), ShapeError);
  CHECK_THROWS_AS(rnn(x, {.seq_lengths = from_vector({4, 4}, {2}, DType::Float32)}), ShapeError);
  CHECK_THROWS_AS(nn::RNN(std::shared_ptr<nn::RNNCellBase>()), ValueError);
}

TEST_CASE("RNN: the fused LSTM and the GRU give the same bits at 1 and 2 threads") {
  const Tensor x = pattern({64, 7, 28}, 0.3).astype(DType::Float32);
  for (int kind = 0; kind < 2; ++kind) {
    CAPTURE(kind);
    std::shared_ptr<nn::RNNCellBase> cell;
    if (kind == 0) cell = std::make_shared<nn::LSTMCell>(nn::LSTMCellOptions{.features = 128});
    else cell = std::make_shared<nn::GRUCell>(nn::GRUCellOptions{.features = 128});
    nn::RNN rnn(cell);
    rnn.init(x);
    auto run = [&](int threads) {
      test_support::ThreadCountGuard guard(threads);
      rnn.zero_grad();
      const Tensor y = rnn(x);
      sum(square(y)).backward();
      std::vector<Tensor> out{y.detach()};
      for (const Tensor& p : rnn.parameters()) out.push_back(p.grad());
      return out;
    };
    const auto one = run(1), two = run(2);
    for (std::size_t k = 0; k < one.size(); ++k) CHECK(test_support::bit_difference(one[k], two[k]).count == 0);
  }
}

TEST_CASE("RNN's fused GRU sequence matches stepping the cell on the tape, values and gradients") {
  auto cell = make_cell<nn::GRUCell, nn::GRUCellOptions>(4);
  nn::RNN rnn(cell);
  const Tensor x = pattern({3, 6, 2}, 0.1);
  rnn(x);
  fill_params(rnn, 0.7);
  const nn::NamedTensors params = rnn.named_parameters();
  auto stepped = [&](const Tensor& input, const nn::Carry& initial) {
    nn::Carry carry = initial;
    std::vector<Tensor> ys;
    for (std::int64_t t = 0; t < 6; ++t) {
      auto [next, y] = (*cell)(carry, squeeze(slice(input, 1, t, t + 1), {1}));
      carry = next;
      ys.push_back(y);
    }
    return std::pair{stack(ys, 1), carry[0]};
  };
  Tensor xg = x.clone().requires_grad_();
  Tensor h0 = pattern({3, 4}, 0.5).requires_grad_();
  const nn::RNNOutput fused = rnn(xg, {.initial_carry = {h0}, .return_carry = true});
  const auto [y_stepped, h_stepped] = stepped(xg, {h0});
  check_close(fused.outputs, y_stepped, 1e-14);
  check_close(fused.carry.at(0), h_stepped, 1e-14);
  const Tensor w = pattern(y_stepped.shape(), 2.0), wc = pattern(h_stepped.shape(), 0.3);
  std::vector<Tensor> wrt{xg, h0};
  for (const auto& [name, t] : params) wrt.push_back(t);
  const auto g_fused = grad({sum(fused.outputs * w) + sum(fused.carry[0] * wc)}, wrt);
  const auto g_stepped = grad({sum(y_stepped * w) + sum(h_stepped * wc)}, wrt);
  for (std::size_t k = 0; k < wrt.size(); ++k) check_close(g_fused[k], g_stepped[k], 1e-13);
  // float32 runs the same kernels.
  nn::RNN rnn32(std::make_shared<nn::GRUCell>(nn::GRUCellOptions{.features = 4}));
  rnn32(x.astype(DType::Float32));
  for (const auto& [name, t] : rnn.state_dict()) rnn32.state_dict().at(name).copy_(t);
  const Tensor y32 = rnn32(x.astype(DType::Float32));
  CHECK(y32.dtype() == DType::Float32);
  check_close(y32.astype(DType::Float64), rnn(x), 1e-6);
}

TEST_CASE("gru_sequence: gradcheck and gradgradcheck, and against gru_cell_update step by step") {
  const Tensor xp = pattern({3, 2, 6}, 0.2, 1.0), wh = pattern({2, 6}, 1.2, 0.5), bhn = pattern({2}, 0.4, 0.3),
               h0 = pattern({2, 2}, 3.1);
  test_support::check_first_and_second_order(
      "gru_sequence", [](const std::vector<Tensor>& in) { return gru_sequence(in[0], in[1], in[2], in[3]); },
      {xp, wh, bhn, h0});
  // The recurrence by hand: hp = h W_h + [0 | 0 | b_hn], h' = gru_cell_update(xp_t, hp, h).
  Tensor h = h0;
  const Tensor hs = gru_sequence(xp, wh, bhn, h0);
  CHECK(hs.shape() == Shape{3, 2, 2});
  for (std::int64_t t = 0; t < 3; ++t) {
    const Tensor hp = matmul(h, wh) + concat({zeros({4}, DType::Float64), bhn}, -1);
    h = gru_cell_update(squeeze(slice(xp, 0, t, t + 1), {0}), hp, h);
    check_close(squeeze(slice(hs, 0, t, t + 1), {0}), h, 1e-15);
  }
  // No b_hn: the same as a zero one.
  check_close(gru_sequence(xp, wh, Tensor(), h0), gru_sequence(xp, wh, zeros({2}, DType::Float64), h0), 0.0);
  CHECK_THROWS_WITH_AS(gru_sequence(xp, pattern({2, 5}, 0), bhn, h0),
                       "gru_sequence: expected xp [T, B, 3H], wh [H, 3H], bhn [H], h0 [B, H]; got xp [3, 2, 6], wh "
                       "[2, 5], bhn [2], h0 [2, 2]",
                       ShapeError);
  CHECK_THROWS_AS(gru_sequence(xp, wh, bhn, h0.astype(DType::Float32)), DTypeError);
  CHECK_THROWS_AS(gru_sequence(xp.astype(DType::BFloat16), wh.astype(DType::BFloat16), Tensor(),
                               h0.astype(DType::BFloat16)),
                  DTypeError);
}

TEST_CASE("RNN over cells with gate_fn / activation_fn runs them step by step with those functions") {
  const nn::CellActivation softsign = [](const Tensor& t) { return t / (abs(t) + 1.0); };
  for (int kind = 0; kind < 2; ++kind) {
    CAPTURE(kind);
    std::shared_ptr<nn::RNNCellBase> cell;
    if (kind == 0)
      cell = std::make_shared<nn::LSTMCell>(
          nn::LSTMCellOptions{.features = 3, .activation_fn = softsign, .param_dtype = DType::Float64});
    else
      cell = std::make_shared<nn::GRUCell>(
          nn::GRUCellOptions{.features = 3, .activation_fn = softsign, .param_dtype = DType::Float64});
    nn::RNN rnn(cell);
    const Tensor x = pattern({2, 4, 2}, 0.7);
    rnn(x);
    fill_params(rnn, 0.7);
    const Tensor y = rnn(x);
    for (std::int64_t b = 0; b < 2; ++b) {
      const ByHand r = run_by_hand(*cell, x, b, range(0, 4), cell->initialize_carry(make_key(0), {2}));
      for (std::int64_t t = 0; t < 4; ++t)
        check_close(reshape(y.at({b, t}).get(), {-1}), r.outputs[static_cast<std::size_t>(t)], 1e-15);
    }
  }
}
