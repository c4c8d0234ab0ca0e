// The one register-tile loop of conv_tiles.cpp, written once over a vector policy P
// and compiled once per instruction set: conv_tiles.cpp includes this file inside the
// namespace of each GCC target region (avx512: Zmm, YmmMasked; avx2: Ymm), so each
// copy of these templates carries that region's target and every P:: operation (an
// intrinsic) inlines into it. An AVX2 instantiation is therefore compiled for
// avx2,fma only and holds no AVX-512 instruction, whatever the other region enables.
//
// Hence no include guard and no #include here: the includer provides <immintrin.h>,
// conv_tiles.hpp and the helpers split_rows, row_of, aligned and max_rows, and
// includes this file once per region, inside a namespace of its own.
//
// A policy P (see conv_tiles.cpp) gives:
//   Vector, Mask, lanes          one vector register of `lanes` floats and its lane mask
//   cheap_masks                  whether a masked store costs what a plain one does
//                                (AVX-512 masks: yes; AVX2 vmaskmovps: microcoded on AMD)
//   first(n)                     the mask of the first n lanes (n ≥ 0; n ≥ lanes: all)
//   zero, load, load(mask, ·)    (masked loads read zero into the masked-off lanes)
//   store, store(mask, ·), stream, broadcast, fma(a, b, c) = a·b + c, add

// R rows × V vectors of P (R·V accumulators). The last vector of a Tail block reads
// and writes under the mask of its `columns - lanes·(V-1)` lanes; Add mode masks its
// read-modify-write by `columns` (always where masks are cheap, else only a vector
// that is not whole; a vector wholly past `columns` gets an empty mask). Kept out of
// line: inlined into its callers, the AVX2 6 × 2 tile's 15 live ymm registers spill.
template <class P, int R, int V, TileMode M, bool Tail>
__attribute__((noinline)) void run_tiles(const TileJob& job, Index count) {
  using Vector = typename P::Vector;
  using Mask = typename P::Mask;
  constexpr bool table = M == TileMode::Gather;
  const Index steps = job.steps, a_step = job.a_step, b_step = job.b_step;
  const Index* a_table = job.a_table;
  // Computed once, outside the tile loop: the mask of the last vector's lanes (all
  // when the block is full), and for Add the mask of each vector's lanes within the
  // block (none past it).
  const int columns = job.columns;
  // (A local: read through `job` in the store loop, the flag was reloaded per row, as
  // the stores might alias it.)
  const bool stream_out = M != TileMode::Add && job.stream_out;
  const bool accumulate = M == TileMode::Stride && job.accumulate;
  const Mask tail_mask = P::first(columns - P::lanes * (V - 1));
  Mask block_mask[V];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) block_mask[v] = P::first(columns > P::lanes * v ? columns - P::lanes * v : 0);
  for (Index tile = 0; tile < count; ++tile) {
    const float* a[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Index k = tile * R + r;
      a[r] = row_of<M>(job.a, k);
      // Opaque to the optimiser, so each row keeps its own pointer register and the
      // broadcasts use plain base + index addressing.
      asm("" : "+r"(a[r]));
      if (M == TileMode::Gather && job.prefetch_distance)
        _mm_prefetch(reinterpret_cast<const char*>(job.out.base + k * job.out.stride + job.prefetch_distance),
                     _MM_HINT_T0);
    }
    // Every loop over the tile is unrolled so that acc[][] lives in registers only.
    Vector acc[R][V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      Vector start = P::zero();
      if (M == TileMode::Gather && job.init) {
        const float* init = job.init + P::lanes * v;
        start = Tail && v == V - 1 ? P::load(tail_mask, init) : P::load(init);
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][v] = start;
    }
    const float* b = job.b;
    const Index prefetch_b = job.prefetch_b;
    for (Index s = 0; s < steps; ++s) {
      // (a hint: never faults, even past the end of the operand)
      if (M == TileMode::Gather && prefetch_b) _mm_prefetch(reinterpret_cast<const char*>(b + prefetch_b), _MM_HINT_T1);
      const Index ai = table ? a_table[s] : s * a_step;
      Vector bv[V];
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) bv[v] = Tail && v == V - 1 ? P::load(tail_mask, b + P::lanes * v) : P::load(b + P::lanes * v);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const Vector av = P::broadcast(a[r] + ai);
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) acc[r][v] = P::fma(av, bv[v], acc[r][v]);
      }
      b += b_step;
    }
    float* out[R];  // computed only now, to keep general registers free in the loop
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) out[r] = row_of<M>(job.out, tile * R + r);
    if constexpr (M != TileMode::Add) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) {
          float* o = out[r] + P::lanes * v;
          const bool tail = Tail && v == V - 1;
          if (accumulate) acc[r][v] = P::add(tail ? P::load(tail_mask, o) : P::load(o), acc[r][v]);
          if (tail) P::store(tail_mask, o, acc[r][v]);
          else if (stream_out && aligned(o, P::lanes)) P::stream(o, acc[r][v]);
          else P::store(o, acc[r][v]);
        }
      }
    } else {
      // Rows in order: neighbouring rows' footprints may overlap.
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) {
        const bool whole = !P::cheap_masks && columns >= P::lanes * (v + 1);  // skip a slow mask
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          float* o = out[r] + P::lanes * v;
          if (whole) P::store(o, P::add(P::load(o), acc[r][v]));
          else P::store(block_mask[v], o, P::add(P::load(block_mask[v], o), acc[r][v]));
        }
      }
    }
  }
}

// `count` tiles of exactly `rows` rows (1 ≤ rows ≤ max_rows<P>(V)).
template <class P, int V, TileMode M, bool Tail, int R = 1>
void run_tiles_of(Index rows, const TileJob& job, Index count) {
  if constexpr (R <= max_rows<P>(V)) {
    if (rows == R) run_tiles<P, R, V, M, Tail>(job, count);
    else run_tiles_of<P, V, M, Tail, R + 1>(rows, job, count);
  }
}

// Rows [0, row_count) of `job` as the fewest, most even tiles of R × V vectors of P.
template <class P, int V, TileMode M, bool Tail>
void run_rows(const TileJob& job, Index row_count) {
  split_rows(job, row_count, max_rows<P>(V),
             [](Index rows, const TileJob& j, Index count) { run_tiles_of<P, V, M, Tail>(rows, j, count); });
}
