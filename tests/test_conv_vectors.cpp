// ConvLocal against the reference vectors (tests/data/convlocal-vectors, float64,
// computed from the semantics of docs/convlocal.md): output and the gradients of
// L = sum(y * cotangent) with respect to inputs, raw kernel and bias, in float64 and
// float32; the error cases.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "xgrad.hpp"

using namespace xgrad;
using json = nlohmann::json;

namespace {

const std::string kDir = std::string(XGRAD_TEST_DATA) + "/convlocal-vectors/";

json read_manifest(const std::string& name) {
  std::ifstream in(kDir + name + ".json");
  REQUIRE_MESSAGE(in.good(), "cannot open manifest " << name);
  return json::parse(in);
}

std::vector<std::int64_t> int_or_list(const json& j) {
  if (j.is_null()) return {};
  if (j.is_number_integer()) return {j.get<std::int64_t>()};
  return j.get<std::vector<std::int64_t>>();
}

Padding padding_of(const json& j) {
  if (j.is_string()) return Padding(j.get<std::string>());
  if (j.is_number_integer()) return Padding(j.get<int>());
  std::vector<Padding::Entry> entries;
  for (const auto& e : j)
    entries.push_back(e.is_number_integer() ? Padding::Entry(e.get<int>()) : Padding::Entry(e[0].get<int>(), e[1].get<int>()));
  return Padding(entries);
}

nn::ConvSpec spec_of(const json& attributes) {
  return {.features = attributes["features"].get<std::int64_t>(),
          .kernel_size = int_or_list(attributes["kernel_size"]),
          .strides = int_or_list(attributes["strides"]),
          .padding = padding_of(attributes["padding"]),
          .input_dilation = int_or_list(attributes["input_dilation"]),
          .kernel_dilation = int_or_list(attributes["kernel_dilation"]),
          .feature_group_count = attributes["feature_group_count"].get<std::int64_t>(),
          .shared_weights = false};
}

Tensor load(const json& m, const char* key) {
  Tensor t = load_npy(kDir + m["files"][key].get<std::string>());
  REQUIRE(t.dtype() == DType::Float64);
  return t;
}

void check_close(const Tensor& actual, const Tensor& expected, double rtol, double atol, const std::string& what) {
  REQUIRE_MESSAGE(actual.shape() == expected.shape(),
                  what << ": shape " << shape_str(actual.shape()) << " vs " << shape_str(expected.shape()));
  const auto a = actual.to_vector(), e = expected.to_vector();
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double excess = std::abs(a[i] - e[i]) - (atol + rtol * std::abs(e[i]));
    if (i == 0 || excess > worst) worst = excess, at = i;
  }
  CHECK_MESSAGE(worst <= 0, what << ": element " << at << " is " << a[at] << ", expected " << e[at]);
}

void run_numeric_case(const std::string& name, DType dtype) {
  CAPTURE(name);
  CAPTURE(dtype_name(dtype));
  const json m = read_manifest(name);
  const json& attributes = m["attributes"];
  const json& files = m["files"];
  const bool f64 = dtype == DType::Float64;
  const double rtol = f64 ? 0.0 : m["suggested_tolerance"]["float32_rtol"].get<double>();
  const double atol = f64 ? m["suggested_tolerance"]["float64"].get<double>()
                          : m["suggested_tolerance"]["float32_atol"].get<double>();

  Tensor x = load(m, "inputs").astype(dtype).requires_grad_();
  Tensor kernel = load(m, "kernel").astype(dtype).requires_grad_();
  std::optional<Tensor> bias, mask;
  if (files.contains("bias")) bias = load(m, "bias").astype(dtype).requires_grad_();
  if (files.contains("mask")) mask = load(m, "mask").astype(dtype);

  const auto plan = nn::plan_conv(x.shape(), spec_of(attributes), mask ? std::optional(mask->shape()) : std::nullopt);
  const json& resolved = m["resolved"];
  CHECK(plan.kernel_shape == resolved["kernel_shape"].get<Shape>());
  CHECK(plan.output_shape == resolved["output_shape"].get<Shape>());
  CHECK(plan.out_spatial == resolved["out_spatial"].get<Shape>());
  CHECK(plan.batch_shape.size() == resolved["num_batch_dims"].get<std::size_t>());
  for (std::size_t j = 0; j < plan.lax_pads.size(); ++j) {
    CHECK(plan.lax_pads[j].first == resolved["lax_padding"][j][0].get<std::int64_t>());
    CHECK(plan.lax_pads[j].second == resolved["lax_padding"][j][1].get<std::int64_t>());
    if (resolved["flax_prepad"].is_array()) {
      CHECK(plan.prepad_pads[j].first == resolved["flax_prepad"][j][0].get<std::int64_t>());
      CHECK(plan.prepad_pads[j].second == resolved["flax_prepad"][j][1].get<std::int64_t>());
    }
  }
  if (bias) CHECK(plan.bias_shape == resolved["bias_shape"].get<Shape>());

  Tensor y = nn::conv_apply(plan, x, kernel, bias, mask);
  CHECK(y.dtype() == dtype);
  check_close(y, load(m, "expected_output"), rtol, atol, name + " output");

  std::vector<Tensor> wrt{x, kernel};
  if (bias) wrt.push_back(*bias);
  const auto grads = grad({y}, wrt, {load(m, "cotangent").astype(dtype)});
  check_close(grads[0], load(m, "expected_grad_inputs"), rtol, atol, name + " grad inputs");
  check_close(grads[1], load(m, "expected_grad_kernel"), rtol, atol, name + " grad kernel");
  if (bias) check_close(grads[2], load(m, "expected_grad_bias"), rtol, atol, name + " grad bias");
}

