// The selection rule of max and min pooling on 8 float lanes, shared by the pooling
// kernels (core/kernels/pool.cpp) and the conv + max pool passes
// (core/kernels/conv/conv_shared_fast.cpp, conv_local_fast.cpp), which must select the
// same elements; and the relu those passes may apply after it.
// Internal to core/kernels (not installed); call it only from AVX2 code.
#pragma once

#include <immintrin.h>

namespace xgrad::kernels {

// One tap of a window: x (at flat indices `here`) replaces the running extreme `best`
// (at `arg`) in the lanes where it is strictly greater (TakeMax) or less, or where it
// is the first NaN (a NaN beats every number, as in XLA's max/min; a later NaN does not
// replace it). Returns those lanes' mask, for callers that carry more along.
template <bool TakeMax>
[[gnu::target("avx2"), gnu::always_inline]] inline __m256 select_extreme(__m256 x, __m256i here, __m256& best,
                                                                        __m256i& arg) {
  const __m256 better =
      _mm256_or_ps(_mm256_cmp_ps(x, best, TakeMax ? _CMP_GT_OQ : _CMP_LT_OQ),
                   _mm256_and_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q), _mm256_cmp_ps(best, best, _CMP_ORD_Q)));
  best = _mm256_blendv_ps(best, x, better);
  arg = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(arg), _mm256_castsi256_ps(here), better));
  return better;
}

// relu of 8 pooled values as Unary::Relu computes it: v where v > 0 or v is NaN ("not
// ≤ 0"), else +0 (for the conv + max pool + relu passes).
[[gnu::target("avx2"), gnu::always_inline]] inline __m256 relu_as_unary(__m256 v) {
  return _mm256_and_ps(v, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NLE_UQ));
}

}  // namespace xgrad::kernels
