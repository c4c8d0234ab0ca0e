// Shape kernels (no tape).
#pragma once

#include "core/tensor.hpp"

namespace xgrad::kernels {

// Same elements, new shape (a copy: every tensor owns a row-major xarray of its own shape).
Tensor reshape(const Tensor& x, const Shape& shape);

// Resolves one -1 entry and checks the element count; throws ShapeError naming `op`.
Shape infer_reshape(const Shape& from, const Shape& to, const char* op);

}  // namespace xgrad::kernels
