// Each named optimizer's first three updates on a fixed problem, against values
// computed by hand from the optax formulas (float64 throughout).
//
// Parameters w = [1, −2] and b = [0.5]; loss ½(w₀² + 10w₁²) + 2b², so the
// gradients are g_w = [w₀, 10w₁] and g_b = [4b]. Each step the updates are
// recorded and then applied (p ← p + u). lr = 0.03 everywhere; t is the 1-based step.
#include <array>
#include <vector>

#include <doctest/doctest.h>

#include "xgrad.hpp"

using namespace xgrad;

namespace {

// One step's updates: {u_w0, u_w1}, {u_b}.
struct StepUpdates {
  std::array<double, 2> w;
  std::array<double, 1> b;
};

optim::NamedTensors gradients_at(const optim::NamedTensors& params) {
  const auto w = params[0].second.to_vector();
  const auto b = params[1].second.to_vector();
  return {{"w", from_vector({w[0], 10 * w[1]}, {2}, DType::Float64)},
          {"b", from_vector({4 * b[0]}, {1}, DType::Float64)}};
}

void check_three_updates(const optim::GradientTransformation& tx, const std::vector<StepUpdates>& expected) {
  optim::NamedTensors params{{"w", from_vector({1.0, -2.0}, {2}, DType::Float64)},
                             {"b", from_vector({0.5}, {1}, DType::Float64)}};
  optim::OptState state = tx.init(params);
  for (std::size_t step = 0; step < expected.size(); ++step) {
    CAPTURE(step);
    optim::NamedTensors updates = gradients_at(params);
    tx.update(updates, state, params);
    const auto u_w = updates[0].second.to_vector();
    const auto u_b = updates[1].second.to_vector();
    CHECK(u_w[0] == doctest::Approx(expected[step].w[0]).epsilon(1e-12).scale(0));
    CHECK(u_w[1] == doctest::Approx(expected[step].w[1]).epsilon(1e-12).scale(0));
    CHECK(u_b[0] == doctest::Approx(expected[step].b[0]).epsilon(1e-12).scale(0));
    optim::apply_updates(params, updates);
  }
}

}  // namespace

TEST_CASE("sgd: first three updates") {
  // u = −lr·g
  check_three_updates(optim::sgd({.learning_rate = 0.03}),
                      {
                       {{-0.029999999999999999, 0.59999999999999998}, {-0.059999999999999998}},
                       {{-0.029099999999999997, 0.41999999999999998}, {-0.0528}},
                       {{-0.028226999999999999, 0.29399999999999998}, {-0.046463999999999998}},
                      });
}

TEST_CASE("sgd with momentum: first three updates") {
  // τ = g + 0.9τ, u = −lr·τ
  check_three_updates(optim::sgd({.learning_rate = 0.03, .momentum = 0.9}),
                      {
                       {{-0.029999999999999999, 0.59999999999999998}, {-0.059999999999999998}},
                       {{-0.056100000000000004, 0.95999999999999996}, {-0.10679999999999999}},
                       {{-0.07790699999999999, 0.996}, {-0.136104}},
                      });
}

TEST_CASE("sgd with Nesterov momentum: first three updates") {
  // τ = g + 0.9τ, u = −lr·(g + 0.9τ)
  check_three_updates(optim::sgd({.learning_rate = 0.03, .momentum = 0.9, .nesterov = true}),
                      {
                       {{-0.056999999999999995, 1.1399999999999999}, {-0.11399999999999999}},
                       {{-0.078050999999999995, 0.97620000000000018}, {-0.13660800000000001}},
                       {{-0.094086993000000008, 0.58014599999999994}, {-0.13812057599999999}},
                      });
}

TEST_CASE("adam: first three updates") {
  // m = 0.1g + 0.9m, v = 0.001g² + 0.999v,
  // u = −lr·(m/(1 − 0.9ᵗ))/(√(v/(1 − 0.999ᵗ)) + 1e-8)
  check_three_updates(optim::adam({.learning_rate = 0.03}),
                      {
                       {{-0.029999999700000005, 0.029999999984999998}, {-0.02999999985}},
                       {{-0.029972707910886395, 0.029987325572618271}, {-0.029937314821991298}},
                       {{-0.029926064748476641, 0.0299659656159964}, {-0.02982676917035652}},
                      });
}

TEST_CASE("nadam: first three updates") {
  // adam with m̂ = 0.9m/(1 − 0.9ᵗ⁺¹) + 0.1g/(1 − 0.9ᵗ)
  check_three_updates(optim::nadam({.learning_rate = 0.03}),
                      {
                       {{-0.044210525873684216, 0.044210526293684202}, {-0.044210526094736843}},
                       {{-0.034331538627957216, 0.034529799012886886}, {-0.033907457310934183}},
                       {{-0.031834411664732498, 0.032099460454397155}, {-0.031245977302053439}},
                      });
}

