// distributed.hpp on MPI. xgrad talks on its own duplicate of MPI_COMM_WORLD, so
// its messages never mix with the application's, and with MPI_ERRORS_RETURN, so
// a failed call becomes an xgrad::Error instead of killing the job silently.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

#define OMPI_SKIP_MPICXX 1  // the C API only: no deprecated C++ bindings
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <fmt/format.h>

#include "core/tensor_impl.hpp"
#include "distributed/buckets.hpp"
#include "distributed/distributed.hpp"

namespace xgrad::distributed {

namespace {

MPI_Comm g_comm = MPI_COMM_NULL;
bool g_started_mpi = false;  // whether init() called MPI_Init (so finalize() ends it)

void check(int code, const char* what, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw Error(fmt::format("{}: {} failed: {}", what, call, std::string_view(text, static_cast<std::size_t>(length))));
}

MPI_Comm comm(const char* what) {
  if (g_comm == MPI_COMM_NULL)
    throw Error(fmt::format("{}: MPI is not initialized; create a distributed::Session (or call distributed::init) "
                            "first",
                            what));
  return g_comm;
}

template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, std::int64_t>) return MPI_INT64_T;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return MPI_UINT8_T;
  else static_assert(sizeof(T) == 0, "no MPI datatype");
}

// In-place all-reduce of a small or bucket-sized buffer (count fits an int by construction).
template <class T>
void all_reduce(T* data, std::size_t count, MPI_Op op, const char* what) {
  check(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(count), mpi_type<T>(), op, comm(what)), what,
        "MPI_Allreduce");
}

void broadcast_bytes(void* data, std::size_t bytes, int root, const char* what) {
  constexpr std::size_t kChunk = std::size_t{1} << 30;  // MPI counts are ints
  auto* p = static_cast<char*>(data);
  for (std::size_t done = 0; done < bytes; done += kChunk)
    check(MPI_Bcast(p + done, static_cast<int>(std::min(kChunk, bytes - done)), MPI_BYTE, root, comm(what)), what,
          "MPI_Bcast");
}

// Every rank throws together when any rank found a problem, so none is left
// waiting in the next collective. The rank that found it reports its own message.
void throw_if_any_rank_failed(const std::string& local_error, const char* what) {
  std::int64_t first_failed = local_error.empty() ? INT64_MAX : rank();
  std::int64_t negated = -first_failed;
  all_reduce(&negated, 1, MPI_MAX, what);  // max of -r is -(min r)
  first_failed = -negated;
  if (first_failed == INT64_MAX) return;
  if (!local_error.empty()) throw ValueError(fmt::format("{}: {}", what, local_error));
  throw ValueError(fmt::format("{}: rank {} reported a problem (see its error)", what, first_failed));
}

std::string describe(const std::string& name, const Tensor& t) {
  return t.defined() ? fmt::format("'{}' {} {}", name, dtype_name(t.dtype()), shape_str(t.shape()))
                     : fmt::format("'{}' (undefined)", name);
}

// Why this rank's parameter list differs from root's (empty when it does not).
std::string compare_with_root(const std::vector<std::string>& mine, const std::vector<std::string>& roots, int root) {
  for (std::size_t i = 0; i < std::min(mine.size(), roots.size()); ++i)
    if (mine[i] != roots[i])
      return fmt::format("rank {}'s parameter {} is {} but rank {}'s is {}", rank(), i, mine[i], root, roots[i]);
  if (mine.size() != roots.size())
    return fmt::format("rank {} has {} parameters but rank {} has {}", rank(), mine.size(), root, roots.size());
  return {};
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1)
    lines.push_back(text.substr(start, end - start));
  return lines;
}

// Ranks must pass the same number of gradients with the same dtypes and sizes,
// or their buckets would differ and the all-reduces would mismatch.
void check_same_layout(const NamedTensors& params, const char* what) {
  std::uint64_t hash = 1469598103934665603ull;  // FNV-1a over (dtype, numel) of each parameter
  const auto mix = [&](std::uint64_t v) {
    for (int b = 0; b < 8; ++b) hash = (hash ^ ((v >> (8 * b)) & 0xff)) * 1099511628211ull;
  };
  for (const auto& [name, p] : params) {
    mix(static_cast<std::uint64_t>(p.dtype()));
    mix(static_cast<std::uint64_t>(p.numel()));
  }
  const auto count = static_cast<std::int64_t>(params.size());
  const auto h = static_cast<std::int64_t>(hash >> 1);
  std::int64_t extremes[4] = {count, -count, h, -h};  // max and -min of each
  all_reduce(extremes, 4, MPI_MAX, what);
  if (extremes[0] != -extremes[1])
    throw ValueError(fmt::format("{}: the ranks pass different numbers of parameters (from {} to {})", what,
                                 -extremes[1], extremes[0]));
  if (extremes[2] != -extremes[3])
    throw ValueError(fmt::format("{}: the ranks pass parameters of different dtypes or sizes", what));
}

template <class W>
std::vector<W>& wire_buffer(std::size_t numel) {
  static std::vector<W> buffer;  // reused across steps: fresh pages cost more than the copy
  if (buffer.size() < numel) buffer.resize(numel);
  return buffer;
}

}  // namespace

bool is_available() { return true; }

void init(int* argc, char*** argv) {
  if (g_comm != MPI_COMM_NULL) return;
  const char* what = "distributed::init";
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), what, "MPI_Init_thread");
    g_started_mpi = true;
  }
  check(MPI_Comm_dup(MPI_COMM_WORLD, &g_comm), what, "MPI_Comm_dup");
  MPI_Comm_set_errhandler(g_comm, MPI_ERRORS_RETURN);
}