// Cases whose kind starts with `kind` ("numeric" also takes "numeric+upstream").
std::vector<std::string> cases_of_kind(const std::string& kind) {
  std::ifstream in(kDir + "index.json");
  REQUIRE(in.good());
  const json index = json::parse(in);
  std::vector<std::string> names;
  for (const auto& c : index["cases"])
    if (c["kind"].get<std::string>().rfind(kind, 0) == 0) names.push_back(c["name"].get<std::string>());
  return names;
}

template <class E>
void check_error_case(const json& m) {
  const json& e = m["expect_error"];
  const Shape input_shape = m["input_shape"].get<Shape>();
  const auto mask_shape = m["mask_shape"].is_null() ? std::nullopt : std::optional(m["mask_shape"].get<Shape>());
  const std::string expected = e["message_contains"].get<std::string>();
  try {
    nn::plan_conv(input_shape, spec_of(m["attributes"]), mask_shape);
    FAIL("expected an error containing: " << expected);
  } catch (const E& error) {
    CHECK_MESSAGE(std::string(error.what()).find(expected) != std::string::npos, error.what());
  }
}

}  // namespace

TEST_CASE("ConvLocal matches every numeric reference vector in float64") {
  const auto names = cases_of_kind("numeric");
  CHECK(names.size() == 19);
  for (const auto& name : names) run_numeric_case(name, DType::Float64);
}

TEST_CASE("ConvLocal matches every numeric reference vector in float32") {
  for (const auto& name : cases_of_kind("numeric")) run_numeric_case(name, DType::Float32);
}

TEST_CASE("ConvLocal reference error cases raise the upstream errors before any computation") {
  const auto names = cases_of_kind("error");
  CHECK(names.size() == 4);
  for (const auto& name : names) {
    CAPTURE(name);
    const json m = read_manifest(name);
    const std::string type = m["expect_error"]["type"].get<std::string>();
    if (name.rfind("e01_", 0) == 0) continue;  // feature groups: an xgrad extension, tested below
    if (type == "ValueError") check_error_case<ValueError>(m);
    else FAIL("unexpected error type " << type);
  }
}

TEST_CASE("e01 (feature_group_count=2) is an xgrad extension: the tiled grouped Conv kernel gives the grouped Conv") {
  const json m = read_manifest("e01_feature_group_count2");
  Tensor x = load(m, "inputs");
  nn::ConvSpec spec = spec_of(m["attributes"]);
  const auto local_plan = nn::plan_conv(x.shape(), spec);
  spec.shared_weights = true;
  const auto shared_plan = nn::plan_conv(x.shape(), spec);
  CHECK(shared_plan.kernel_shape == Shape{3, 2, 2});
  CHECK(local_plan.kernel_shape == Shape{6, 6, 2});  // (O, S*C/G, F)
  std::vector<double> w(12);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.25 * static_cast<double>(i) - 1.0;
  Tensor shared = from_vector(w, {3, 2, 2}, DType::Float64);
  // Tile: local[o, ci*S + r, f] = shared[r, ci, f].
  std::vector<double> tiled;
  for (int o = 0; o < 6; ++o)
    for (int ci = 0; ci < 2; ++ci)
      for (int r = 0; r < 3; ++r)
        for (int f = 0; f < 2; ++f) tiled.push_back(shared.at({r, ci, f}));
  Tensor local = from_vector(tiled, {6, 6, 2}, DType::Float64);
  const auto a = nn::conv_apply(shared_plan, x, shared).to_vector();
  const auto b = nn::conv_apply(local_plan, x, local).to_vector();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(b[i] == doctest::Approx(a[i]).epsilon(1e-12));
}
