// Weights in and out of xgrad: train a small LocalNet (Conv, ConvLocal, Dense) for one
// epoch, save it as .npz, safetensors, Flax msgpack and a PyTorch state dict, load each
// file back into a fresh model (nn::load recognises the format) and check that the
// outputs agree bit for bit. Uses 2,000 Fashion-MNIST images when the dataset is
// installed, random images otherwise.
//
//   build/examples/weights_interop [output directory, default: a fresh temporary one]
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <unistd.h>

#include <fmt/format.h>

#include "xgrad.hpp"

using namespace xgrad;

namespace {

std::shared_ptr<nn::Sequential> local_net() {
  const auto relu_layer = [] { return std::make_shared<nn::Lambda>("relu", [](const Tensor& x) { return relu(x); }); };
  const auto pool = [] {
    return std::make_shared<nn::Lambda>("max_pool 2x2", [](const Tensor& x) { return nn::max_pool(x, {2, 2}, {2, 2}); });
  };
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv>(nn::ConvOptions{.features = 8, .kernel_size = {3, 3}}), pool(), relu_layer(),
      std::make_shared<nn::ConvLocal>(nn::ConvOptions{.features = 8, .kernel_size = {3, 3}, .padding = "VALID"}),
      pool(), relu_layer(), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Dense>(nn::DenseOptions{.features = 10})});
}

TensorDataset training_data() {
  try {
    auto data = load_fashion_mnist(kFashionMnistDir, Split::Train, 2000);
    fmt::print("data: 2,000 Fashion-MNIST training images\n");
    return data;
  } catch (const IOError&) {
    fmt::print("data: Fashion-MNIST not installed ({}); 512 random images\n", kFashionMnistDir);
    Tensor images = random_uniform(make_key(7), {512, 28, 28, 1});
    Tensor labels = random_randint(make_key(8), {512}, 0, 10);
    return TensorDataset(images, labels);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::filesystem::path dir =
      argc > 1 ? std::filesystem::path(argv[1])
               : std::filesystem::temp_directory_path() / ("xgrad-weights-interop-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);

  const TensorDataset train = training_data();
  auto model = local_net();
  model->set_seed(0);
  model->init(train.get_batch({0}).inputs);
  optim::Optimizer opt(*model, optim::adam({.learning_rate = 1e-3}));
  DataLoader loader(train, {.batch_size = 64, .seed = 1});
  double last_loss = 0;
  for (Batch& b : loader.epoch(0)) {
    Tensor loss = losses::softmax_cross_entropy((*model)(b.inputs), b.targets, losses::Reduction::Mean);
    opt.zero_grad();
    loss.backward();
    opt.step();
    last_loss = loss.item();
  }
  fmt::print("trained one epoch, last batch loss {:.4f}\n", last_loss);

  NoGradGuard no_grad;
  const Tensor probe = train.get_batch({0, 1, 2, 3, 4, 5, 6, 7}).inputs;
  const std::vector<double> reference = (*model)(probe).to_vector();

  const std::pair<nn::CheckpointFormat, const char*> formats[] = {
      {nn::CheckpointFormat::Npz, "local_net.npz"},
      {nn::CheckpointFormat::Safetensors, "local_net.safetensors"},
      {nn::CheckpointFormat::FlaxMsgpack, "local_net.msgpack"},
      {nn::CheckpointFormat::Torch, "local_net.pt"}};
  bool all_agree = true;
  for (const auto& [format, name] : formats) {
    const std::string path = (dir / name).string();
    nn::save(*model, path, nn::SaveOptions{.format = format});
    auto fresh = local_net();
    fresh->set_seed(123);  // different initial weights: the file must overwrite every one
    fresh->init(probe);
    nn::load(*fresh, path);
    const bool agree = (*fresh)(probe).to_vector() == reference;
    all_agree = all_agree && agree;
    fmt::print("{:<22} {:>8} bytes  outputs {}\n", name, std::filesystem::file_size(path),
               agree ? "agree exactly" : "DIFFER");
  }
  fmt::print("files in {}\n", dir.string());
  fmt::print("read them elsewhere: numpy.load('local_net.npz'), safetensors.numpy.load_file('local_net.safetensors'),\n"
             "flax.serialization.msgpack_restore(open('local_net.msgpack','rb').read()),\n"
             "torch.load('local_net.pt', weights_only=True)\n");
  return all_agree ? EXIT_SUCCESS : EXIT_FAILURE;
}
