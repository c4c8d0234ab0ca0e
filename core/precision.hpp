// Matmul/conv precision, as jax.lax.Precision. On this CPU framework it matters
// only for float32 (and 16-bit floats, which compute in float32): Default and High
// accumulate in float32, Highest accumulates in float64 and rounds once.
#pragma once

namespace xgrad {

enum class Precision { Default, High, Highest };

}  // namespace xgrad
