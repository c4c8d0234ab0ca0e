#include "layers/checkpoint.hpp"

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/io/npz.hpp"

namespace xgrad::nn {

void save(const Module& model, const std::string& path, bool compress) {
  save_npz(path, model.state_dict(), compress);
}

void load(Module& model, const std::string& path, bool strict) {
  const auto entries = load_npz(path);
  if (model.state_dict().empty() && !entries.empty())
    throw ValueError(fmt::format("load {}: the model has no parameters yet (they are created at the first call); "
                                 "call init(sample_input) before loading",
                                 path));
  model.load_state_dict(StateDict(entries.begin(), entries.end()), strict);
}

}  // namespace xgrad::nn
