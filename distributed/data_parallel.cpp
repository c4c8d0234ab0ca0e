// The parts of distributed.hpp built on the collectives alone, with or without MPI.
#include "distributed/distributed.hpp"

namespace xgrad::distributed {

DataLoaderOptions sharded(DataLoaderOptions options) {
  options.num_shards = static_cast<std::size_t>(world_size());
  options.shard_index = static_cast<std::size_t>(rank());
  return options;
}

DataParallel::DataParallel(NamedTensors params, DataParallelOptions options)
    : params_(std::move(params)), options_(options) {
  broadcast_parameters(params_, options_.root);
}

void DataParallel::average_gradients() const { all_reduce_gradients(params_, options_.bucket_bytes); }

}  // namespace xgrad::distributed
