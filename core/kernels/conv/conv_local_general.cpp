#include "core/kernels/conv/conv_local_general.hpp"

#include <algorithm>

#include "core/kernels/gemm.hpp"
#include "core/kernels/conv/conv_patches.hpp"
#include "core/kernels/conv/conv_scratch.hpp"
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

// The slots of a pass whose slots write disjoint outputs (the forward, a backward
// without dx): one per thread, at most one per position.
std::int64_t thread_slots(std::int64_t P) { return std::clamp<std::int64_t>(P, 1, num_threads()); }

// The slots of a backward with dx. Each slot but the first scatters into its own copy
// of dx (`copy_bytes` bytes) and the copies are added in slot order, so the slot count
// fixes how dx's sums are grouped. While deterministic() (the default) it depends on
// the shape alone: kDeterministicSlots, at most one per position, no more copies than
// fit in kCopyBudgetBytes; dx then has the same bits at any thread count (threads
// beyond it idle here, and one thread pays for the copies: threading.hpp). Otherwise
// one slot per thread.
constexpr std::int64_t kDeterministicSlots = 4;
constexpr std::int64_t kCopyBudgetBytes = std::int64_t{64} << 20;
std::int64_t dx_slots(std::int64_t P, std::int64_t copy_bytes) {
  if (!deterministic()) return thread_slots(P);
  return std::max<std::int64_t>(1, std::min({P, kDeterministicSlots, 1 + kCopyBudgetBytes / copy_bytes}));
}

// Calls body(slot, begin, end) for each of `slots` slots, slot owning the contiguous
// positions [begin, end) of P, on parallel_for (the GEMMs inside run on their slot's
// thread). Thread-local scratch taken inside body is the slot's own for the call: a
// thread runs one chunk at a time.
template <class Body>
void for_each_position_slot(std::int64_t P, std::int64_t slots, Body&& body) {
  parallel_for(slots, [&](std::int64_t slot) {
    const SlotRange range = static_slot_range(P, slots, slot);
    body(slot, range.begin, range.end);
  });
}

}  // namespace

template <class T, class A>
void local_conv_forward(const T* x, const A* kernel, const A* bias, A* y, const ConvContraction& c) {
  const LocalDims d(c);
  const auto table = patch_source_table(c.geometry);
  const auto block_size = static_cast<std::size_t>(d.N * d.I);
  for_each_position_slot(d.P, thread_slots(d.P), [&](std::int64_t, std::int64_t begin, std::int64_t end) {
    A* block = conv_scratch<A>(ConvScratch::PatchBlock, block_size);
    for (std::int64_t o = begin; o < end; ++o) {
      extract_position_patches<T, A>(x, c.geometry, table, o, block);
      A* y_o = y + o * d.F;
      if (bias)
        for (std::int64_t b = 0; b < d.N; ++b) std::copy_n(bias + o * d.F, d.F, y_o + b * d.P * d.F);
      for (std::int64_t gi = 0; gi < d.G; ++gi)
        gemm<A>(false, false, d.N, d.Fg, d.Ig, block + gi * d.Ig, d.I, kernel + o * d.Ig * d.F + gi * d.Fg, d.F,
                     y_o + gi * d.Fg, d.P * d.F, bias != nullptr);
    }
  });
}

template <class T, class A>
void local_conv_backward(const T* x, const A* kernel, const A* g, A* dx, A* dkernel, A* dbias,
                         const ConvContraction& c) {
  const LocalDims d(c);
  // The bias gradient alone (an empty input or kernel) reads no patch: no table, whose
  // geometry may then be of any size.
  const auto table = dx || dkernel ? patch_source_table(c.geometry) : std::vector<std::int64_t>();
  const auto block_size = static_cast<std::size_t>(d.N * d.I);
  const auto dx_size = static_cast<std::size_t>(d.N * c.geometry.in_positions() * c.geometry.channels);
  // Slot 0 scatters into dx itself, slot u > 0 into its own zeroed copy; the copies
  // are summed into dx afterwards in slot order. They live in the caller's scratch,
  // not the slots' threads', so they outlive the slots' chunks.
  const std::int64_t slots =
      dx ? dx_slots(d.P, static_cast<std::int64_t>(dx_size * sizeof(A))) : thread_slots(d.P);
  A* copies = dx && slots > 1
                  ? conv_scratch<A>(ConvScratch::Accumulator, static_cast<std::size_t>(slots - 1) * dx_size)
                  : nullptr;
  for_each_position_slot(d.P, slots, [&](std::int64_t slot, std::int64_t begin, std::int64_t end) {
    A* patches = dkernel ? conv_scratch<A>(ConvScratch::PatchBlock, block_size) : nullptr;
    A* kernel_t = nullptr;  // K_o transposed (F x Ig)
    A* dpatches = nullptr;
    A* dx_slot = nullptr;
    if (dx) {
      kernel_t = conv_scratch<A>(ConvScratch::KernelBlock, static_cast<std::size_t>(d.Ig * d.F));
      dpatches = conv_scratch<A>(ConvScratch::PatchGradBlock, block_size);
      dx_slot = slot == 0 ? dx : copies + static_cast<std::size_t>(slot - 1) * dx_size;
      if (slot > 0) std::fill_n(dx_slot, dx_size, A(0));
    }
    for (std::int64_t o = begin; o < end; ++o) {
      const A* g_o = g + o * d.F;
      if (dbias) {
        A* db = dbias + o * d.F;
        std::fill_n(db, d.F, A(0));
        for (std::int64_t b = 0; b < d.N; ++b)
          for (std::int64_t f = 0; f < d.F; ++f) db[f] += g_o[b * d.P * d.F + f];
      }
      if (dkernel) {
        extract_position_patches<T, A>(x, c.geometry, table, o, patches);
        for (std::int64_t gi = 0; gi < d.G; ++gi)
          gemm<A>(true, false, d.Ig, d.Fg, d.N, patches + gi * d.Ig, d.I, g_o + gi * d.Fg, d.P * d.F,
                       dkernel + o * d.Ig * d.F + gi * d.Fg, d.F);
      }
      if (dx) {
        // dP_o = g_o . K_o^T as a NoTrans x NoTrans GEMM on K_o transposed here:
        // OpenBLAS's NoTrans x Trans kernel is ~25 % slower on these shapes (F = 32).
        const A* k_o = kernel + o * d.Ig * d.F;
        for (std::int64_t i = 0; i < d.Ig; ++i)
          for (std::int64_t f = 0; f < d.F; ++f) kernel_t[f * d.Ig + i] = k_o[i * d.F + f];
        for (std::int64_t gi = 0; gi < d.G; ++gi)
          gemm<A>(false, false, d.N, d.Ig, d.Fg, g_o + gi * d.Fg, d.P * d.F, kernel_t + gi * d.Fg * d.Ig, d.Ig,
                       dpatches + gi * d.Ig, d.I);
        scatter_add_position_patches<A>(dpatches, c.geometry, table, o, dx_slot);
      }
    }
  });
  if (!copies) return;
  const auto total = static_cast<std::int64_t>(dx_size);
  parallel_for(slots, [&](std::int64_t part) {
    const SlotRange range = static_slot_range(total, slots, part);
    for (std::int64_t i = range.begin; i < range.end; ++i) {
      A sum = dx[i];
      for (std::int64_t u = 0; u + 1 < slots; ++u) sum += copies[u * total + i];
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
