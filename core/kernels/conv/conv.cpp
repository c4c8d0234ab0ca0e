// Runs the conv kernels on tensors: picks the compute type, lays patches out for
// the GEMMs, converts operands where needed and rounds results back.
//
// General path: the local conv runs per output position (conv_local_general.*).
// The shared conv writes batch-major patches (one big GEMM), then conv_contract's
// GEMMs produce y, dkernel or dpatches, and col2im scatter-adds dpatches into dx.
// All buffers come from conv_scratch.
// Fast path: float32 convolutions the tile engine handles (conv_tiles.hpp) run the
// direct kernels of conv_local_fast.* or conv_shared_fast.*, chosen by the same test.
#include "core/kernels/conv/conv.hpp"

#include <algorithm>
#include <limits>
#include <optional>

#include "core/kernels/conv/conv_contract.hpp"
#include "core/kernels/conv/conv_local_fast.hpp"
#include "core/kernels/conv/conv_shared_fast.hpp"
#include "core/kernels/conv/conv_tiles.hpp"
#include "core/kernels/convert16.hpp"
#include "core/kernels/conv/conv_local_general.hpp"
#include "core/kernels/conv/conv_patches.hpp"
#include "core/kernels/conv/conv_scratch.hpp"
#include "core/kernels/elementwise.hpp"
#include "core/tensor_impl.hpp"

namespace xgrad::kernels {

Shape ConvContraction::input_shape() const {
  Shape s{geometry.batch};
  s.insert(s.end(), geometry.in_spatial.begin(), geometry.in_spatial.end());
  s.push_back(geometry.channels);
  return s;
}

Shape ConvContraction::kernel_shape() const {
  const std::int64_t per_group = geometry.channels / groups;
  Shape s = weights == ConvWeights::Shared ? geometry.window : geometry.out_spatial;
  s.push_back(weights == ConvWeights::Shared ? per_group : per_group * geometry.window_size());
  s.push_back(features);
  return s;
}

Shape ConvContraction::output_shape() const {
  Shape s{geometry.batch};
  s.insert(s.end(), geometry.out_spatial.begin(), geometry.out_spatial.end());
  s.push_back(features);
  return s;
}

namespace {

// Whether the fast kernels (conv_local_fast / conv_shared_fast, both on the tile
// engine of conv_tiles.hpp) serve `c` with operands of `a` and `b`'s dtypes: float32,
// one feature group, not Precision::Highest (which asks for float64 accumulation), a
// geometry they handle (rank 1..3, no lhs dilation, non-empty), an AVX2 CPU. The
// local and the shared conv are asked the same question.
bool fast_kernels_serve(const ConvContraction& c) {
  if (c.groups != 1 || c.precision == Precision::Highest || !tiles::fast_enabled()) return false;
  return c.weights == ConvWeights::Local ? conv_local_fast_supported(c.geometry, c.features)
                                         : conv_shared_fast_supported(c.geometry, c.features);
}

bool takes_fast_path(const ConvContraction& c, DType a, DType b) {
  return a == DType::Float32 && b == DType::Float32 && fast_kernels_serve(c);
}

// float16 and bfloat16 operands compute in float32, as on the general path (which
// widens them per block): on the fast kernels they are widened once into scratch and
// the results rounded once to their dtype.
bool takes_widened_fast_path(const ConvContraction& c, DType a, DType b) {
  return (a == DType::Float16 || a == DType::BFloat16) && a == b && fast_kernels_serve(c);
}

// Calls fn.template operator()<T>() with T the 16-bit float type of `dtype`.
template <class Fn>
void visit_float16(DType dtype, Fn&& fn) {
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (is_float16_v<T>) fn.template operator()<T>();
  });
}

// The three passes on the fast kernels (bias null or (O..., F) local / (F) shared).
void fast_forward(const ConvContraction& c, const float* x, const float* kernel, const float* bias, float* y) {
  tiles::count_fast_dispatch();
  if (c.weights == ConvWeights::Local) conv_local_forward_fast(c.geometry, c.features, x, kernel, bias, y);
  else conv_shared_forward_fast(c.geometry, c.features, x, kernel, bias, y);
}

