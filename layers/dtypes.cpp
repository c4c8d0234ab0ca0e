#include "layers/dtypes.hpp"

#include <fmt/format.h>

#include "autograd/ops.hpp"
#include "core/error.hpp"

namespace xgrad::nn {

DType canonicalize_dtype(const std::vector<Tensor>& args, std::optional<DType> dtype, bool inexact) {
  if (dtype) {
    if (inexact && !is_floating(*dtype))
      throw ValueError(fmt::format("Dtype must be inexact: {}", dtype_name(*dtype)));
    return *dtype;
  }
  std::optional<DType> result;
  for (const Tensor& a : args)
    if (a.defined()) result = result ? promote_types(*result, a.dtype()) : a.dtype();
  if (!result) throw ValueError("canonicalize_dtype: no arguments to infer a dtype from");
  if (inexact && !is_floating(*result)) return promote_types(DType::Float32, *result);
  return *result;
}

std::vector<Tensor> promote_dtype(const std::vector<Tensor>& args, std::optional<DType> dtype, bool inexact) {
  const DType d = canonicalize_dtype(args, dtype, inexact);
  std::vector<Tensor> out;
  out.reserve(args.size());
  for (const Tensor& a : args) out.push_back(a.defined() ? cast(a, d) : a);
  return out;
}

}  // namespace xgrad::nn
