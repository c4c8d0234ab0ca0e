// The example networks for 28x28x1 Fashion-MNIST images.
#pragma once

#include <memory>
#include <string>

#include "layers/module.hpp"

namespace fashion {

// "local": Conv 3x3 (16) -> max-pool 2 -> ReLU -> ConvLocal 3x3 (32, VALID) -> max-pool 2
//          -> ReLU -> Dense 10. The locally connected layer follows a shared
//          convolution, as in DeepFace: the convolution finds local features
//          everywhere, the unshared layer learns where they matter.
// "cnn":   Conv 3x3 (32) -> pool -> ReLU -> Conv 3x3 (64) -> pool -> ReLU -> Dense 10.
// "mlp":   784 -> 256 -> 128 -> 10 with ReLU.
// "lstm":  each image as 28 time steps of 28 pixels -> LSTM 128 -> last hidden state -> Dense 10.
// "vit":   a small Vision Transformer: 7x7 patches -> 16 tokens of width 64 with a learned
//          position embedding -> 2 pre-LayerNorm encoder blocks (4 heads, MLP 128, gelu)
//          -> LayerNorm -> mean over tokens -> Dense 10.
std::shared_ptr<xgrad::nn::Module> make_model(const std::string& name);

}  // namespace fashion
