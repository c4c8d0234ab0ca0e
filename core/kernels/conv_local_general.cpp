#include "core/kernels/conv_local_general.hpp"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <optional>
#include <vector>

#include "core/kernels/conv_gemm.hpp"
#include "core/kernels/conv_patches.hpp"
#include "core/kernels/conv_scratch.hpp"
#include "core/threading.hpp"

namespace xgrad::kernels {

namespace {

// The operand blocks of position o and feature group gi (row-major, leading dims):
//   patches P_o: N x Ig at block + gi*Ig, ld I
//   kernel  K_o: Ig x Fg at kernel + o*Ig*F + gi*Fg, ld F
//   output  Y_o: N x Fg at y + o*F + gi*Fg, ld P*F (likewise g)
struct LocalDims {
  std::int64_t N, P, I, F, G, Ig, Fg;
  explicit LocalDims(const ConvContraction& c)
      : N(c.geometry.batch), P(c.geometry.out_positions()), I(c.geometry.patch_size()), F(c.features),
        G(c.groups), Ig(I / G), Fg(F / G) {}
};

// The threads a pass over P positions uses: num_threads(), at most one per position.
int position_threads(std::int64_t P) { return static_cast<int>(std::clamp<std::int64_t>(P, 1, num_threads())); }

// Runs setup(thread) on each thread, then body(o, thread) for every output position
// (contiguous ranges per thread) on position_threads(P) threads, OpenBLAS
// single-threaded meanwhile, then after(thread, team size) on each thread once all
// positions are done. The first exception thrown in a thread is rethrown after the
// region (exceptions must not leave an OpenMP region).
template <class Setup, class Body, class After>
void for_each_position(std::int64_t P, Setup&& setup, Body&& body, After&& after) {
  const int threads = position_threads(P);
  std::optional<SerialBlasScope> serial_blas;
  if (threads > 1) serial_blas.emplace();
  std::exception_ptr error;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
    bool ok = true;
    try {
      setup(t);
    } catch (...) {
      ok = false;
#pragma omp critical(xgrad_conv_local_general_error)
      if (!error) error = std::current_exception();
    }
#pragma omp for schedule(static)
    for (std::int64_t o = 0; o < P; ++o) {
      if (!ok) continue;
      try {
        body(o, t);
      } catch (...) {
        ok = false;
#pragma omp critical(xgrad_conv_local_general_error)
        if (!error) error = std::current_exception();
      }
    }
    if (!error) after(t, team);
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace

template <class T, class A>
void local_conv_forward(const T* x, const A* kernel, const A* bias, A* y, const ConvContraction& c) {
  const LocalDims d(c);
  const auto table = patch_source_table(c.geometry);
  const auto block_size = static_cast<std::size_t>(d.N * d.I);
  std::vector<A*> blocks(static_cast<std::size_t>(position_threads(d.P)));
  for_each_position(
      d.P, [&](int t) { blocks[t] = conv_scratch<A>(ConvScratch::PatchBlock, block_size); },
      [&](std::int64_t o, int t) {
        A* block = blocks[t];
        extract_position_patches<T, A>(x, c.geometry, table, o, block);
        A* y_o = y + o * d.F;
        if (bias)
          for (std::int64_t b = 0; b < d.N; ++b) std::copy_n(bias + o * d.F, d.F, y_o + b * d.P * d.F);
        for (std::int64_t gi = 0; gi < d.G; ++gi)
          conv_gemm<A>(false, false, d.N, d.Fg, d.Ig, block + gi * d.Ig, d.I, kernel + o * d.Ig * d.F + gi * d.Fg,
                       d.F, y_o + gi * d.Fg, d.P * d.F, bias != nullptr);
      },
      [](int, int) {});
}

template <class T, class A>
void local_conv_backward(const T* x, const A* kernel, const A* g, A* dx, A* dkernel, A* dbias,
                         const ConvContraction& c) {
  const LocalDims d(c);
  const auto table = patch_source_table(c.geometry);
  const auto block_size = static_cast<std::size_t>(d.N * d.I);
  const auto dx_size = static_cast<std::size_t>(d.N * c.geometry.in_positions() * c.geometry.channels);
  struct ThreadBuffers {
    A* patches = nullptr;
    A* kernel_t = nullptr;  // K_o transposed (F x Ig)
    A* dpatches = nullptr;
    A* dx = nullptr;  // this thread's share of dx: dx itself on the first thread
  };
  std::vector<ThreadBuffers> buffers(static_cast<std::size_t>(position_threads(d.P)));
  for_each_position(
      d.P,
      [&](int t) {
        ThreadBuffers& buf = buffers[t];
        if (dkernel) buf.patches = conv_scratch<A>(ConvScratch::PatchBlock, block_size);
        if (!dx) return;
        buf.kernel_t = conv_scratch<A>(ConvScratch::KernelBlock, static_cast<std::size_t>(d.Ig * d.F));
        buf.dpatches = conv_scratch<A>(ConvScratch::PatchGradBlock, block_size);
        if (t == 0) {
          buf.dx = dx;
        } else {
          buf.dx = conv_scratch<A>(ConvScratch::Accumulator, dx_size);
          std::fill_n(buf.dx, dx_size, A(0));
        }
      },
      [&](std::int64_t o, int t) {
        const ThreadBuffers& buf = buffers[t];
        const A* g_o = g + o * d.F;
        if (dbias) {
          A* db = dbias + o * d.F;
          std::fill_n(db, d.F, A(0));
          for (std::int64_t b = 0; b < d.N; ++b)
            for (std::int64_t f = 0; f < d.F; ++f) db[f] += g_o[b * d.P * d.F + f];
        }
        if (dkernel) {
          extract_position_patches<T, A>(x, c.geometry, table, o, buf.patches);
          for (std::int64_t gi = 0; gi < d.G; ++gi)
            conv_gemm<A>(true, false, d.Ig, d.Fg, d.N, buf.patches + gi * d.Ig, d.I, g_o + gi * d.Fg, d.P * d.F,
                         dkernel + o * d.Ig * d.F + gi * d.Fg, d.F);
        }
        if (dx) {
          // dP_o = g_o . K_o^T as a NoTrans x NoTrans GEMM on K_o transposed here:
          // OpenBLAS's NoTrans x Trans kernel is ~25 % slower on these shapes (F = 32).
          const A* k_o = kernel + o * d.Ig * d.F;
          for (std::int64_t i = 0; i < d.Ig; ++i)
            for (std::int64_t f = 0; f < d.F; ++f) buf.kernel_t[f * d.Ig + i] = k_o[i * d.F + f];
          for (std::int64_t gi = 0; gi < d.G; ++gi)
            conv_gemm<A>(false, false, d.N, d.Ig, d.Fg, g_o + gi * d.Fg, d.P * d.F, buf.kernel_t + gi * d.Fg * d.Ig,
                         d.Ig, buf.dpatches + gi * d.Ig, d.I);
          scatter_add_position_patches<A>(buf.dpatches, c.geometry, table, o, buf.dx);
        }
      },
      [&](int, int team) {
        if (!dx || team < 2) return;
        // Every thread's scatter is done (the loop's barrier): sum the copies, split by element.
#pragma omp for schedule(static)
        for (std::size_t i = 0; i < dx_size; ++i) {
          A sum = dx[i];
          for (int u = 1; u < team; ++u) sum += buffers[u].dx[i];
          dx[i] = sum;
        }
      });
}

#define XGRAD_INSTANTIATE_LOCAL_GENERAL(T, A)                                                         \
  template void local_conv_forward<T, A>(const T*, const A*, const A*, A*, const ConvContraction&);  \
  template void local_conv_backward<T, A>(const T*, const A*, const A*, A*, A*, A*, const ConvContraction&);
XGRAD_INSTANTIATE_LOCAL_GENERAL(half, float)
XGRAD_INSTANTIATE_LOCAL_GENERAL(bfloat16, float)
XGRAD_INSTANTIATE_LOCAL_GENERAL(float, float)
XGRAD_INSTANTIATE_LOCAL_GENERAL(half, double)
XGRAD_INSTANTIATE_LOCAL_GENERAL(bfloat16, double)
XGRAD_INSTANTIATE_LOCAL_GENERAL(float, double)
XGRAD_INSTANTIATE_LOCAL_GENERAL(double, double)
#undef XGRAD_INSTANTIATE_LOCAL_GENERAL

}  // namespace xgrad::kernels
