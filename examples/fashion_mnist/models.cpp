#include "models.hpp"

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "layers/activations.hpp"
#include "layers/conv.hpp"
#include "layers/dense.hpp"
#include "layers/flatten.hpp"
#include "layers/initializers.hpp"
#include "layers/layer_norm.hpp"
#include "layers/multi_head_attention.hpp"
#include "layers/lstm_cell.hpp"
#include "layers/pool_modules.hpp"
#include "layers/pooling.hpp"
#include "layers/rnn.hpp"
#include "layers/sequential.hpp"

namespace fashion {

using namespace xgrad;

namespace {

// The networks pool before the ReLU: max_pool(relu(x)) = relu(max_pool(x)) in values
// and gradients (ReLU is monotone; both route a window's gradient to its first
// maximum, and to nothing when that maximum is <= 0), and the ReLU then touches a
// quarter of the elements. Modules, not Lambdas, so that the Sequential runs a Conv,
// this pool and this ReLU as one pass (nn::MaxPoolFusion): the first conv's 3.2 MB
// output is then never written, nor the pool's before its ReLU.
std::shared_ptr<nn::Module> relu_layer() { return std::make_shared<nn::ReLU>(); }

std::shared_ptr<nn::Module> pool2() {
  return std::make_shared<nn::MaxPool>(nn::PoolOptions{.window_shape = {2, 2}, .strides = {2, 2}});
}

// The ViT of google-research/vision_transformer (models_vit.py), small: its
// Encoder1DBlock (pre-LayerNorm self-attention and MLP, each added back to its
// input) without dropout, 8 epochs being too few for it to help.
class EncoderBlock : public nn::Module {
 public:
  EncoderBlock(std::int64_t width, std::int64_t num_heads, std::int64_t mlp_dim)
      : attention_({.num_heads = num_heads, .kernel_init = nn::initializers::xavier_uniform()}),
        mlp_in_({.features = mlp_dim, .kernel_init = nn::initializers::xavier_uniform(),
                 .bias_init = nn::initializers::normal(1e-6)}),
        mlp_out_({.features = width, .kernel_init = nn::initializers::xavier_uniform(),
                  .bias_init = nn::initializers::normal(1e-6)}) {
    register_module("norm_attention", norm_attention_);
    register_module("attention", attention_);
    register_module("norm_mlp", norm_mlp_);
    register_module("mlp_in", mlp_in_);
    register_module("mlp_out", mlp_out_);
  }

 protected:
  Tensor forward(const Tensor& inputs) override {
    const Tensor x = inputs + attention_(norm_attention_(inputs));
    return x + mlp_out_(gelu(mlp_in_(norm_mlp_(x))));
  }

 private:
  nn::LayerNorm norm_attention_, norm_mlp_;
  nn::MultiHeadDotProductAttention attention_;
  nn::Dense mlp_in_, mlp_out_;
};

// Images [B, H, W, C] -> non-overlapping patch x patch tiles -> tokens [B, (H/p)(W/p), p*p*C]
// -> a Dense embedding (Flax ViT's VALID conv with stride = kernel = patch is the same
// map) -> a learned position embedding -> encoder blocks -> LayerNorm -> mean over
// the tokens ("gap" classifier) -> Dense head (zero-initialised, as ViT's).
class VisionTransformer : public nn::Module {
 public:
  VisionTransformer(std::int64_t patch, std::int64_t width, std::int64_t depth, std::int64_t num_heads,
                    std::int64_t mlp_dim, std::int64_t classes)
      : patch_(patch), embedding_({.features = width}),
        head_({.features = classes, .kernel_init = nn::initializers::zeros()}) {
    register_module("embedding", embedding_);
    for (std::int64_t i = 0; i < depth; ++i)
      blocks_.push_back(register_module("encoderblock_" + std::to_string(i),
                                        std::make_shared<EncoderBlock>(width, num_heads, mlp_dim)));
    register_module("encoder_norm", encoder_norm_);
    register_module("head", head_);
  }
  std::string describe() const override { return "VisionTransformer"; }

