// Data-parallel training across processes and machines, on MPI.
//
// Every process (a "rank") holds a full copy of the model and trains on its own
// shard of each global batch; before each optimizer step the ranks average their
// gradients, so all of them take the same step, the one a single process would
// take on the whole global batch. Compute scales with the number of ranks; each
// step adds one all-reduce of the gradients, which moves about 2 x the gradient
// bytes through each rank's link (2(S-1)/S for S ranks in a ring), whatever S.
//
//   int main(int argc, char** argv) {
//     distributed::Session session(&argc, &argv);                // MPI_Init .. MPI_Finalize
//     ... build the model and run it once so its parameters exist ...
//     distributed::DataParallel dp(model.named_parameters());    // everyone starts from rank 0's values
//     DataLoader loader(train, distributed::sharded({.batch_size = 64, .seed = 1}));
//     for (Batch& b : loader.epoch(e)) {
//       Tensor loss = ...;  loss.backward();
//       dp.average_gradients();                                   // between backward and the optimizer step
//       ...optimizer step...
//     }
//   }
//   $ mpirun -np 2 ./train                 (several hosts: mpirun -np 8 --hostfile hosts ./train)
//
// Collective calls (everything but is_available, is_initialized, rank and
// world_size) must be made by every rank, in the same order, from the thread
// that initialised MPI. A rank that passes different parameter names, shapes or
// dtypes gets a ValueError, and so do the others, instead of a hang.
//
// MPI is optional at build time (meson option `mpi`). Without it this header
// still compiles, XGRAD_HAVE_MPI is not defined, is_available() is false and
// every other function throws xgrad::Error.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.hpp"
#include "data/data_loader.hpp"
#include "distributed/config.hpp"  // XGRAD_HAVE_MPI

namespace xgrad::distributed {

using xgrad::NamedTensors;  // core/tensor.hpp

// Gradient buckets of 4 MiB: large enough that bandwidth, not per-message
// latency, dominates; small enough to stay in cache-friendly reusable buffers.
inline constexpr std::size_t kDefaultBucketBytes = std::size_t{4} << 20;

bool is_available();  // whether xgrad was built with MPI

// MPI_Init_thread (MPI_THREAD_FUNNELED: other threads, such as the DataLoader's
// prefetcher, may exist but never call MPI) unless MPI is already initialised;
// finalize() ends MPI only if init() started it.
void init(int* argc = nullptr, char*** argv = nullptr);
// Frees xgrad's communicator, and calls MPI_Finalize if init() started MPI; a no-op when not initialised.
void finalize();
bool is_initialized();  // init() has run and finalize() has not

// init() for its lifetime. If an exception leaves the Session's scope, the
// destructor calls MPI_Abort rather than MPI_Finalize: the other ranks are
// probably waiting in a collective this rank will never join, and would hang.
// So report errors inside the Session's scope: the abort ends the whole job.
class Session {
 public:
  // init(argc, argv); the destructor finalizes (or aborts, see above).
  explicit Session(int* argc = nullptr, char*** argv = nullptr);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

 private:
  int uncaught_at_start_;
};

int rank();        // 0 .. world_size() - 1
int world_size();  // the number of ranks; Error before init()

// Overwrites every tensor with rank root's values (all dtypes, bit-exact); call
// once at the start so all ranks begin from the same initialisation.
void broadcast_parameters(NamedTensors& params, int root = 0);

// Replaces each parameter's .grad() by its average over the ranks. A gradient
// missing (undefined) on some ranks counts as zeros there and ends up defined on
// all of them; one missing everywhere stays undefined. Gradients are packed into
// buckets of at most bucket_bytes (float32 buffers for float32/16-bit floats,
// float64 for float64), one in-place MPI_Allreduce per bucket. A gradient that
// owns its storage is overwritten in place, otherwise it is replaced.
// Bits: every rank receives the same sums, so the ranks' parameters stay identical
// step after step. The average equals one process's gradient on the whole global
// batch only to rounding: that process sums all the samples in its kernels' order,
// here each rank sums its shard and MPI adds the shards' sums (in an order its
// algorithm picks for the message size and world size).
void all_reduce_gradients(const NamedTensors& params, std::size_t bucket_bytes = kDefaultBucketBytes);

// Metrics: the mean over ranks of one value; the elementwise sum over ranks of a vector.
double all_reduce_mean(double value);
std::vector<double> all_reduce_sum(std::vector<double> values);  // every rank must pass the same count

// `options` with this rank's shard: num_shards = world_size(), shard_index = rank().
// batch_size stays per rank, so the global batch is batch_size * world_size().
DataLoaderOptions sharded(DataLoaderOptions options);

// Designated initializers name the fields in this order: root, bucket_bytes.
struct DataParallelOptions {
  int root = 0;  // the rank whose initial values everyone starts from
  std::size_t bucket_bytes = kDefaultBucketBytes;  // the largest gradient bucket per MPI_Allreduce
};

// Broadcast at the start plus gradient averaging per step, for one model. The
// tensors are held by handle: the optimizer must update them in place.
class DataParallel {
 public:
  // Broadcasts `params` from options.root. Construct it on every rank once the
  // parameters exist (after a lazy initialisation), before the first step.
  explicit DataParallel(NamedTensors params, DataParallelOptions options = {});

  void average_gradients() const;  // after backward, before the optimizer step
  // The parameters it averages the gradients of.
  const NamedTensors& parameters() const { return params_; }

 private:
  NamedTensors params_;
  DataParallelOptions options_;
};

}  // namespace xgrad::distributed
