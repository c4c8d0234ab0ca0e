// Model checkpoints as .npz files that numpy.load opens, keyed by dotted paths
// ("encoder.conv1.kernel"). Saving is atomic (temporary file, fsync, rename): a
// crash never leaves a half-written checkpoint under the final name.
#pragma once

#include <string>

#include "layers/module.hpp"

namespace xgrad::nn {

// Parameters and buffers of `model` (state_dict()) to `path`.
void save(const Module& model, const std::string& path, bool compress = false);

// Reads `path` into `model` with load_state_dict(strict): on any error (missing,
// unexpected, wrong shape or dtype, unreadable file) the model is unchanged. The
// model's lazy parameters must exist: call init(sample_input) first.
void load(Module& model, const std::string& path, bool strict = true);

}  // namespace xgrad::nn
