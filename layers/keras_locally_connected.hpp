// Keras 2 LocallyConnected1D / LocallyConnected2D weights in ConvLocal's layout.
//
//   auto w = xgrad::load_keras_h5("model.h5");
//   auto p = nn::from_keras_locally_connected(w.at("lc.kernel"), w.at("lc.bias"), {3, 3}, {.strides = {2, 2}});
//   nn::ConvLocal local({.features = 8, .kernel_size = {3, 3}, .strides = 2, .padding = "VALID"});
//   local.init(x);
//   local.load_state_dict(p);          // local(x) now gives the Keras layer's output (before its activation)
//
// Keras 2 (tf_keras/layers/locally_connected/) stores the kernel in one of three
// forms, chosen by the layer's `implementation`:
//   1: (output positions, prod(kernel_size) * C, F). Positions row-major; each row
//      is the input window x[o*s : o*s + k, :] flattened, so with channels_last
//      the entry is r(kappa) * C + c (channel fastest), with channels_first
//      c * S + r(kappa) (backend.local_conv).
//   2: the dense masked kernel, (M..., C, O..., F) with channels_last, (C, M..., F, O...)
//      with channels_first; only the entries inside each output's window count
//      (locally_connected_utils.local_conv_matmul multiplies by the mask).
//   3: a vector over sorted(conv_utils.conv_kernel_idxs(...)), the (output index,
//      input index) pairs of a sparse (out_size, in_size) matrix with indices ravelled
//      over (spatial..., channels) for channels_last, (channels, spatial...) for
//      channels_first; so the entries run (o, f, r, c) resp. (f, o, c, r)
//      (locally_connected_utils.local_conv_sparse_matmul). Its shape does not say O or
//      F: they come from the bias, or options.output_shape and options.features.
// ConvLocal's kernel is (O..., S * C, F) with entry c * S + r(kappa) (docs/convlocal.md
// §4.2). The bias has one shape in both, (O..., F); with channels_first Keras's
// bias_add reshapes it to (F, O...) without transposing, so its entries are reordered.
// Only VALID padding converts (implementation 1 has no other; implementations 2's and
// 3's 'same' have no ConvLocal twin with Keras's window placement).
#pragma once

#include <map>
#include <optional>
#include <string>

#include "core/tensor.hpp"
#include "layers/conv.hpp"

namespace xgrad::nn {

// What a Keras LocallyConnected layer's weights alone do not say, for converting them.
struct KerasLocallyConnectedOptions {
  // Implementation 2 needs them when the shapes leave them open (O > 1 with several
  // strides giving O positions); given for implementation 1, they are not used.
  IntOrInts strides = {};
  int implementation = 0;                      // 1, 2 or 3; 0: from the kernel's rank (3: 1, 2n + 2: 2, 1: 3)
  std::string data_format = "channels_last";   // the Keras layer's data_format
  Shape output_shape = {};                     // implementations 1 (2-D) and 3 without a bias: (O_1, ...)
  std::int64_t features = 0;                   // implementation 3 without a bias: F
};

// Returns {"kernel", "bias"} (no "bias" when `bias` is empty) in ConvLocal's layout,
// in the kernel's dtype. kernel_size is the Keras layer's (an int for 1-D). Shapes
// that do not fit are ShapeErrors naming them; unsupported options ValueErrors.
std::map<std::string, Tensor> from_keras_locally_connected(const Tensor& kernel, const std::optional<Tensor>& bias,
                                                           const IntOrInts& kernel_size,
                                                           const KerasLocallyConnectedOptions& options = {});

}  // namespace xgrad::nn
