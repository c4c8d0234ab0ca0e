#include "layers/sequential.hpp"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/padding.hpp"
#include "layers/activations.hpp"
#include "layers/conv.hpp"
#include "layers/per_example_capture.hpp"
#include "layers/pool_modules.hpp"
#include "layers/summary_recorder.hpp"

namespace xgrad::nn {

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> layers) {
  for (const auto& layer : layers) add(layer);
}

Sequential& Sequential::add(std::shared_ptr<Module> layer) {
  return add(fmt::format("layers_{}", layers_.size()), std::move(layer));
}

Sequential& Sequential::add(const std::string& name, std::shared_ptr<Module> layer) {
  if (!layer) throw ValueError(fmt::format("Sequential::add: layer '{}' is null", name));
  register_module(name, layer);
  layers_.push_back(std::move(layer));
  return *this;
}

namespace {

// The window of a MaxPool with strides equal to its window and no padding after a
// Conv, when nothing watches the conv's own output (a per-example capture or summary
// records every module's output; remat would recompute the conv alone); else nullopt.
std::optional<Shape> fusable_max_pool(const Module& first, const Module& second) {
  const auto* conv = dynamic_cast<const ConvBase*>(&first);
  const auto* pool = dynamic_cast<const MaxPool*>(&second);
  if (!conv || !pool || conv->is_remat() || pool->is_remat() ||
      PerExampleCapture::active() || SummaryRecorder::active())
    return std::nullopt;
  const PoolOptions& o = pool->options();
  if (o.window_shape.size() != 2 || o.strides != o.window_shape || !pads_nothing(o.padding, 2)) return std::nullopt;
  return o.window_shape;
}

bool is_relu(const Module& m) {
  const auto* relu = dynamic_cast<const ReLU*>(&m);
  return relu && !relu->is_remat();
}

// What the conv at layers[i] may compute in one pass with the layers after it: a
// MaxPool (fusable_max_pool), with a ReLU before or after it (relu and max commute:
// relu(max) = max(relu), and the gradients agree too, see conv_max_pool_apply).
struct PoolFusion {
  Shape window;
  bool relu;
  std::size_t layers;  // how many layers after the conv it stands for
};

std::optional<PoolFusion> pool_fusion_at(const std::vector<std::shared_ptr<Module>>& layers, std::size_t i) {
  const std::size_t n = layers.size();
  if (i + 2 < n && is_relu(*layers[i + 1]))
    if (const auto window = fusable_max_pool(*layers[i], *layers[i + 2])) return PoolFusion{*window, true, 2};
  if (i + 1 < n)
    if (const auto window = fusable_max_pool(*layers[i], *layers[i + 1])) {
      const bool relu = i + 2 < n && is_relu(*layers[i + 2]);
      return PoolFusion{*window, relu, relu ? std::size_t{2} : std::size_t{1}};
    }
  return std::nullopt;
}

}  // namespace

Tensor Sequential::forward(const Tensor& input) {
  if (layers_.empty()) throw ValueError("no layers to apply");
  Tensor x = input;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    // A Conv then a MaxPool (and a ReLU): one pass where the conv can (conv.hpp's
    // MaxPoolFusion), which saves writing the conv's output and reading it back.
    if (const auto fusion = pool_fusion_at(layers_, i)) {
      MaxPoolFusion request(dynamic_cast<const ConvBase&>(*layers_[i]), fusion->window, fusion->relu);
      x = (*layers_[i])(x);
      if (request.granted()) i += fusion->layers;  // their output already
      continue;
    }
    x = (*layers_[i])(x);
  }
  return x;
}

}  // namespace xgrad::nn