TEST_CASE("adamw: first three updates") {
  // u = −lr·(adam direction + 1e-4·p), p before the update
  check_three_updates(optim::adamw({.learning_rate = 0.03}),
                      {
                       {{-0.030002999700000008, 0.030005999984999997}, {-0.030001499850000002}},
                       {{-0.029975614778667677, 0.029993232828083746}, {-0.02993872085056223}},
                       {{-0.029928876340744093, 0.029971778294129201}, {-0.0298280783453315}},
                      });
}

TEST_CASE("adamw with a weight-decay mask: first three updates") {
  // decay 0.5 on "w" only: u_w = −lr·(dir + 0.5w), u_b = −lr·dir
  check_three_updates(optim::adamw({.learning_rate = 0.03, .weight_decay = 0.5, .mask = [](const std::string& path) { return path == "w"; }}),
                      {
                       {{-0.044999999700000001, 0.059999999984999997}, {-0.02999999985}},
                       {{-0.04428106581913633, 0.059072708199852449}, {-0.029937314821991298}},
                       {{-0.043541690511655434, 0.058140601560833123}, {-0.02982676917035652}},
                      });
}

TEST_CASE("adamax: first three updates") {
  // m = 0.1g + 0.9m, v = max(|g| + 1e-8, 0.999v), u = −lr·(m/(1 − 0.9ᵗ))/v
  check_three_updates(optim::adamax({.learning_rate = 0.03}),
                      {
                       {{-0.029999999700000012, 0.029999999985000005}, {-0.029999999850000007}},
                       {{-0.029555871370317694, 0.029792950830804497}, {-0.029081713151572635}},
                       {{-0.029099987513030161, 0.029578724067923369}, {-0.028150404336249785}},
                      });
}

TEST_CASE("amsgrad: first three updates") {
  // adam's m and v; v̂max = max(v̂max, v/(1 − 0.999ᵗ)), u = −lr·m̂/(√v̂max + 1e-8)
  check_three_updates(optim::amsgrad({.learning_rate = 0.03}),
                      {
                       {{-0.029999999700000023, 0.029999999985000015}, {-0.029999999850000021}},
                       {{-0.029526315498947391, 0.029763157879973703}, {-0.029052631438421073}},
                       {{-0.02904214382475629, 0.029519761104143422}, {-0.028094775553546343}},
                      });
}

TEST_CASE("rmsprop: first three updates") {
  // ν = 0.1g² + 0.9ν (ν₀ = 0), u = −lr·g/√(ν + 1e-8) (eps inside the sqrt)
  check_three_updates(optim::rmsprop({.learning_rate = 0.03}),
                      {
                       {{-0.094868325061635228, 0.094868329793192832}, {-0.094868328619197279}},
                       {{-0.065488011383605008, 0.06721888726195259}, {-0.061612546276634976}},
                       {{-0.053076152121487037, 0.055458594258775841}, {-0.04762614028757961}},
                      });
}

TEST_CASE("centered rmsprop with momentum: first three updates") {
  // m = 0.1g + 0.9m, x = −lr·g/√(ν − m² + 1e-8); momentum after the lr:
  // τ = x + 0.9τ, u = τ
  check_three_updates(optim::rmsprop({.learning_rate = 0.03, .centered = true, .momentum = 0.9}),
                      {
                       {{-0.099999994444444906, 0.099999999986111116}, {-0.099999998611111141}},
                       {{-0.16252405938435122, 0.16458152381938121}, {-0.1578551125870758}},
                       {{-0.20288712764335082, 0.2106417254257259}, {-0.18375405501563424}},
                      });
}

TEST_CASE("rmsprop with initial_scale and Nesterov momentum: first three updates") {
  // ν₀ = 1, x = −lr·g/√(ν + 1e-8), τ = x + 0.5τ, u = x + 0.5τ
  check_three_updates(optim::rmsprop({.learning_rate = 0.03, .initial_scale = 1.0, .momentum = 0.5, .nesterov = true}),
                      {
                       {{-0.044999999775000001, 0.14072811010296754}, {-0.078935221434035627}},
                       {{-0.050665292535365392, 0.12248551797540815}, {-0.076017852956100487}},
                       {{-0.052181728908215125, 0.10867038353184363}, {-0.067786607119854014}},
                      });
}

TEST_CASE("adagrad: first three updates") {
  // G = G + g² (G₀ = 0.1), u = −lr·g/√(G + 1e-7)
  check_three_updates(optim::adagrad({.learning_rate = 0.03}),
                      {
                       {{-0.028603876377191598, 0.02999625069922995}, {-0.029631887538123208}},
                       {{-0.020385367962510489, 0.021050985890132143}, {-0.020420867230548041}},
                       {{-0.016616539633289629, 0.017107832162465163}, {-0.016369853054255191}},
                      });
}

