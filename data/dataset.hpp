// Datasets: indexed collections of (input, target) examples, read a batch at a time.
#pragma once

#include <cstddef>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad {

// A batch of examples stacked along a new leading axis. Structured bindings
// work: `auto [x, y] = batch;`.
struct Batch {
  Tensor inputs;   // examples, [batch, ...]
  Tensor targets;  // their labels or targets, [batch, ...]
};

// The contract a DataLoader relies on. get_batch gathers whole batches at once
// (one virtual call and one copy per batch, not per example) and must be safe to
// call from a background thread while the training thread runs: the DataLoader's
// prefetch worker calls it (from one thread at a time).
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual std::size_t size() const = 0;  // the number of examples
  // Examples at `indices`, in that order; repeated indices are allowed.
  virtual Batch get_batch(const std::vector<std::size_t>& indices) const = 0;
};

// Examples are the rows (first-axis slices) of two tensors of equal length, e.g.
// images [N, 28, 28, 1] and labels [N]. The tensors are shared, not copied: do
// not modify them in place while a DataLoader reads them.
class TensorDataset : public Dataset {
 public:
  TensorDataset(Tensor inputs, Tensor targets);  // throws ShapeError unless both have rank >= 1 and equal N

  std::size_t size() const override;  // N, the length of the first axis
  Batch get_batch(const std::vector<std::size_t>& indices) const override;  // ValueError on an index >= size()

  // All inputs, [N, ...].
  const Tensor& inputs() const { return inputs_; }
  // All targets, [N, ...].
  const Tensor& targets() const { return targets_; }

 private:
  Tensor inputs_;
  Tensor targets_;
};

}  // namespace xgrad