void fast_input_vjp(const ConvContraction& c, const float* g, const float* kernel, float* dx) {
  tiles::count_fast_dispatch();
  if (c.weights == ConvWeights::Local)
    conv_local_backward_fast(c.geometry, c.features, nullptr, kernel, g, dx, nullptr, nullptr);
  else conv_shared_input_vjp_fast(c.geometry, c.features, g, kernel, dx);
}

void fast_kernel_vjp(const ConvContraction& c, const float* x, const float* g, float* dkernel, float* dbias) {
  tiles::count_fast_dispatch();
  if (c.weights == ConvWeights::Local)
    conv_local_backward_fast(c.geometry, c.features, x, nullptr, g, nullptr, dkernel, dbias);
  else conv_shared_kernel_vjp_fast(c.geometry, c.features, x, g, dkernel, dbias);
}

// The shared conv's contraction: N*P batch-major patch rows.
ContractionLayout layout_of(const ConvContraction& c) {
  const auto& g = c.geometry;
  return {.rows = g.batch * g.out_positions(), .patch_cols = g.patch_size(), .features = c.features,
          .groups = c.groups};
}

std::size_t patch_elements(const ConvGeometry& g) {
  return static_cast<std::size_t>(g.batch * g.out_positions() * g.patch_size());
}

// t's values as A: t's own buffer when T is A, else a converted copy in `slot`.
template <class T, class A>
const A* as_compute(const Tensor& t, ConvScratch slot) {
  if constexpr (std::is_same_v<T, A>) {
    return t.data<T>();
  } else {
    const T* src = t.data<T>();
    const auto n = static_cast<std::size_t>(t.numel());
    A* dst = conv_scratch<A>(slot, n);
    if constexpr (is_float16_v<T> && std::is_same_v<A, float>) widen(src, dst, static_cast<std::int64_t>(n));
    else for (std::size_t i = 0; i < n; ++i) dst[i] = convert_element<A>(src[i]);
    return dst;
  }
}

// Where to compute a T result in A: the tensor itself when T is A, else scratch
// (in `slot`) that store_result rounds into it.
template <class T, class A>
A* result_buffer(Tensor& out, ConvScratch slot = ConvScratch::Result) {
  if constexpr (std::is_same_v<T, A>) return out.data<T>();
  else return conv_scratch<A>(slot, static_cast<std::size_t>(out.numel()));
}

template <class T, class A>
void store_result(const A* computed, Tensor& out) {
  if constexpr (!std::is_same_v<T, A>) {
    T* dst = out.data<T>();
    const auto n = static_cast<std::size_t>(out.numel());
    if constexpr (is_float16_v<T> && std::is_same_v<A, float>) narrow(computed, dst, static_cast<std::int64_t>(n));
    else for (std::size_t i = 0; i < n; ++i) dst[i] = convert_element<T>(computed[i]);
  }
}

// The kernel as (I/G x F) row blocks in A. Local kernels are already laid out so.
// A shared HWIO kernel has rows r*Cg + ci; the patches are channel-major, so its
// rows are reordered to ci*S + r ("I-major").
template <class T, class A>
const A* contraction_kernel(const Tensor& kernel, const ConvContraction& c) {
  if (c.weights == ConvWeights::Local) return as_compute<T, A>(kernel, ConvScratch::Kernel);
  const std::int64_t S = c.geometry.window_size(), Cg = c.geometry.channels / c.groups, F = c.features;
  const T* w = kernel.data<T>();
  A* reordered = conv_scratch<A>(ConvScratch::Kernel, static_cast<std::size_t>(kernel.numel()));
  for (std::int64_t r = 0; r < S; ++r)
    for (std::int64_t ci = 0; ci < Cg; ++ci)
      for (std::int64_t f = 0; f < F; ++f)
        reordered[(ci * S + r) * F + f] = convert_element<A>(w[(r * Cg + ci) * F + f]);
  return reordered;
}