 protected:
  Tensor forward(const Tensor& images) override {
    if (images.dim() != 4 || images.size(1) % patch_ != 0 || images.size(2) % patch_ != 0)
      throw ShapeError(fmt::format("images {} must be [batch, H, W, C] with H and W multiples of the patch size {}",
                                   shape_str(images.shape()), patch_));
    const std::int64_t n = images.size(0), gh = images.size(1) / patch_, gw = images.size(2) / patch_,
                       c = images.size(3);
    Tensor tokens = reshape(images, {n, gh, patch_, gw, patch_, c});
    tokens = reshape(transpose(tokens, {0, 1, 3, 2, 4, 5}), {n, gh * gw, patch_ * patch_ * c});
    Tensor x = embedding_(tokens);
    x = x + param("pos_embedding", {1, gh * gw, x.size(-1)}, nn::initializers::normal(0.02), DType::Float32);
    for (const auto& block : blocks_) x = (*block)(x);
    return head_(mean(encoder_norm_(x), {1}));
  }

 private:
  std::int64_t patch_;
  nn::Dense embedding_;
  std::vector<std::shared_ptr<EncoderBlock>> blocks_;
  nn::LayerNorm encoder_norm_;
  nn::Dense head_;
};

// Each image read row by row: 28 steps of 28 pixels through an LSTM of 128 units;
// its last hidden state goes to Dense 10.
class RowLSTM : public nn::Module {
 public:
  RowLSTM() {
    register_module("rnn", rnn_);
    register_module("head", head_);
  }
  std::string describe() const override { return "RowLSTM"; }

 protected:
  Tensor forward(const Tensor& images) override {  // [N, 28, 28, 1]
    const Tensor rows = reshape(images, {images.size(0), images.size(1), -1});
    return head_(rnn_(rows, {.return_carry = true}).carry[1]);
  }

 private:
  nn::RNN rnn_{std::make_shared<nn::LSTMCell>(nn::LSTMCellOptions{.features = 128})};
  nn::Dense head_{{.features = 10}};
};

}  // namespace

std::shared_ptr<nn::Module> make_model(const std::string& name) {
  if (name == "local") {
    return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Conv>(nn::ConvOptions{.features = 16, .kernel_size = {3, 3}}), pool2(), relu_layer(),
        std::make_shared<nn::ConvLocal>(nn::ConvOptions{.features = 32, .kernel_size = {3, 3}, .padding = "VALID"}),
        pool2(), relu_layer(), std::make_shared<nn::Flatten>(),
        std::make_shared<nn::Dense>(nn::DenseOptions{.features = 10})});
  }
  if (name == "cnn") {
    return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Conv>(nn::ConvOptions{.features = 32, .kernel_size = {3, 3}}), pool2(), relu_layer(),
        std::make_shared<nn::Conv>(nn::ConvOptions{.features = 64, .kernel_size = {3, 3}}), pool2(), relu_layer(),
        std::make_shared<nn::Flatten>(), std::make_shared<nn::Dense>(nn::DenseOptions{.features = 10})});
  }
  if (name == "mlp") {
    return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Flatten>(), std::make_shared<nn::Dense>(nn::DenseOptions{.features = 256}),
        relu_layer(), std::make_shared<nn::Dense>(nn::DenseOptions{.features = 128}), relu_layer(),
        std::make_shared<nn::Dense>(nn::DenseOptions{.features = 10})});
  }
  if (name == "lstm") return std::make_shared<RowLSTM>();
  if (name == "vit") return std::make_shared<VisionTransformer>(7, 64, 2, 4, 128, 10);
  throw ValueError("unknown model '" + name + "' (expected local, cnn, mlp, lstm or vit)");
}

}  // namespace fashion
