// distributed.hpp when xgrad is built without MPI: everything but the queries
// throws, naming the call and how to get MPI.
#include <fmt/format.h>

#include "core/error.hpp"
#include "distributed/distributed.hpp"

namespace xgrad::distributed {

namespace {

[[noreturn]] void unavailable(const char* what) {
  throw Error(fmt::format("{}: xgrad was built without MPI (install an MPI, e.g. Debian's libopenmpi-dev and "
                          "openmpi-bin, then reconfigure with meson setup --reconfigure -Dmpi=enabled)",
                          what));
}

}  // namespace

bool is_available() { return false; }
void init(int*, char***) { unavailable("distributed::init"); }
void finalize() { unavailable("distributed::finalize"); }
bool is_initialized() { return false; }

Session::Session(int*, char***) : uncaught_at_start_(0) { unavailable("distributed::Session"); }
Session::~Session() = default;

int rank() { unavailable("distributed::rank"); }
int world_size() { unavailable("distributed::world_size"); }
void broadcast_parameters(NamedTensors&, int) { unavailable("distributed::broadcast_parameters"); }
void all_reduce_gradients(const NamedTensors&, std::size_t) { unavailable("distributed::all_reduce_gradients"); }
double all_reduce_mean(double) { unavailable("distributed::all_reduce_mean"); }
std::vector<double> all_reduce_sum(std::vector<double>) { unavailable("distributed::all_reduce_sum"); }

}  // namespace xgrad::distributed