template <class T, class A>
void forward(const Tensor& x, const Tensor& kernel, const ConvContraction& c, Tensor& out) {
  const auto& g = c.geometry;
  const A* k = contraction_kernel<T, A>(kernel, c);
  A* y = result_buffer<T, A>(out);
  if (c.weights == ConvWeights::Local) {
    if constexpr (is_float16_v<T>) local_conv_forward<A, A>(as_compute<T, A>(x, ConvScratch::Input), k, nullptr, y, c);
    else local_conv_forward<T, A>(x.data<T>(), k, nullptr, y, c);
  } else {
    A* patches = conv_scratch<A>(ConvScratch::Patches, patch_elements(g));
    extract_patches<T, A>(x.data<T>(), g, patch_source_table(g), patches);
    contract_forward<A>(patches, k, y, layout_of(c));
  }
  store_result<T, A>(y, out);
}

template <class T, class A>
void input_vjp(const Tensor& gy, const Tensor& kernel, const ConvContraction& c, Tensor& dx) {
  const auto& g = c.geometry;
  const A* cot = as_compute<T, A>(gy, ConvScratch::Cotangent);
  const A* k = contraction_kernel<T, A>(kernel, c);
  A* d = result_buffer<T, A>(dx);
  std::fill(d, d + dx.numel(), A(0));
  if (c.weights == ConvWeights::Local) {
    local_conv_backward<T, A>(nullptr, k, cot, d, nullptr, nullptr, c);
  } else {
    A* dpatches = conv_scratch<A>(ConvScratch::Patches, patch_elements(g));
    contract_patches_vjp<A>(cot, k, dpatches, layout_of(c));
    scatter_add_patches<A>(dpatches, g, patch_source_table(g), d);
  }
  store_result<T, A>(d, dx);
}

template <class T, class A>
void kernel_vjp(const Tensor& x, const Tensor& gy, const ConvContraction& c, Tensor& dkernel) {
  const auto& g = c.geometry;
  const A* cot = as_compute<T, A>(gy, ConvScratch::Cotangent);
  if (c.weights == ConvWeights::Local) {
    A* dk = result_buffer<T, A>(dkernel);
    if constexpr (is_float16_v<T>)
      local_conv_backward<A, A>(as_compute<T, A>(x, ConvScratch::Input), nullptr, cot, nullptr, dk, nullptr, c);
    else local_conv_backward<T, A>(x.data<T>(), nullptr, cot, nullptr, dk, nullptr, c);
    store_result<T, A>(dk, dkernel);
    return;
  }
  A* patches = conv_scratch<A>(ConvScratch::Patches, patch_elements(g));
  extract_patches<T, A>(x.data<T>(), g, patch_source_table(g), patches);
  // Shared: the GEMM yields I-major rows ci*S + r; HWIO wants r*Cg + ci.
  const std::int64_t S = g.window_size(), Cg = g.channels / c.groups, F = c.features;
  A* dk = conv_scratch<A>(ConvScratch::Result, static_cast<std::size_t>(dkernel.numel()));
  contract_kernel_vjp<A>(patches, cot, dk, layout_of(c));
  T* out = dkernel.data<T>();
  for (std::int64_t r = 0; r < S; ++r)
    for (std::int64_t ci = 0; ci < Cg; ++ci)
      for (std::int64_t f = 0; f < F; ++f) out[(r * Cg + ci) * F + f] = convert_element<T>(dk[(ci * S + r) * F + f]);
}

