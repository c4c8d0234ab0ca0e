// flax.linen.dtypes: the dtype a layer computes in (docs/convlocal.md §7.1).
//
// Every layer calls promote_dtype({inputs, params...}, options.dtype): with no
// dtype the arguments' promoted dtype is used (at least float32 when they are
// all integer or bool), otherwise the given one. param_dtype only decides how
// parameters are stored.
#pragma once

#include <optional>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad::nn {

// canonicalize_dtype(*args, dtype, inexact): `dtype` when given (with `inexact` it
// must be floating, else ValueError "Dtype must be inexact"); otherwise the JAX
// result type of the defined args, with `inexact` raising integer and bool
// results to float32.
DType canonicalize_dtype(const std::vector<Tensor>& args, std::optional<DType> dtype = std::nullopt,
                         bool inexact = true);

// promote_dtype: every defined arg cast (differentiably) to canonicalize_dtype;
// undefined args stay undefined.
std::vector<Tensor> promote_dtype(const std::vector<Tensor>& args, std::optional<DType> dtype = std::nullopt,
                                  bool inexact = true);

}  // namespace xgrad::nn
