// A convolution's geometry as the fast kernels (conv_local_fast, conv_shared_fast)
// see it: exactly three spatial axes (a 1-D or 2-D conv gets leading unit axes, which
// cost nothing: their loops run once) over an input that is already padded. Padding of
// any form arrives here as explicit (lo, hi) pairs (docs/convlocal.md §5.3; negative = crop); the
// kernels copy the input into a zero-bordered scratch buffer once per call and crop the
// input gradient back, so the tiles only ever run VALID convolutions with strides and
// kernel dilation. Internal to core/kernels.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/kernels/conv/conv_geometry.hpp"
#include "core/kernels/conv/conv_tiles.hpp"

namespace xgrad::kernels::tiles {

struct FastGeometry {
  Index batch = 0, channels = 0, features = 0;
  std::array<Index, 3> input{}, padded{}, kernel{}, stride{}, dilation{}, out{};
  std::array<Index, 3> pad_lo{};  // padded index = input index + pad_lo (any sign)

  Index padded_sample_stride = 0;  // see fast_geometry()

  bool needs_padding() const { return padded != input || pad_lo != std::array<Index, 3>{}; }
  // Element distance between neighbours along spatial axis j of the padded input.
  Index axis_stride(int j) const;
  // Distance between samples in x as the kernels read it: x's own when no padding is
  // needed, else the padded copy's.
  Index sample_stride() const {
    return needs_padding() ? padded_sample_stride : input[0] * input[1] * input[2] * channels;
  }
  Index taps() const { return kernel[0] * kernel[1] * kernel[2]; }
  Index positions() const { return out[0] * out[1] * out[2]; }
  // tap t (row-major over the kernel) -> element offset in x from the patch origin.
  Index tap_offset(Index tap) const;
  // Every output position's patch origin within one padded sample, row-major.
  std::vector<Index> position_origins() const;
};

// Whether the fast kernels can run `g`: spatial rank 1..3, no input (lhs) dilation,
// non-empty operands and output. (The CPU check is tiles::cpu_supported().)
bool fast_geometry_supported(const ConvGeometry& g, std::int64_t features);
FastGeometry fast_geometry(const ConvGeometry& g, std::int64_t features);

// x itself when no padding is needed, else x copied into the zero-bordered (or
// cropped) padded layout in per-thread scratch.
const float* padded_input(const FastGeometry& g, const float* x);
// A zeroed buffer of the padded input's size for an input gradient: d_x itself when
// no padding is needed, else scratch that crop_input_gradient() copies into d_x.
float* padded_input_gradient(const FastGeometry& g, float* d_x);
void crop_input_gradient(const FastGeometry& g, const float* padded, float* d_x);
// The same per sample, for kernels whose tasks are samples (zero, accumulate and crop
// one sample while it is in cache): the buffer is not zeroed; crop sample n of it.
float* padded_input_gradient_unzeroed(const FastGeometry& g, float* d_x);
void crop_input_gradient_sample(const FastGeometry& g, const float* padded, float* d_x, Index n);

}  // namespace xgrad::kernels::tiles