// The three passes of takes_widened_fast_path (T = half or bfloat16). The widened
// operands and float results live in scratch slots the fast kernels never use
// (they take Patches, PatchGradBlock, Kernel and Result for padding and transposes).
template <class T>
void widened_fast_forward(const Tensor& x, const Tensor& kernel, const ConvContraction& c, Tensor& out) {
  float* y = result_buffer<T, float>(out, ConvScratch::Accumulator);
  fast_forward(c, as_compute<T, float>(x, ConvScratch::Input), as_compute<T, float>(kernel, ConvScratch::KernelBlock),
               nullptr, y);
  store_result<T, float>(y, out);
}

template <class T>
void widened_fast_input_vjp(const Tensor& g, const Tensor& kernel, const ConvContraction& c, Tensor& dx) {
  float* d = result_buffer<T, float>(dx, ConvScratch::Accumulator);
  fast_input_vjp(c, as_compute<T, float>(g, ConvScratch::Cotangent), as_compute<T, float>(kernel, ConvScratch::KernelBlock),
                 d);
  store_result<T, float>(d, dx);
}

template <class T>
void widened_fast_kernel_vjp(const Tensor& x, const Tensor& g, const ConvContraction& c, Tensor& dkernel) {
  float* dk = result_buffer<T, float>(dkernel, ConvScratch::KernelResult);
  fast_kernel_vjp(c, as_compute<T, float>(x, ConvScratch::Input), as_compute<T, float>(g, ConvScratch::Cotangent), dk,
                  nullptr);
  store_result<T, float>(dk, dkernel);
}

// Calls fn.template operator()<T, A>() with T the storage type of `dtype` and A
// the accumulation type: double for float64 and for Precision::Highest, else float.
template <class Fn>
void dispatch(DType dtype, Precision precision, Fn&& fn) {
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool> || std::is_integral_v<T>) {
      throw DTypeError("conv: floating operands required, got " + std::string(dtype_name(dtype)));
    } else if constexpr (std::is_same_v<T, double>) {
      fn.template operator()<T, double>();
    } else {
      if (precision == Precision::Highest) fn.template operator()<T, double>();
      else fn.template operator()<T, float>();
    }
  });
}

// Whether a pass has nothing to compute: its result is empty, or it sums over an
// empty operand (then the result is zero). Such operands have no data at all (a
// null pointer, which the patch and GEMM offsets must not be applied to).
bool nothing_to_compute(const Shape& result, const Tensor& a, const Tensor& b) {
  return numel(result) == 0 || a.numel() == 0 || b.numel() == 0;
}

}  // namespace

Tensor conv_forward(const Tensor& x, const Tensor& kernel, const ConvContraction& c) {
  if (nothing_to_compute(c.output_shape(), x, kernel)) return zeros(c.output_shape(), x.dtype());
  Tensor out = empty(c.output_shape(), x.dtype());
  if (takes_fast_path(c, x.dtype(), kernel.dtype()))
    fast_forward(c, x.data<float>(), kernel.data<float>(), nullptr, out.data<float>());
  else if (takes_widened_fast_path(c, x.dtype(), kernel.dtype()))
    visit_float16(x.dtype(), [&]<class T>() { widened_fast_forward<T>(x, kernel, c, out); });
  else dispatch(x.dtype(), c.precision, [&]<class T, class A>() { forward<T, A>(x, kernel, c, out); });
  return out;
}

Tensor conv_input_vjp(const Tensor& g, const Tensor& kernel, const ConvContraction& c) {
  if (nothing_to_compute(c.input_shape(), g, kernel)) return zeros(c.input_shape(), g.dtype());
  Tensor dx = empty(c.input_shape(), g.dtype());
  if (takes_fast_path(c, g.dtype(), kernel.dtype()))
    fast_input_vjp(c, g.data<float>(), kernel.data<float>(), dx.data<float>());
  else if (takes_widened_fast_path(c, g.dtype(), kernel.dtype()))
    visit_float16(g.dtype(), [&]<class T>() { widened_fast_input_vjp<T>(g, kernel, c, dx); });
  else dispatch(g.dtype(), c.precision, [&]<class T, class A>() { input_vjp<T, A>(g, kernel, c, dx); });
  return dx;
}

