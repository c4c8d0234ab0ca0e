#include "layers/dtypes.hpp"

#include <string>

#include "autograd/ops.hpp"
#include "core/error.hpp"

namespace xgrad::nn {

DType canonicalize_dtype(const std::vector<Tensor>& args, std::optional<DType> dtype, bool inexact) {
  if (dtype) {
    if (inexact && !is_floating(*dtype))
      throw ValueError("Dtype must be inexact: " + std::string(dtype_name(*dtype)) +
                       " (give a floating dtype such as float32 or bfloat16, or none to infer it)");
    return *dtype;
  }
  std::optional<DType> result;
  for (const Tensor& a : args)
    if (a.defined()) result = result ? promote_types(*result, a.dtype()) : a.dtype();
  if (!result) throw ValueError("canonicalize_dtype: no arguments and no dtype given");
  return !inexact || is_floating(*result) ? *result : promote_types(DType::Float32, *result);
}

std::vector<Tensor> promote_dtype(const std::vector<Tensor>& args, std::optional<DType> dtype, bool inexact) {
  const DType target = canonicalize_dtype(args, dtype, inexact);
  std::vector<Tensor> out;
  out.reserve(args.size());
  for (const Tensor& a : args) out.push_back(a.defined() ? cast(a, target) : Tensor());
  return out;
}

}  // namespace xgrad::nn
