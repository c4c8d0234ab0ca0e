// Fashion-MNIST training: the main job of the README's first command.
//
//   build/examples/fashion_mnist                      # LocalNet (Conv -> ConvLocal -> Dense)
//   build/examples/fashion_mnist --model cnn --epochs 5 --out runs/cnn
//   build/examples/fashion_mnist --eval runs/local/checkpoint.npz
//   mpirun -np 2 build/examples/fashion_mnist --distributed
//   build/examples/fashion_mnist --model cnn --dp-sgd --l2-norm-clip 1 --noise-multiplier 1.1
//
// Prints a progress bar per epoch, a table of epochs, a confusion matrix and, as
// its last line, "test accuracy: 91.23%". The run directory gets metrics.csv,
// checkpoint.npz (model, optimizer, epoch and the run's history so far, so that
// --resume continues it) and curves.png; both files are written atomically.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <limits>
#include <numeric>
#include <optional>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "models.hpp"
#include "progress.hpp"
#include "report.hpp"
#include "xgrad.hpp"

using namespace xgrad;
namespace fs = std::filesystem;

namespace {

struct Flags {
  std::string model = "local";
  int epochs = 8;
  std::size_t batch_size = 64;
  double lr = 2e-3;
  std::string optimizer = "adamw";
  int threads = 0;  // 0: xgrad's default (XGRAD_NUM_THREADS or every core)
  std::uint64_t seed = 0;
  std::string data_dir = kFashionMnistDir;
  std::string out = "runs/fashion_mnist";
  std::string resume, eval, precision;
  std::size_t limit = 0;       // use only the first N training images (smoke runs)
  std::size_t test_limit = 0;  // evaluate on the first N test images only (smoke runs)
  bool distributed = false;
  // DP-SGD (Abadi et al. 2016): per-example gradients clipped and noised by
  // optim::differentially_private_aggregate before the optimizer, as optax's dpsgd.
  bool dp_sgd = false;
  double l2_norm_clip = 1.0;
  double noise_multiplier = 1.1;
};

optim::GradientTransformation make_optimizer(const Flags& f, std::int64_t total_steps) {
  // Cosine decay to zero over the whole run, after a short warmup. Lion takes
  // steps of fixed size, so it wants a learning rate about 10x smaller.
  const double peak = f.optimizer == "lion" ? f.lr / 10 : f.lr;
  const optim::Schedule lr = optim::warmup_cosine_decay_schedule(
      {.init_value = 0.0, .peak_value = peak, .warmup_steps = std::min<std::int64_t>(200, total_steps / 10),
       .decay_steps = total_steps});
  if (f.optimizer == "adamw") return optim::adamw({.learning_rate = lr});
  if (f.optimizer == "adam") return optim::adam({.learning_rate = lr});
  if (f.optimizer == "sgd") return optim::sgd({.learning_rate = lr, .momentum = 0.9, .nesterov = true});
  if (f.optimizer == "rmsprop") return optim::rmsprop({.learning_rate = lr});
  if (f.optimizer == "lion") return optim::lion({.learning_rate = lr});
  throw ValueError("unknown optimizer '" + f.optimizer + "' (expected adamw, adam, sgd, rmsprop or lion)");
}

struct Evaluation {
  double loss = 0, accuracy = 0;
  std::vector<std::vector<long>> confusion = std::vector<std::vector<long>>(10, std::vector<long>(10, 0));
};

// The test set goes through in batches of 64, not in large ones: a batch's
// activations then stay in cache (the first conv's output is 3.2 MB at 64 images,
// 25 MB at 500). The batches are spread over the threads, each running whole
// batches on its own (the kernels inside a batch then run serially on it; a module
// may run on several threads at once in eval mode under NoGradGuard): no batch's
// activations move between the cores' caches, which costs most where the two vCPUs
// share no L3. 10,000 test images through LocalNet at 2 threads, each batch split
// over both threads: 0.108 s (a shared L3) and 0.165 s (separate L3s); one batch
// per thread: 0.102-0.105 s and 0.112-0.116 s.
constexpr std::size_t kEvalBatch = 64;

Evaluation evaluate(nn::Module& model, const Dataset& test) {
  struct BatchResult {
    double loss_sum = 0;
    std::vector<std::int64_t> predicted, targets;
  };
  std::vector<BatchResult> results((test.size() + kEvalBatch - 1) / kEvalBatch);
  model.eval();
  parallel_for(static_cast<std::int64_t>(results.size()), [&](std::int64_t b) {
    NoGradGuard no_grad;  // per thread
    const std::size_t first = static_cast<std::size_t>(b) * kEvalBatch;
    std::vector<std::size_t> indices(std::min(kEvalBatch, test.size() - first));
    std::iota(indices.begin(), indices.end(), first);
    const Batch batch = test.get_batch(indices);
    const Tensor logits = model(batch.inputs);
    BatchResult& r = results[static_cast<std::size_t>(b)];
    r.loss_sum = losses::softmax_cross_entropy(logits, batch.targets, losses::Reduction::Sum).item();
    const Tensor predicted = argmax(logits, -1);
    r.predicted.assign(predicted.data<std::int64_t>(), predicted.data<std::int64_t>() + predicted.numel());
    r.targets.assign(batch.targets.data<std::int64_t>(), batch.targets.data<std::int64_t>() + batch.targets.numel());
  });
  model.train();
  // Summed in batch order: the same figures at any thread count.
  Evaluation e;
  double loss_sum = 0;
  long correct = 0, seen = 0;
  for (const BatchResult& r : results) {
    loss_sum += r.loss_sum;
    for (std::size_t i = 0; i < r.predicted.size(); ++i) {
      ++e.confusion[static_cast<std::size_t>(r.targets[i])][static_cast<std::size_t>(r.predicted[i])];
      correct += r.predicted[i] == r.targets[i];
    }
    seen += static_cast<long>(r.predicted.size());
  }
  e.loss = loss_sum / static_cast<double>(seen);
  e.accuracy = static_cast<double>(correct) / static_cast<double>(seen);
  return e;
}

// checkpoint.npz: "model.<path>" parameters and buffers, "optimizer.<key>" state,
// "epoch", and the run's history so far as one array per metrics.csv column
// ("history.<column>"), so that a resumed run still reports every epoch. The
// seconds column stays out: with it, two runs that computed the same thing would
// not leave the same checkpoint.
void save_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer& opt, int epoch,
                     const std::vector<fashion::EpochMetrics>& history) {
  std::map<std::string, Tensor> entries;
  for (const auto& [name, t] : model.state_dict()) entries["model." + name] = t;
  for (const auto& [name, t] : opt.state_dict()) entries["optimizer." + name] = t;
  entries["epoch"] = scalar(epoch, DType::Int64);
  const Shape rows{static_cast<std::int64_t>(history.size())};
  std::vector<double> epochs;
  for (const auto& h : history) epochs.push_back(h.epoch);
  entries["history.epoch"] = from_vector(epochs, rows, DType::Int64);
  for (const auto& [column, field] : fashion::kHistoryColumns) {
    std::vector<double> values;
    for (const auto& h : history) values.push_back(h.*field);
    entries[std::string("history.") + column] = from_vector(values, rows, DType::Float64);
  }
  save_npz(path, entries);
}

