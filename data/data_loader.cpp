#include "data/data_loader.hpp"

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "core/error.hpp"

namespace xgrad {
namespace {

// SplitMix64's finaliser: a bijective mix, so nearby (seed, epoch) pairs give
// unrelated generator states.
std::uint64_t mix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Uniform in [0, bound) without modulo bias: reject draws below 2^64 mod bound.
// (std::uniform_int_distribution's algorithm differs between standard libraries.)
std::uint64_t uniform_below(std::mt19937_64& rng, std::uint64_t bound) {
  const std::uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    const std::uint64_t r = rng();
    if (r >= threshold) return r % bound;
  }
}

// Batches waiting in the prefetch queue at most; with the one the consumer holds
// and the one being gathered, at most four are alive.
constexpr std::size_t kMaxReady = 2;

}  // namespace

std::vector<std::size_t> epoch_permutation(std::size_t n, std::uint64_t seed, std::uint64_t epoch) {
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::mt19937_64 rng(mix64(mix64(seed) ^ epoch));
  for (std::size_t i = n; i > 1; --i) std::swap(order[i - 1], order[uniform_below(rng, i)]);
  return order;
}

// ---- DataLoader

DataLoader::DataLoader(const Dataset& dataset, DataLoaderOptions options) : dataset_(dataset), options_(options) {
  if (options_.batch_size == 0) throw ValueError("DataLoader: batch_size must be positive");
  if (options_.num_shards == 0) throw ValueError("DataLoader: num_shards must be positive");
  if (options_.shard_index >= options_.num_shards)
    throw ValueError(fmt::format("DataLoader: shard_index {} is out of range for {} shards", options_.shard_index,
                                 options_.num_shards));
}

std::size_t DataLoader::num_batches() const {
  const std::size_t global_batch = options_.batch_size * options_.num_shards;
  const std::size_t n = dataset_.size();
  return options_.drop_last ? n / global_batch : (n + global_batch - 1) / global_batch;
}

std::vector<std::vector<std::size_t>> DataLoader::batch_indices(std::uint64_t epoch) const {
  const std::size_t n = dataset_.size();
  std::vector<std::size_t> order;
  if (options_.shuffle) {
    order = epoch_permutation(n, options_.seed, epoch);
  } else {
    order.resize(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
  }
  const std::size_t shards = options_.num_shards;
  const std::size_t s = options_.shard_index;
  const std::size_t global_batch = options_.batch_size * shards;
  std::vector<std::vector<std::size_t>> batches(num_batches());
  for (std::size_t k = 0; k < batches.size(); ++k) {
    const std::size_t start = k * global_batch;
    const std::size_t r = std::min(global_batch, n - start);  // this global batch's size
    const auto first = order.begin() + static_cast<std::ptrdiff_t>(start + s * r / shards);
    const auto last = order.begin() + static_cast<std::ptrdiff_t>(start + (s + 1) * r / shards);
    batches[k].assign(first, last);
  }
  return batches;
}

DataLoader::Epoch DataLoader::epoch(std::uint64_t epoch) const {
  return Epoch(dataset_, batch_indices(epoch), options_.prefetch);
}

// ---- Epoch

struct DataLoader::Epoch::State {
  // A gathered batch, or the exception gathering it threw.
  struct Prefetched {
    Batch batch;
    std::exception_ptr error;
  };

  State(const Dataset& dataset, std::vector<std::vector<std::size_t>> batches, bool prefetch)
      : dataset(dataset), batches(std::move(batches)), prefetch(prefetch) {}
  ~State() { stop_worker(); }

  void start() {
    started = true;
    if (prefetch && !batches.empty()) worker = std::thread([this] { produce(); });
    advance();
  }

  // Makes batch `next` the current one, or marks the pass finished.
  void advance() {
    if (done) return;
    if (next == batches.size()) {
      done = true;
      current = {};
      return;
    }
    if (!prefetch) {
      try {
        current = dataset.get_batch(batches[next++]);
      } catch (...) {
        done = true;
        throw;
      }
      return;
    }
    Prefetched item;
    {
      std::unique_lock lock(mutex);
      changed.wait(lock, [&] { return !ready.empty(); });
      item = std::move(ready.front());
      ready.pop_front();
    }
    changed.notify_all();
    ++next;
    if (item.error) {
      done = true;
      std::rethrow_exception(item.error);
    }
    current = std::move(item.batch);
  }

  // The prefetch thread: gathers batches in order, waiting while the queue is full.
  void produce() {
    for (const auto& indices : batches) {
      Prefetched item;
      try {
        item.batch = dataset.get_batch(indices);
      } catch (...) {
        item.error = std::current_exception();
      }
      const bool failed = item.error != nullptr;
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return stopping || ready.size() < kMaxReady; });
        if (stopping) return;
        ready.push_back(std::move(item));
      }
      changed.notify_all();
      if (failed) return;
    }
  }

  void stop_worker() {
    if (!worker.joinable()) return;
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    changed.notify_all();
    worker.join();
  }

  const Dataset& dataset;
  const std::vector<std::vector<std::size_t>> batches;
  const bool prefetch;

  // Consumer side.
  bool started = false;
  bool done = false;
  std::size_t next = 0;  // the batch advance() delivers next
  Batch current;

  // Shared with the prefetch thread, under `mutex`.
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<Prefetched> ready;
  bool stopping = false;
  std::thread worker;
};

DataLoader::Epoch::Epoch(const Dataset& dataset, std::vector<std::vector<std::size_t>> batches, bool prefetch)
    : state_(std::make_unique<State>(dataset, std::move(batches), prefetch)) {}
DataLoader::Epoch::Epoch(Epoch&&) noexcept = default;
DataLoader::Epoch& DataLoader::Epoch::operator=(Epoch&&) noexcept = default;
DataLoader::Epoch::~Epoch() = default;

DataLoader::Epoch::Iterator DataLoader::Epoch::begin() {
  if (!state_->started) state_->start();
  return Iterator(state_.get());
}

std::size_t DataLoader::Epoch::size() const { return state_->batches.size(); }

Batch& DataLoader::Epoch::Iterator::operator*() const { return state_->current; }

DataLoader::Epoch::Iterator& DataLoader::Epoch::Iterator::operator++() {
  state_->advance();
  return *this;
}

bool DataLoader::Epoch::Iterator::operator==(std::default_sentinel_t) const {
  return state_ == nullptr || state_->done;
}

}  // namespace xgrad
