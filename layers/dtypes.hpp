// flax.linen.dtypes: the dtype a layer computes in (spec §7.1).
#pragma once

#include <optional>
#include <vector>

#include "core/tensor.hpp"

namespace xgrad::nn {

// canonicalize_dtype(*args, dtype, inexact=True): `dtype` when given (it must be
// floating, else ValueError "Dtype must be inexact"); otherwise the JAX result
// type of the defined args, with integer and bool results raised to float32.
DType canonicalize_dtype(const std::vector<Tensor>& args, std::optional<DType> dtype = std::nullopt);

// promote_dtype: every defined arg cast (differentiably) to canonicalize_dtype;
// undefined args stay undefined.
std::vector<Tensor> promote_dtype(const std::vector<Tensor>& args, std::optional<DType> dtype = std::nullopt);

}  // namespace xgrad::nn