TEST_CASE("lamb: first three updates") {
  // d = adam direction (eps 1e-6), u = −lr·d·‖p‖/‖d‖ per parameter
  check_three_updates(optim::lamb({.learning_rate = 0.03}),
                      {
                       {{-0.047434142371303847, 0.047434187433736841}, {-0.014999999999999999}},
                       {{-0.046066415713346874, 0.046106299052247827}, {-0.014549999999999999}},
                       {{-0.044728262681335326, 0.0448339014684681}, {-0.014113499999999999}},
                      });
}

TEST_CASE("lamb with weight decay: first three updates") {
  // d = adam direction + 0.01p, u = −lr·d·‖p‖/‖d‖ per parameter
  check_three_updates(optim::lamb({.learning_rate = 0.03, .weight_decay = 0.01}),
                      {
                       {{-0.047199903951263875, 0.047667274591604941}, {-0.014999999999999999}},
                       {{-0.045836818252714802, 0.04633005586900947}, {-0.014549999999999999}},
                       {{-0.044503262297751291, 0.045048255815992908}, {-0.014113499999999999}},
                      });
}

TEST_CASE("lion: first three updates") {
  // u = −lr·(sign(0.1g + 0.9m) + 1e-3·p), then m = 0.01g + 0.99m
  check_three_updates(optim::lion({.learning_rate = 0.03}),
                      {
                       {{-0.030029999999999994, 0.03006}, {-0.030014999999999997}},
                       {{-0.030029099100000001, 0.030059098199999999}, {-0.030014099549999999}},
                       {{-0.030028198227027, 0.030058196427054002}, {-0.030013199127013494}},
                      });
}

TEST_CASE("lars: first three updates") {
  // x = −lr·g·1e-3·‖p‖/‖g‖ per parameter, τ = x + 0.9τ, u = τ
  check_three_updates(optim::lars({.learning_rate = 0.03}),
                      {
                       {{-3.3499171836266503e-06, 6.6998343672533003e-05}, {-1.5e-05}},
                       {{-6.3648513754223935e-06, 0.00012729500754629449}, {-2.8499550000000004e-05}},
                       {{-9.0783087324308271e-06, 0.00018155849878855425}, {-4.0648290013500005e-05}},
                      });
}

TEST_CASE("lars with weight decay: first three updates") {
  // d = g + 0.1p, x = −lr·d·1e-3·‖p‖/‖d‖, τ = x + 0.9τ, u = τ
  check_three_updates(optim::lars({.learning_rate = 0.03, .weight_decay = 0.1}),
                      {
                       {{-3.6475780870378211e-06, 6.6982797598330891e-05}, {-1.5e-05}},
                       {{-6.9304065111210226e-06, 0.00012726546598804608}, {-2.8499549999999997e-05}},
                       {{-9.8849675739421279e-06, 0.00018151635366135416}, {-4.0648290013499999e-05}},
                      });
}

TEST_CASE("named optimizers are the optax chains") {
  const optim::NamedTensors params{{"w", zeros({2}, DType::Float64)}};
  auto count_inner = [&](const optim::GradientTransformation& tx) { return tx.init(params).inner.size(); };
  CHECK(count_inner(optim::sgd({.learning_rate = 0.1})) == 2);  // identity placeholder, lr
  CHECK(count_inner(optim::adamw({.learning_rate = 0.1})) == 3);
  CHECK(count_inner(optim::rmsprop({.learning_rate = 0.1})) == 3);  // rms, lr, identity placeholder
  CHECK(count_inner(optim::lamb({.learning_rate = 0.1})) == 4);
  CHECK(count_inner(optim::lars({.learning_rate = 0.1})) == 4);
  // State keys follow optax's field names.
  const auto keys = [&](const optim::GradientTransformation& tx) {
    std::vector<std::string> out;
    for (const auto& [key, t] : optim::state_to_named_tensors(tx.init(params), "opt")) out.push_back(key);
    return out;
  };
  CHECK(keys(optim::adam({.learning_rate = 0.1})) ==
        std::vector<std::string>{"opt.0.mu.w", "opt.0.nu.w", "opt.0.count"});
  CHECK(keys(optim::sgd({.learning_rate = 0.1, .momentum = 0.9})) == std::vector<std::string>{"opt.0.trace.w"});
  CHECK(keys(optim::amsgrad({.learning_rate = 0.1})) ==
        std::vector<std::string>{"opt.0.mu.w", "opt.0.nu.w", "opt.0.nu_max.w", "opt.0.count"});
  CHECK(keys(optim::adagrad({.learning_rate = 0.1})) == std::vector<std::string>{"opt.0.sum_of_squares.w"});
  CHECK(keys(optim::rmsprop({.learning_rate = 0.1, .centered = true, .bias_correction = true})) ==
        std::vector<std::string>{"opt.0.mu.w", "opt.0.nu.w", "opt.0.count"});
  CHECK(keys(optim::lion({.learning_rate = optim::constant_schedule(0.1)})) ==
        std::vector<std::string>{"opt.0.mu.w", "opt.0.count", "opt.2.count"});
}