struct Checkpoint {
  int epoch = 0;
  std::vector<fashion::EpochMetrics> history;  // seconds unknown (NaN)
  bool has_history = false;                    // false for checkpoints written before the history was kept
};

Checkpoint load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* opt) {
  const auto entries = load_npz(path);
  nn::StateDict model_state;
  optim::NamedTensors opt_state;
  for (const auto& [name, t] : entries) {
    if (name.rfind("model.", 0) == 0) model_state[name.substr(6)] = t;
    if (name.rfind("optimizer.", 0) == 0) opt_state.emplace_back(name.substr(10), t);
  }
  model.load_state_dict(model_state);
  if (opt) opt->load_state_dict(opt_state);
  const auto epoch = entries.find("epoch");
  if (epoch == entries.end()) throw IOError(path + ": not an xgrad training checkpoint (no 'epoch' entry)");
  Checkpoint c;
  c.epoch = static_cast<int>(epoch->second.item());
  const auto epochs = entries.find("history.epoch");
  if (epochs == entries.end()) return c;
  c.has_history = true;
  const std::vector<double> numbers = epochs->second.to_vector();
  c.history.resize(numbers.size());
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    c.history[i].epoch = static_cast<int>(numbers[i]);
    c.history[i].seconds = std::numeric_limits<double>::quiet_NaN();
  }
  for (const auto& [column, field] : fashion::kHistoryColumns) {
    const auto it = entries.find(std::string("history.") + column);
    if (it == entries.end() || it->second.shape() != epochs->second.shape())
      throw IOError(fmt::format("{}: 'history.{}' is missing or does not have one entry per epoch ({})", path, column,
                                numbers.size()));
    const std::vector<double> values = it->second.to_vector();
    for (std::size_t i = 0; i < values.size(); ++i) c.history[i].*field = values[i];
  }
  return c;
}