Tensor conv_kernel_vjp(const Tensor& x, const Tensor& g, const ConvContraction& c) {
  if (nothing_to_compute(c.kernel_shape(), x, g)) return zeros(c.kernel_shape(), x.dtype());
  Tensor dk = empty(c.kernel_shape(), x.dtype());
  if (takes_fast_path(c, x.dtype(), g.dtype()))
    fast_kernel_vjp(c, x.data<float>(), g.data<float>(), dk.data<float>(), nullptr);
  else if (takes_widened_fast_path(c, x.dtype(), g.dtype()))
    visit_float16(x.dtype(), [&]<class T>() { widened_fast_kernel_vjp<T>(x, g, c, dk); });
  else dispatch(x.dtype(), c.precision, [&]<class T, class A>() { kernel_vjp<T, A>(x, g, c, dk); });
  return dk;
}

Tensor conv_local_forward_biased(const Tensor& x, const Tensor& kernel, const Tensor& bias,
                                 const ConvContraction& c) {
  // A bias in the contraction is exact only where the storage type is the compute
  // type: 16-bit floats and Highest round the conv before the add.
  const bool computes_in_storage_type =
      x.dtype() == DType::Float64 || (x.dtype() == DType::Float32 && c.precision != Precision::Highest);
  if (nothing_to_compute(c.output_shape(), x, kernel) || !computes_in_storage_type)
    return binary(Binary::Add, conv_forward(x, kernel, c), bias);
  Tensor out = empty(c.output_shape(), x.dtype());
  if (takes_fast_path(c, x.dtype(), kernel.dtype()) && bias.dtype() == DType::Float32) {
    fast_forward(c, x.data<float>(), kernel.data<float>(), bias.data<float>(), out.data<float>());
    return out;
  }
  dispatch(x.dtype(), c.precision, [&]<class T, class A>() {
    const A* k = as_compute<T, A>(kernel, ConvScratch::Kernel);
    const A* b = as_compute<T, A>(bias, ConvScratch::Bias);
    A* y = result_buffer<T, A>(out);
    if constexpr (is_float16_v<T>) local_conv_forward<A, A>(as_compute<T, A>(x, ConvScratch::Input), k, b, y, c);
    else local_conv_forward<T, A>(x.data<T>(), k, b, y, c);
    store_result<T, A>(y, out);
  });
  return out;
}

Tensor conv_shared_forward_biased(const Tensor& x, const Tensor& kernel, const Tensor& bias,
                                  const ConvContraction& c) {
  if (nothing_to_compute(c.output_shape(), x, kernel) || !takes_fast_path(c, x.dtype(), kernel.dtype()) ||
      bias.dtype() != DType::Float32)
    return binary(Binary::Add, conv_forward(x, kernel, c), bias);
  Tensor out = empty(c.output_shape(), x.dtype());
  fast_forward(c, x.data<float>(), kernel.data<float>(), bias.data<float>(), out.data<float>());
  return out;
}

std::optional<std::pair<Tensor, Tensor>> conv_forward_biased_max_pool(const Tensor& x, const Tensor& kernel,
                                                                      const Tensor& bias, const ConvContraction& c,
                                                                      std::int64_t window_h, std::int64_t window_w,
                                                                      bool relu) {
  if (c.geometry.rank() != 2 || c.features % 8 != 0 || window_h < 1 || window_w < 1 || !bias.defined() ||
      bias.dtype() != DType::Float32 || nothing_to_compute(c.output_shape(), x, kernel) ||
      !takes_fast_path(c, x.dtype(), kernel.dtype()))
    return std::nullopt;
  const Shape y = c.output_shape();  // (N, H, W, F)
  if (y[1] < window_h || y[2] < window_w || numel(y) > std::numeric_limits<std::int32_t>::max()) return std::nullopt;
  std::pair<Tensor, Tensor> pooled{empty({y[0], y[1] / window_h, y[2] / window_w, y[3]}, DType::Float32),
                                   empty({y[0], y[1] / window_h, y[2] / window_w, y[3]}, DType::Int32)};
  tiles::count_fast_dispatch();
  const auto pass = c.weights == ConvWeights::Local ? conv_local_forward_max_pool_fast : conv_shared_forward_max_pool_fast;
  pass(c.geometry, c.features, x.data<float>(), kernel.data<float>(), bias.data<float>(), window_h, window_w, relu,
       pooled.first.data<float>(), pooled.second.data<std::int32_t>());
  return pooled;
}

