#include "models.hpp"

#include "autograd/ops.hpp"
#include "core/error.hpp"
#include "layers/conv.hpp"
#include "layers/dense.hpp"
#include "layers/flatten.hpp"
#include "layers/lstm_cell.hpp"
#include "layers/pooling.hpp"
#include "layers/rnn.hpp"
#include "layers/sequential.hpp"

namespace fashion {

using namespace xgrad;

namespace {

// The networks pool before the ReLU: max_pool(relu(x)) = relu(max_pool(x)) in values
// and gradients (ReLU is monotone; both route a window's gradient to its first
// maximum, and to nothing when that maximum is <= 0), and the ReLU then touches a
// quarter of the elements.
std::shared_ptr<nn::Module> relu_layer() {
  return std::make_shared<nn::Lambda>("relu", [](const Tensor& x) { return relu(x); });
}

std::shared_ptr<nn::Module> pool2() {
  return std::make_shared<nn::Lambda>("max_pool 2x2", [](const Tensor& x) { return nn::max_pool(x, {2, 2}, {2, 2}); });
}

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
  throw ValueError("unknown model '" + name + "' (expected local, cnn, mlp or lstm)");
}

}  // namespace fashion
