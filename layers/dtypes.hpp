// The dtype a layer computes in, as flax.linen.dtypes.
//
// Every layer calls promote_dtype(inputs, params..., dtype=options.dtype): with
// no dtype the arguments' promoted dtype is used (at least float32 when they are
// all integer or bool), otherwise the given one. param_dtype only decides how
// parameters are stored.
#pragma once

#include <optional>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad::nn {

// flax.linen.dtypes.canonicalize_dtype. Undefined tensors are ignored. With
// `inexact`, a given non-floating dtype throws ValueError ("Dtype must be inexact")
// and an inferred integer/bool dtype becomes float32.
DType canonicalize_dtype(const std::vector<Tensor>& args, std::optional<DType> dtype = std::nullopt,
                         bool inexact = true);

// flax.linen.dtypes.promote_dtype: every defined argument cast (differentiably)
// to canonicalize_dtype(args, dtype, inexact); undefined ones pass through.
std::vector<Tensor> promote_dtype(const std::vector<Tensor>& args, std::optional<DType> dtype = std::nullopt,
                                  bool inexact = true);

}  // namespace xgrad::nn
