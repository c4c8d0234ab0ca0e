#include "core/kernels/conv_patches.hpp"

#include "core/tensor_impl.hpp"

namespace xgrad::kernels {

namespace {

struct RowStrides {
  std::int64_t batch, position;
};

RowStrides row_strides(const ConvGeometry& g, PatchRows rows) {
  return rows == PatchRows::PositionMajor ? RowStrides{1, g.batch} : RowStrides{g.out_positions(), 1};
}

}  // namespace

template <class T, class A>
void extract_patches(const T* x, const ConvGeometry& g, const std::vector<std::int64_t>& table, PatchRows rows,
                     A* patches) {
  const std::int64_t C = g.channels, S = g.window_size(), I = C * S, P = g.out_positions();
  const std::int64_t image = g.in_positions() * C;
  const RowStrides rs = row_strides(g, rows);
  for (std::int64_t b = 0; b < g.batch; ++b) {
    const T* src = x + b * image;
    for (std::int64_t o = 0; o < P; ++o) {
      A* dst = patches + (b * rs.batch + o * rs.position) * I;
      const std::int64_t* sources = table.data() + o * S;
      // Writes run along the row; each window offset r reads its own channel run.
      for (std::int64_t c = 0; c < C; ++c, dst += S)
        for (std::int64_t r = 0; r < S; ++r)
          dst[r] = sources[r] < 0 ? A{} : convert_element<A>(src[sources[r] + c]);
    }
  }
}

template <class A>
void scatter_add_patches(const A* patches, const ConvGeometry& g, const std::vector<std::int64_t>& table,
                         PatchRows rows, A* dx) {
  const std::int64_t C = g.channels, S = g.window_size(), I = C * S, P = g.out_positions();
  const std::int64_t image = g.in_positions() * C;
  const RowStrides rs = row_strides(g, rows);
  for (std::int64_t b = 0; b < g.batch; ++b) {
    A* dst = dx + b * image;
    for (std::int64_t o = 0; o < P; ++o) {
      const A* src = patches + (b * rs.batch + o * rs.position) * I;
      const std::int64_t* sources = table.data() + o * S;
      for (std::int64_t r = 0; r < S; ++r) {
        if (sources[r] < 0) continue;
        A* d = dst + sources[r];
        for (std::int64_t c = 0; c < C; ++c) d[c] += src[c * S + r];
      }
    }
  }
}

#define XGRAD_INSTANTIATE_EXTRACT(T, A)                                                                  \
  template void extract_patches<T, A>(const T*, const ConvGeometry&, const std::vector<std::int64_t>&, \
                                      PatchRows, A*);
XGRAD_INSTANTIATE_EXTRACT(half, half)
XGRAD_INSTANTIATE_EXTRACT(bfloat16, bfloat16)
XGRAD_INSTANTIATE_EXTRACT(half, float)
XGRAD_INSTANTIATE_EXTRACT(bfloat16, float)
XGRAD_INSTANTIATE_EXTRACT(float, float)
XGRAD_INSTANTIATE_EXTRACT(half, double)
XGRAD_INSTANTIATE_EXTRACT(bfloat16, double)
XGRAD_INSTANTIATE_EXTRACT(float, double)
XGRAD_INSTANTIATE_EXTRACT(double, double)
#undef XGRAD_INSTANTIATE_EXTRACT

template void scatter_add_patches<float>(const float*, const ConvGeometry&, const std::vector<std::int64_t>&,
                                         PatchRows, float*);
template void scatter_add_patches<double>(const double*, const ConvGeometry&, const std::vector<std::int64_t>&,
                                          PatchRows, double*);

}  // namespace xgrad::kernels