int run(const Flags& f) {
  std::optional<distributed::Session> session;
  if (f.distributed) session.emplace();
  const bool lead = !f.distributed || distributed::rank() == 0;
  auto say = [lead](const std::string& text) {
    if (lead) fmt::print("{}", text);
  };
  if (f.threads > 0) set_num_threads(f.threads);

  const TensorDataset train = load_fashion_mnist(f.data_dir, Split::Train,
                                                 f.limit ? std::optional<std::size_t>(f.limit) : std::nullopt);
  const TensorDataset test = load_fashion_mnist(f.data_dir, Split::Test,
                                                f.test_limit ? std::optional<std::size_t>(f.test_limit) : std::nullopt);
  auto model = fashion::make_model(f.model);
  model->set_seed(f.seed);
  if (!f.precision.empty()) nn::apply_policy(*model, nn::parse_policy(f.precision));
  model->init(slice(train.inputs(), 0, 0, 1));

  if (!f.eval.empty()) {
    load_checkpoint(f.eval, *model, nullptr);
    const Evaluation e = evaluate(*model, test);
    fashion::print_confusion_matrix(e.confusion);
    fmt::print("test loss: {:.4f}\ntest accuracy: {:.2f}%\n", e.loss, 100 * e.accuracy);
    return 0;
  }

  DataLoaderOptions loader_options{.batch_size = f.batch_size, .shuffle = true, .seed = f.seed};
  if (f.distributed) loader_options = distributed::sharded(loader_options);
  DataLoader loader(train, loader_options);
  const auto steps_per_epoch = static_cast<std::int64_t>(loader.num_batches());
  optim::Optimizer opt(*model, make_optimizer(f, steps_per_epoch * f.epochs));
  std::optional<distributed::DataParallel> data_parallel;
  if (f.distributed) data_parallel.emplace(model->named_parameters());

  if (f.dp_sgd && f.distributed) throw ValueError("--dp-sgd does not combine with --distributed");
  // DP-SGD: the aggregation runs first, then the optimizer on its output, which is
  // optax.dpsgd's chain. Its noise key restarts from the seed on --resume.
  const optim::GradientTransformation dp_aggregate =
      optim::differentially_private_aggregate(f.l2_norm_clip, f.noise_multiplier, f.seed);
  optim::OptState dp_state = dp_aggregate.init({});

  int first_epoch = 0;
  std::vector<fashion::EpochMetrics> history;
  if (!f.resume.empty()) {
    Checkpoint c = load_checkpoint(f.resume, *model, &opt);
    first_epoch = c.epoch;
    history = std::move(c.history);
    say(fmt::format("resumed from {} after epoch {}\n", f.resume, first_epoch));
    if (!c.has_history)
      say(fmt::format("(the checkpoint has no run history: metrics.csv starts at epoch {})\n", first_epoch + 1));
    // The wall-clock column is not in the checkpoint; take it from this directory's
    // metrics.csv where that file holds the same epochs.
    if (lead) fashion::recover_seconds(f.out + "/metrics.csv", history);
  }
  if (lead) fs::create_directories(f.out);
  say(fmt::format("model {} ({} parameters), {} threads, {} training images, batch {}{}\n", f.model,
                  model->num_parameters(), num_threads(), train.size(), f.batch_size,
                  f.distributed ? fmt::format(" x {} ranks", distributed::world_size()) : ""));
  if (f.dp_sgd)
    say(fmt::format("DP-SGD: per-example gradients clipped to L2 norm {}, noise multiplier {}\n", f.l2_norm_clip,
                    f.noise_multiplier));

  Evaluation last;
  for (int epoch = first_epoch; epoch < f.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    std::optional<fashion::ProgressBar> bar;
    if (lead) bar.emplace(fmt::format("epoch {}/{}", epoch + 1, f.epochs), steps_per_epoch);
    double loss_sum = 0, correct = 0;
    std::int64_t seen = 0, batches = 0;
    for (Batch& b : loader.epoch(static_cast<std::uint64_t>(epoch))) {
      Tensor logits, loss;
      if (f.dp_sgd) {
        const nn::StateDict per_example = per_example_grads(
            *model,
            [&](const Tensor& out, const Tensor& targets) {
              Tensor losses = losses::softmax_cross_entropy(out, targets);
              if (!logits.defined()) logits = out.detach(), loss = mean(losses.detach());  // the batched pass
              return losses;
            },
            b.inputs, b.targets);
        optim::NamedTensors updates;
        nn::NamedTensors params = model->named_parameters();
        for (const auto& [path, p] : params) updates.emplace_back(path, per_example.at(path));
        dp_aggregate.update(updates, dp_state, {});
        opt.zero_grad();
        for (std::size_t i = 0; i < params.size(); ++i) params[i].second.set_grad(updates[i].second);
      } else {
        logits = (*model)(b.inputs);
        loss = losses::softmax_cross_entropy(logits, b.targets, losses::Reduction::Mean);
        opt.zero_grad();
        loss.backward();
      }
      if (data_parallel) data_parallel->average_gradients();
      opt.step();
      const auto n = b.targets.numel();
      loss_sum += loss.item() * static_cast<double>(n);
      correct += losses::accuracy(logits.detach(), b.targets) * static_cast<double>(n);
      seen += n;
      if (bar) bar->update(++batches, loss_sum / static_cast<double>(seen), seen);
    }
    if (bar) bar->finish();
    if (f.distributed) {
      const auto totals = distributed::all_reduce_sum({loss_sum, correct, static_cast<double>(seen)});
      loss_sum = totals[0], correct = totals[1], seen = static_cast<std::int64_t>(totals[2]);
    }
    last = evaluate(*model, test);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    history.push_back({epoch + 1, loss_sum / static_cast<double>(seen), correct / static_cast<double>(seen), last.loss,
                       last.accuracy, seconds});
    say(fmt::format("epoch {}/{}: train loss {:.4f}, train acc {:.2f}%, test loss {:.4f}, test acc {:.2f}%, {:.1f}s\n",
                    epoch + 1, f.epochs, history.back().train_loss, 100 * history.back().train_accuracy, last.loss,
                    100 * last.accuracy, seconds));
    if (lead) {
      fashion::write_metrics_csv(f.out + "/metrics.csv", history);
      save_checkpoint(f.out + "/checkpoint.npz", *model, opt, epoch + 1, history);
    }
  }
  if (!lead) return 0;
  if (first_epoch >= f.epochs) last = evaluate(*model, test);  // no epoch ran: the checkpoint's accuracy
  fashion::print_epoch_table(history);
  fashion::print_confusion_matrix(last.confusion);
  if (!history.empty() && fashion::plot_curves(f.out + "/metrics.csv", f.out + "/curves.png", history.back().epoch))
    fmt::print("wrote {0}/metrics.csv, {0}/checkpoint.npz and {0}/curves.png\n", f.out);
  fmt::print("test accuracy: {:.2f}%\n", 100 * last.accuracy);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  CLI::App app{"Train a small network on Fashion-MNIST with xgrad"};
  app.add_option("--model", f.model, "local (Conv -> ConvLocal -> Dense), cnn, mlp, lstm or vit")
      ->check(CLI::IsMember({"local", "cnn", "mlp", "lstm", "vit"}))
      ->capture_default_str();
  app.add_option("--epochs", f.epochs, "training epochs")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--batch-size", f.batch_size, "batch size (per rank with --distributed)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--lr", f.lr, "peak learning rate (warmup, then cosine decay)")->capture_default_str();
  app.add_option("--optimizer", f.optimizer, "adamw, adam, sgd, rmsprop or lion")->capture_default_str();
  app.add_option("--threads", f.threads, "threads for xgrad's kernels and OpenBLAS (default: every core)");
  app.add_option("--seed", f.seed, "seed of the initial parameters and the data order")->capture_default_str();
  app.add_option("--data-dir", f.data_dir, "where the Fashion-MNIST .gz files are")->capture_default_str();
  app.add_option("--out", f.out, "run directory")->capture_default_str();
  app.add_option("--resume", f.resume, "continue from a checkpoint.npz");
  app.add_option("--eval", f.eval, "only evaluate a checkpoint.npz on the test set");
  app.add_option("--precision", f.precision, "dtype policy, e.g. params=float32,compute=bfloat16,output=float32");
  app.add_option("--limit", f.limit, "train on the first N images only (smoke runs)");
  app.add_option("--test-limit", f.test_limit, "evaluate on the first N test images only (smoke runs)");
  app.add_flag("--distributed", f.distributed, "data parallel over MPI ranks (run under mpirun)");
  app.add_flag("--dp-sgd", f.dp_sgd, "differentially private SGD: clip and noise per-example gradients");
  app.add_option("--l2-norm-clip", f.l2_norm_clip, "DP-SGD: each example's gradient is clipped to this L2 norm")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--noise-multiplier", f.noise_multiplier, "DP-SGD: noise std = l2-norm-clip x noise-multiplier")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return run(f);
  } catch (const std::exception& e) {
    fmt::print(stderr, "fashion_mnist: {}\n", e.what());
    return 1;
  }
}
