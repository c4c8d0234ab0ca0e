// DataLoader: shuffled, batched, optionally sharded and prefetched passes over a Dataset.
//
//   TensorDataset train = load_fashion_mnist(kFashionMnistDir, Split::Train);
//   DataLoader loader(train, {.batch_size = 128, .seed = 42});
//   for (std::size_t e = 0; e < epochs; ++e)
//     for (Batch& batch : loader.epoch(e)) step(batch.inputs, batch.targets);
//
// Order. Epoch e visits the permutation epoch_permutation(size, seed, e) (the
// identity when shuffle is off) in consecutive batches. The order depends only
// on (seed, epoch, dataset size, options), not on the platform, the standard
// library or prefetching, so a run can resume at any epoch and reproduce it.
//
// Sharding (data parallelism). With num_shards = S, every shard uses the same
// seed and the same permutation; global batch k is positions [k*B*S, (k+1)*B*S)
// of it, and shard s's k-th batch is the slice [s*B, (s+1)*B) of global batch k.
// So the S shards' k-th batches are disjoint and together are exactly the batch
// a single process with batch_size B*S would see at step k, and every shard runs
// the same number of steps. Without drop_last, a last, partial global batch of r
// examples is split into balanced contiguous slices [floor(s*r/S),
// floor((s+1)*r/S)) (the same formula gives [s*B, (s+1)*B) when r = B*S); a
// slice is empty (first dimension 0) when r < S. Use drop_last for equal sizes.
//
// Prefetch. With prefetch on, a background thread gathers the next batches
// (at most two waiting) while the training step runs. An exception thrown by
// Dataset::get_batch reaches the consumer at the batch that failed, as it would
// without prefetch. Leaving the loop early (break, exception) is fine: the
// Epoch's destructor stops and joins the thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <vector>

#include "data/dataset.hpp"

namespace xgrad {

// Designated initializers name the fields in this order: batch_size, shuffle, drop_last, seed,
//   prefetch, num_shards, shard_index.
struct DataLoaderOptions {
  std::size_t batch_size = 32;  // per shard
  bool shuffle = true;          // visit a fresh permutation each epoch; false: dataset order
  bool drop_last = false;       // drop the last global batch when it is partial
  std::uint64_t seed = 0;       // with the epoch, determines the permutation
  bool prefetch = true;         // gather the next batches on a background thread
  std::size_t num_shards = 1;   // S: data-parallel processes sharing each global batch
  std::size_t shard_index = 0;  // this process's shard, in [0, num_shards)
};

// A permutation of 0..n-1 determined by (seed, epoch) alone: std::mt19937_64
// seeded with a mix of both, an explicit Fisher-Yates shuffle and unbiased
// bounded draws, so it is identical with every standard library.
std::vector<std::size_t> epoch_permutation(std::size_t n, std::uint64_t seed, std::uint64_t epoch);

// Splits a Dataset into batches per epoch (see the top of this file for order, sharding and prefetch).
class DataLoader {
 public:
  class Epoch;

  // The dataset is not copied and must outlive the loader and its epochs.
  // Throws ValueError for batch_size 0, num_shards 0 or shard_index >= num_shards.
  DataLoader(const Dataset& dataset, DataLoaderOptions options);
  DataLoader(const Dataset&&, DataLoaderOptions) = delete;  // would dangle

  // The options it was built with.
  const DataLoaderOptions& options() const { return options_; }
  std::size_t num_batches() const;  // batches per epoch (the same on every shard)
  // This shard's batches of epoch e, as dataset indices.
  std::vector<std::vector<std::size_t>> batch_indices(std::uint64_t epoch) const;

  // One pass; a single-use input range of Batch&. Each Batch& stays valid until
  // the iterator advances (copy the Batch, a pair of handles, to keep it).
  Epoch epoch(std::uint64_t epoch) const;

 private:
  const Dataset& dataset_;
  DataLoaderOptions options_;
};

// One pass over the data (DataLoader::epoch), move-only; iterate it once with a range-for.
class DataLoader::Epoch {
 public:
  class Iterator;

  Epoch(Epoch&&) noexcept;             // moves the pass (and its prefetch thread)
  Epoch& operator=(Epoch&&) noexcept;  // stops this pass's thread, then takes the other's
  ~Epoch();

  Iterator begin();  // starts the pass (and the prefetch thread); call once
  // The end marker of the range.
  std::default_sentinel_t end() const { return {}; }
  std::size_t size() const;  // number of batches

 private:
  friend class DataLoader;
  struct State;
  Epoch(const Dataset& dataset, std::vector<std::vector<std::size_t>> batches, bool prefetch);
  std::unique_ptr<State> state_;
};

// A single-pass input iterator over an Epoch's batches.
class DataLoader::Epoch::Iterator {
 public:
  using value_type = Batch;                // the element type
  using difference_type = std::ptrdiff_t;  // required of an input iterator

  Iterator() = default;
  Batch& operator*() const;                        // the current batch, valid until the next ++
  // Member access to the current batch.
  Batch* operator->() const { return &**this; }
  Iterator& operator++();                          // moves to the next batch (waits for it under prefetch)
  // Moves to the next batch (input iterators return nothing from post-increment).
  void operator++(int) { ++*this; }
  bool operator==(std::default_sentinel_t) const;  // true once every batch has been visited

 private:
  friend class Epoch;
  explicit Iterator(State* state) : state_(state) {}
  State* state_ = nullptr;
};

}  // namespace xgrad