void finalize() {
  if (g_comm == MPI_COMM_NULL) return;
  int finalized = 0;
  MPI_Finalized(&finalized);  // the application may have ended MPI itself
  if (!finalized) MPI_Comm_free(&g_comm);
  if (g_started_mpi && !finalized) MPI_Finalize();
  g_comm = MPI_COMM_NULL;
  g_started_mpi = false;
}

bool is_initialized() { return g_comm != MPI_COMM_NULL; }

Session::Session(int* argc, char*** argv) : uncaught_at_start_(std::uncaught_exceptions()) { init(argc, argv); }

Session::~Session() {
  if (std::uncaught_exceptions() > uncaught_at_start_) MPI_Abort(MPI_COMM_WORLD, 1);
  finalize();
}

int rank() {
  int r = 0;
  check(MPI_Comm_rank(comm("distributed::rank"), &r), "distributed::rank", "MPI_Comm_rank");
  return r;
}

int world_size() {
  int s = 0;
  check(MPI_Comm_size(comm("distributed::world_size"), &s), "distributed::world_size", "MPI_Comm_size");
  return s;
}

void broadcast_parameters(NamedTensors& params, int root) {
  const char* what = "distributed::broadcast_parameters";
  const int size = world_size();
  if (root < 0 || root >= size)
    throw ValueError(fmt::format("{}: root {} is not a rank (world size {})", what, root, size));

  // First agree on names, dtypes and shapes: root sends its list, each rank compares.
  std::vector<std::string> mine;
  std::string local_error;
  std::string text;
  for (const auto& [name, t] : params) {
    mine.push_back(describe(name, t));
    text += mine.back() + '\n';
    if (!t.defined() && local_error.empty())
      local_error = fmt::format("rank {}'s parameter '{}' is undefined", rank(), name);
  }
  auto length = static_cast<std::int64_t>(text.size());
  broadcast_bytes(&length, sizeof length, root, what);
  text.resize(static_cast<std::size_t>(length));
  broadcast_bytes(text.data(), text.size(), root, what);
  if (local_error.empty() && rank() != root) local_error = compare_with_root(mine, split_lines(text), root);
  throw_if_any_rank_failed(local_error, what);

  for (auto& [name, t] : params) {
    visit_dtype(t.dtype(), [&](auto tag) {
      using T = decltype(tag);
      broadcast_bytes(t.data<T>(), static_cast<std::size_t>(t.numel()) * sizeof(T), root, what);
    });
    if (rank() != root) t.bump_version();
  }
}

void all_reduce_gradients(const NamedTensors& params, std::size_t bucket_bytes) {
  const char* what = "distributed::all_reduce_gradients";
  if (bucket_bytes < sizeof(double) || bucket_bytes > (std::size_t{1} << 30))
    throw ValueError(fmt::format("{}: bucket_bytes must be between 8 and 2^30, got {}", what, bucket_bytes));
  const int size = world_size();
  if (size == 1) return;  // the average over one rank is the gradient itself
  check_same_layout(params, what);

  // Which gradients exist on some rank: those are averaged (missing ones count as zeros).
  const std::size_t n = params.size();
  std::vector<std::uint8_t> present(n);
  for (std::size_t i = 0; i < n; ++i) present[i] = params[i].second.grad().defined();
  all_reduce(present.data(), n, MPI_MAX, what);

  std::vector<Tensor> grads(n), averages(n);
  std::vector<TensorExtent> extents(n);
  for (std::size_t i = 0; i < n; ++i) {
    const Tensor& p = params[i].second;
    extents[i] = {p.dtype(), present[i] ? p.numel() : 0};
    if (!present[i]) continue;
    grads[i] = p.grad();
    const bool owns_storage = grads[i].defined() && grads[i].impl()->storage.use_count() == 1;
    averages[i] = owns_storage ? grads[i] : empty(p.shape(), p.dtype());
  }

  const double scale = 1.0 / size;
  for (const Bucket& bucket : plan_buckets(extents, bucket_bytes)) {
    const auto count = static_cast<std::size_t>(bucket.numel);
    const auto reduce = [&](auto* wire) {
      pack_bucket(bucket, grads, wire);
      all_reduce(wire, count, MPI_SUM, what);
      unpack_bucket(bucket, wire, scale, averages);
    };
    if (bucket.wire_dtype == DType::Float64) reduce(wire_buffer<double>(count).data());
    else reduce(wire_buffer<float>(count).data());
  }

  for (std::size_t i = 0; i < n; ++i) {
    if (!present[i]) continue;
    Tensor p = params[i].second;  // a handle: set_grad reaches the caller's parameter
    if (averages[i].impl() == grads[i].impl()) averages[i].bump_version();
    else p.set_grad(averages[i]);
  }
}

double all_reduce_mean(double value) {
  all_reduce(&value, 1, MPI_SUM, "distributed::all_reduce_mean");
  return value / world_size();
}

std::vector<double> all_reduce_sum(std::vector<double> values) {
  const char* what = "distributed::all_reduce_sum";
  if (values.size() > INT_MAX)
    throw ValueError(fmt::format("{}: {} values are more than one call can send", what, values.size()));
  all_reduce(values.data(), values.size(), MPI_SUM, what);
  return values;
}

}  // namespace xgrad::distributed
