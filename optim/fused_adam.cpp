// The fused Adam / AdamW step: one pass per parameter reads g, m, v, p and writes
// m, v, p — the unfused chain makes four passes over an update buffer (copy the
// gradient in, scale_by_adam, scale by −lr, apply_updates) plus one for weight
// decay. The per-element operations are the chain's, in its order, on the same
// dtype, so results are bitwise the same: adam_direction is shared with
// scale_by_adam, and the AVX2 variant is compiled without FMA, which would
// contract a·b + c into one rounding where the chain rounds twice.
#include "optim/fused_adam.hpp"

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/thread_placement.hpp"
#include "core/threading.hpp"
#include "optim/adam_math.hpp"

namespace xgrad::optim::detail {

namespace {

template <class T>
struct StepConstants {
  AdamCoefficients<T> adam;
  T weight_decay;
  T lr_factor;  // −lr, rounded to T as scale() does
};

template <class T, bool kNesterov, bool kDecay, bool kHasGrad>
[[gnu::always_inline]] inline void step_loop(std::int64_t n, const T* __restrict g, T* __restrict p,
                                             T* __restrict m, T* __restrict v, const StepConstants<T>& c) {
  for (std::int64_t i = 0; i < n; ++i) {
    T u = adam_direction<kNesterov>(c.adam, kHasGrad ? g[i] : T(0), m[i], v[i]);
    if constexpr (kDecay) u = u + c.weight_decay * p[i];  // add_decayed_weights
    u = c.lr_factor * u;                                  // scale_by_learning_rate
    p[i] = p[i] + u;                                      // apply_updates
  }
}

template <class T>
using StepKernel = void (*)(std::int64_t, const T*, T*, T*, T*, const StepConstants<T>&);

template <class T, bool kNesterov, bool kDecay, bool kHasGrad>
void step_baseline(std::int64_t n, const T* g, T* p, T* m, T* v, const StepConstants<T>& c) {
  step_loop<T, kNesterov, kDecay, kHasGrad>(n, g, p, m, v, c);
}

template <class T, bool kNesterov, bool kDecay, bool kHasGrad>
__attribute__((target("avx2"))) void step_avx2(std::int64_t n, const T* g, T* p, T* m, T* v,
                                               const StepConstants<T>& c) {
  step_loop<T, kNesterov, kDecay, kHasGrad>(n, g, p, m, v, c);
}

template <class T, bool kNesterov, bool kDecay, bool kHasGrad>
StepKernel<T> pick_isa() {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx2 ? step_avx2<T, kNesterov, kDecay, kHasGrad> : step_baseline<T, kNesterov, kDecay, kHasGrad>;
}

template <class T>
StepKernel<T> pick_kernel(bool nesterov, bool decay, bool has_grad) {
  if (nesterov) {
    if (decay) return has_grad ? pick_isa<T, true, true, true>() : pick_isa<T, true, true, false>();
    return has_grad ? pick_isa<T, true, false, true>() : pick_isa<T, true, false, false>();
  }
  if (decay) return has_grad ? pick_isa<T, false, true, true>() : pick_isa<T, false, true, false>();
  return has_grad ? pick_isa<T, false, false, true>() : pick_isa<T, false, false, false>();
}

// One parameter's operands, checked; g is null for a parameter without gradient.
struct Operands {
  DType dtype;
  std::int64_t n;
  const void* g;
  void* p;
  void* m;
  void* v;
  bool decay;
};

template <class T>
void run_range(const Operands& o, std::int64_t begin, std::int64_t end, bool nesterov,
               const StepConstants<T>& c) {
  const T* g = o.g ? static_cast<const T*>(o.g) + begin : nullptr;
  pick_kernel<T>(nesterov, o.decay, g != nullptr)(end - begin, g, static_cast<T*>(o.p) + begin,
                                                  static_cast<T*>(o.m) + begin, static_cast<T*>(o.v) + begin, c);
}

// True if a written buffer is also another operand (e.g. a parameter listed twice
// under two paths, or a gradient that is a parameter): the chain reads every
// operand before apply_updates writes any, the fused pass does not. Gradients are
// only read, so two of them may share storage (backward never makes them so, but
// set_grad can).
bool shares_storage(const std::vector<Operands>& operands) {
  std::vector<const void*> written;
  for (const Operands& op : operands)
    if (op.n > 0) written.insert(written.end(), {op.p, op.m, op.v});
  std::sort(written.begin(), written.end());
  if (std::adjacent_find(written.begin(), written.end()) != written.end()) return true;
  return std::any_of(operands.begin(), operands.end(), [&](const Operands& op) {
    return op.n > 0 && op.g && std::binary_search(written.begin(), written.end(), op.g);
  });
}

const NamedTensors* find_buffer(const OptState& state, const char* name) {
  for (const auto& [key, buffer] : state.buffers)
    if (key == name) return &buffer;
  return nullptr;
}

// Below this many parameters in all, waking a second thread costs more than it saves.
constexpr std::int64_t kParallelMinElements = std::int64_t{1} << 16;
// The same while the threads' cores share no cache (core/thread_placement.hpp): a
// thread's share of the update then reads gradients and writes parameters that the
// other thread's cache holds unless the layers computed them in the same shares.
// Measured where the two vCPUs share no L3, 2 threads: the 784-256-128-10 MLP (235 K
// parameters; its GEMMs run on the caller there) 1.41 ms per step with the update
// split, 0.79 on one thread; the main job (a 663 K-element local kernel, whose
// gradient each thread computes for its own positions) 0.19 ms split, 0.30 not.
constexpr std::int64_t kFarApartParallelMinElements = std::int64_t{1} << 19;

}  // namespace

decltype(GradientTransformation::fused_step) fused_adam_step(FusedAdamOptions o) {
  return [o = std::move(o)](const NamedTensors& params, const std::vector<Tensor>& grads, OptState& state) {
    // The chain's state: scale_by_adam's first, scale_by_learning_rate's last.
    if (grads.size() != params.size() || state.inner.size() < 2) return false;
    OptState& adam_state = state.inner.front().second;
    OptState& lr_state = state.inner.back().second;
    const NamedTensors* mu = find_buffer(adam_state, "mu");
    const NamedTensors* nu = find_buffer(adam_state, "nu");
    if (!mu || !nu || mu->size() != params.size() || nu->size() != params.size()) return false;

    std::vector<Operands> operands;
    operands.reserve(params.size());
    std::int64_t total = 0;
    for (std::size_t k = 0; k < params.size(); ++k) {
      Tensor p = params[k].second, m = (*mu)[k].second, v = (*nu)[k].second;  // handles onto the same storage
      const Tensor& g = grads[k];
      const DType dtype = p.dtype();
      if (dtype != DType::Float32 && dtype != DType::Float64) return false;
      if (m.dtype() != dtype || v.dtype() != dtype || m.shape() != p.shape() || v.shape() != p.shape()) return false;
      if (g.defined() && (g.dtype() != dtype || g.shape() != p.shape())) return false;
      const auto pointers = [&]<class T>(T) {
        return Operands{.dtype = dtype,
                        .n = p.numel(),
                        .g = g.defined() ? g.data<T>() : nullptr,
                        .p = p.data<T>(),
                        .m = m.data<T>(),
                        .v = v.data<T>(),
                        .decay = o.weight_decay != 0.0 && (!o.decay_mask || o.decay_mask(params[k].first))};
      };
      const Operands op = dtype == DType::Float64 ? pointers(0.0) : pointers(0.0f);
      operands.push_back(op);
      total += op.n;
    }
    if (shares_storage(operands)) return false;

    std::int64_t& adam_count = adam_state.counter("count");
    const std::int64_t t = adam_count + 1;
    double lr;
    std::int64_t* lr_count = nullptr;
    if (o.learning_rate.is_schedule()) {
      lr_count = &lr_state.counter("count");
      lr = o.learning_rate.schedule()(*lr_count);
    } else {
      lr = o.learning_rate(0);
    }
    const auto constants = [&]<class T>(T) {
      return StepConstants<T>{AdamCoefficients<T>::at(o.b1, o.b2, o.eps, o.eps_root, t), T(o.weight_decay), T(-lr)};
    };
    const StepConstants<float> c32 = constants(0.0f);
    const StepConstants<double> c64 = constants(0.0);

    // Each of T threads updates the same share of every parameter at every step: the
    // t-th of T contiguous ranges of each tensor. That is how the layers split their
    // parameters too (a local conv's kernel and bias by positions, their leading axes),
    // so a thread updates the lines it read and wrote in the forward and backward.
    // Chunks of all the parameters laid end to end, claimed one by one, moved between
    // the threads from step to step: where the two vCPUs share no L3 the main job's
    // update took 0.27-0.28 ms that way, 0.18-0.20 ms this way (0.14-0.16 either way
    // in a shared L3).
    const std::int64_t min_elements =
        xgrad::detail::min_parallel_work(kParallelMinElements, kFarApartParallelMinElements);
    const std::int64_t slots = total >= min_elements ? num_threads() : 1;
    const auto run_slot = [&](std::int64_t slot) {
      for (const Operands& op : operands) {
        const SlotRange r = static_slot_range(op.n, slots, slot);
        if (r.begin == r.end) continue;
        if (op.dtype == DType::Float64) run_range(op, r.begin, r.end, o.nesterov, c64);
        else run_range(op, r.begin, r.end, o.nesterov, c32);
      }
    };
    if (slots > 1) parallel_for(slots, run_slot);
    else run_slot(0);

    for (std::size_t k = 0; k < params.size(); ++k)
      for (Tensor written : {params[k].second, (*mu)[k].second, (*nu)[k].second}) written.bump_version();
    adam_count = t;
    if (lr_count) ++*lr_count;
    return true;
  };
}

}  // namespace xgrad::optim::detail