std::optional<SharedConvParamGrads> conv_shared_param_vjp_fused(const Tensor& x, const Tensor& g,
                                                                const ConvContraction& c) {
  if (c.weights != ConvWeights::Shared || x.numel() == 0 || g.numel() == 0 || !takes_fast_path(c, x.dtype(), g.dtype()))
    return std::nullopt;
  SharedConvParamGrads grads{empty(c.kernel_shape(), DType::Float32), empty({c.features}, DType::Float32)};
  fast_kernel_vjp(c, x.data<float>(), g.data<float>(), grads.dkernel.data<float>(), grads.dbias.data<float>());
  return grads;
}

namespace {

// The cotangent of a conv + max pool pass's output as the kernels take it: pooled_g
// and the selection `index` (float32 and int32, one shape), relu_out (undefined, or
// float32 of that shape), `window` (2 extents); nullopt if they do not fit.
std::optional<PooledCotangent> pooled_cotangent(const Tensor& pooled_g, const Tensor& index, const Tensor& relu_out,
                                                const Shape& window) {
  if (pooled_g.numel() == 0 || pooled_g.dtype() != DType::Float32 || index.dtype() != DType::Int32 ||
      pooled_g.shape() != index.shape() || window.size() != 2 ||
      (relu_out.defined() && (relu_out.dtype() != DType::Float32 || relu_out.shape() != index.shape())))
    return std::nullopt;
  return PooledCotangent{.g = pooled_g.data<float>(),
                         .index = index.data<std::int32_t>(),
                         .relu_out = relu_out.defined() ? relu_out.data<float>() : nullptr,
                         .window_h = window[0],
                         .window_w = window[1]};
}

}  // namespace

std::optional<SharedConvParamGrads> conv_shared_param_vjp_max_pooled(const Tensor& x, const Tensor& pooled_g,
                                                                     const Tensor& index, const Tensor& relu_out,
                                                                     const Shape& window, const ConvContraction& c) {
  const auto pooled = pooled_cotangent(pooled_g, index, relu_out, window);
  if (!pooled || c.weights != ConvWeights::Shared || x.numel() == 0 || !takes_fast_path(c, x.dtype(), DType::Float32))
    return std::nullopt;
  SharedConvParamGrads grads{empty(c.kernel_shape(), DType::Float32), empty({c.features}, DType::Float32)};
  tiles::count_fast_dispatch();
  conv_shared_kernel_vjp_max_pooled_fast(c.geometry, c.features, x.data<float>(), *pooled,
                                         pooled_g.numel() / pooled_g.size(0), grads.dkernel.data<float>(),
                                         grads.dbias.data<float>());
  return grads;
}

std::optional<LocalConvGrads> conv_local_vjp_max_pooled(const Tensor& x, const Tensor& kernel, const Tensor& pooled_g,
                                                        const Tensor& index, const Tensor& relu_out, const Shape& window,
                                                        const ConvContraction& c, bool want_dx, bool want_dkernel,
                                                        bool want_dbias) {
  const auto pooled = pooled_cotangent(pooled_g, index, relu_out, window);
  if (!pooled || c.weights != ConvWeights::Local || c.geometry.rank() != 2 || x.numel() == 0 ||
      !takes_fast_path(c, x.dtype(), kernel.dtype()))
    return std::nullopt;
  const Shape out = c.output_shape();
  LocalConvGrads grads{want_dx ? empty(c.input_shape(), DType::Float32) : Tensor(),
                       want_dkernel ? empty(c.kernel_shape(), DType::Float32) : Tensor(),
                       want_dbias ? empty(Shape(out.begin() + 1, out.end()), DType::Float32) : Tensor()};
  if (!want_dx && !want_dkernel && !want_dbias) return grads;
  const auto data = [](Tensor& t) { return t.defined() ? t.data<float>() : nullptr; };
  tiles::count_fast_dispatch();
  conv_local_backward_max_pooled_fast(c.geometry, c.features, x.data<float>(), kernel.data<float>(), *pooled,
                                      data(grads.dx), data(grads.dkernel), data(grads.dbias));
  return grads;
}

