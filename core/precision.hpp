// Matmul/conv precision, as jax.lax.Precision.
//
// On accelerators JAX uses it to pick bf16/TF32 passes. On this CPU framework it
// only matters for float32 (and 16-bit floats, which compute in float32):
// Default and High accumulate in float32, Highest accumulates in float64 and
// rounds the result once. float64 always accumulates in float64.
#pragma once

#include <string_view>

namespace xgrad {

// The precision of a matmul or conv (see above): Default and High accumulate float32 in float32, Highest in float64.
enum class Precision { Default, High, Highest };

// The strings lax.canonicalize_precision accepts: "default", "bfloat16", "fastest"
// -> Default; "high", "bfloat16_3x", "tensorfloat32" -> High; "highest", "float32"
// -> Highest. Anything else throws ValueError.
Precision parse_precision(std::string_view name);
std::string_view precision_name(Precision precision);  // "default", "high", "highest"

}  // namespace xgrad