namespace {

// conv_local_vjp_fused on the general path: one per-position pass (the patches
// are built once, g read once).
LocalConvGrads general_local_vjp(const Tensor& x, const Tensor& kernel, const Tensor& g, const ConvContraction& c,
                                 bool want_dx, bool want_dkernel, bool want_dbias) {
  const Shape out = c.output_shape(), bias_shape(out.begin() + 1, out.end());
  // With an empty operand dx and dkernel are zero (sums over nothing); dbias still
  // sums g unless g is empty too.
  const bool contract = x.numel() > 0 && kernel.numel() > 0 && g.numel() > 0;
  const bool with_dx = want_dx && contract, with_dkernel = want_dkernel && contract;
  const bool with_dbias = want_dbias && g.numel() > 0;
  const auto result = [&](bool wanted, bool computed, const Shape& shape) {
    return !wanted ? Tensor() : computed ? empty(shape, g.dtype()) : zeros(shape, g.dtype());
  };
  LocalConvGrads grads{result(want_dx, with_dx, c.input_shape()), result(want_dkernel, with_dkernel, c.kernel_shape()),
                       result(want_dbias, with_dbias, bias_shape)};
  if (!with_dx && !with_dkernel && !with_dbias) return grads;
  dispatch(g.dtype(), c.precision, [&]<class T, class A>() {
    const A* cot = as_compute<T, A>(g, ConvScratch::Cotangent);
    const A* k = with_dx ? as_compute<T, A>(kernel, ConvScratch::Kernel) : nullptr;
    A* dx = with_dx ? result_buffer<T, A>(grads.dx) : nullptr;
    A* dk = with_dkernel ? result_buffer<T, A>(grads.dkernel, ConvScratch::KernelResult) : nullptr;
    A* db = with_dbias ? result_buffer<T, A>(grads.dbias, ConvScratch::Bias) : nullptr;
    if (dx) std::fill_n(dx, grads.dx.numel(), A(0));
    if constexpr (is_float16_v<T>)
      local_conv_backward<A, A>(as_compute<T, A>(x, ConvScratch::Input), k, cot, dx, dk, db, c);
    else local_conv_backward<T, A>(x.data<T>(), k, cot, dx, dk, db, c);
    if (dx) store_result<T, A>(dx, grads.dx);
    if (dk) store_result<T, A>(dk, grads.dkernel);
    if (db) store_result<T, A>(db, grads.dbias);
  });
  return grads;
}

// conv_local_vjp_fused for float16 / bfloat16 on the fast kernels (see
// takes_widened_fast_path; scratch slots as in widened_fast_forward): one backward
// pass in float32, each result rounded once.
LocalConvGrads widened_fast_local_vjp(const Tensor& x, const Tensor& kernel, const Tensor& g,
                                      const ConvContraction& c, bool want_dx, bool want_dkernel, bool want_dbias) {
  const Shape out = c.output_shape(), bias_shape(out.begin() + 1, out.end());
  LocalConvGrads grads{want_dx ? empty(c.input_shape(), g.dtype()) : Tensor(),
                       want_dkernel ? empty(c.kernel_shape(), g.dtype()) : Tensor(),
                       want_dbias ? empty(bias_shape, g.dtype()) : Tensor()};
  if (!want_dx && !want_dkernel && !want_dbias) return grads;
  visit_float16(g.dtype(), [&]<class T>() {
    float* dx = want_dx ? result_buffer<T, float>(grads.dx, ConvScratch::Accumulator) : nullptr;
    float* dk = want_dkernel ? result_buffer<T, float>(grads.dkernel, ConvScratch::KernelResult) : nullptr;
    float* db = want_dbias ? result_buffer<T, float>(grads.dbias, ConvScratch::Bias) : nullptr;
    tiles::count_fast_dispatch();
    conv_local_backward_fast(c.geometry, c.features, want_dkernel ? as_compute<T, float>(x, ConvScratch::Input) : nullptr,
                             want_dx ? as_compute<T, float>(kernel, ConvScratch::KernelBlock) : nullptr,
                             as_compute<T, float>(g, ConvScratch::Cotangent), dx, dk, db);
    if (dx) store_result<T, float>(dx, grads.dx);
    if (dk) store_result<T, float>(dk, grads.dkernel);
    if (db) store_result<T, float>(db, grads.dbias);
  });
  return grads;
}

}  // namespace

LocalConvGrads conv_local_vjp_fused(const Tensor& x, const Tensor& kernel, const Tensor& g, const ConvContraction& c,
                                    bool want_dx, bool want_dkernel, bool want_dbias) {
  const bool operands = c.weights == ConvWeights::Local && x.numel() > 0 && kernel.numel() > 0 && g.numel() > 0 &&
                        x.dtype() == kernel.dtype();
  if (operands && takes_widened_fast_path(c, g.dtype(), x.dtype()))
    return widened_fast_local_vjp(x, kernel, g, c, want_dx, want_dkernel, want_dbias);
  if (!operands || !takes_fast_path(c, g.dtype(), x.dtype()))
    return general_local_vjp(x, kernel, g, c, want_dx, want_dkernel, want_dbias);
  LocalConvGrads grads;
  if (want_dx) grads.dx = empty(c.input_shape(), g.dtype());
  if (want_dkernel) grads.dkernel = empty(c.kernel_shape(), g.dtype());
  if (want_dbias) {
    const Shape out = c.output_shape();
    grads.dbias = empty(Shape(out.begin() + 1, out.end()), g.dtype());
  }
  if (!want_dx && !want_dkernel && !want_dbias) return grads;
  const auto data = [](Tensor& t) { return t.defined() ? t.data<float>() : nullptr; };
  tiles::count_fast_dispatch();
  conv_local_backward_fast(c.geometry, c.features, x.data<float>(), kernel.data<float>(), g.data<float>(),
                           data(grads.dx), data(grads.dkernel), data(grads.dbias));
  return grads;
}

Tensor conv_patches(const Tensor& x, const ConvGeometry& g) {
  Shape shape{g.batch};
  shape.insert(shape.end(), g.out_spatial.begin(), g.out_spatial.end());
  shape.push_back(g.patch_size());
  Tensor out = empty(shape, x.dtype());
  dispatch(x.dtype(), Precision::Default, [&]<class T, class A>() {
    extract_patches<T, T>(x.data<T>(), g, patch_source_table(g), out.data<T>());
  });
  return out;
}

Tensor conv_patches_adjoint(const Tensor& patches, const ConvGeometry& g) {
  Shape shape{g.batch};
  shape.insert(shape.end(), g.in_spatial.begin(), g.in_spatial.end());
  shape.push_back(g.channels);
  Tensor dx = empty(shape, patches.dtype());
  dispatch(patches.dtype(), Precision::Default, [&]<class T, class A>() {
    const A* src = as_compute<T, A>(patches, ConvScratch::Patches);
    A* d = result_buffer<T, A>(dx);
    std::fill(d, d + dx.numel(), A(0));
    scatter_add_patches<A>(src, g, patch_source_table(g), d);
    store_result<T, A>(d, dx);
  });
  return dx;
}

}  // namespace xgrad::kernels
