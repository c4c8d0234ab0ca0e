// A process killed in the middle of saving a checkpoint loses nothing: the previous
// checkpoint still loads intact and no partial file ever appears under the final
// name (save_npz writes a temporary file, fsyncs it and renames it into place).
// POSIX only: a forked child saves in a loop and is SIGKILLed mid-save.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "io_test_support.hpp"

using namespace xgrad;
using io_test::TempDir;

namespace {

constexpr std::int64_t kElements = std::int64_t{1} << 21;  // 8 MiB of float32: a save takes milliseconds

// Checkpoint k: a step counter and a large array filled with k, so that any mix
// of two checkpoints, or a cut-off one, is detectable.
std::map<std::string, Tensor> checkpoint(std::int64_t k) {
  return {{"step", scalar(static_cast<double>(k), DType::Int64)},
          {"w", full({kElements}, static_cast<double>(k), DType::Float32)}};
}

// The child: announces "starting save k" (k) and "saved k" (-k) on the pipe, forever.
[[noreturn]] void save_forever(const std::string& path, int report) {
  for (std::int64_t k = 1;; ++k) {
    const auto arrays = checkpoint(k);
    if (::write(report, &k, sizeof k) != sizeof k) ::_exit(2);
    try {
      save_npz(path, arrays);
    } catch (...) {
      ::_exit(3);
    }
    const std::int64_t done = -k;
    if (::write(report, &done, sizeof done) != sizeof done) ::_exit(2);
  }
}

std::int64_t next_report(int fd) {
  std::int64_t v = 0;
  REQUIRE(::read(fd, &v, sizeof v) == static_cast<ssize_t>(sizeof v));
  return v;
}

std::vector<std::filesystem::path> files_in(const std::filesystem::path& dir) {
  return {std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()};
}

}  // namespace

TEST_CASE("a checkpoint save killed mid-way leaves the previous checkpoint intact") {
  TempDir dir;
  const std::string path = dir.file("model.npz");
  bool killed_mid_save = false;
  // A kill can land just after the rename (the save then counts as done); retry until
  // one lands inside a save, which a leftover temporary file proves.
  for (int attempt = 0; attempt < 10 && !killed_mid_save; ++attempt) {
    int pipe_fds[2];
    REQUIRE(::pipe(pipe_fds) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      ::close(pipe_fds[0]);
      save_forever(path, pipe_fds[1]);
    }
    ::close(pipe_fds[1]);
    // Let two saves complete, then kill the child shortly after the third one starts.
    std::int64_t started = 0, saved = 0;
    while (started < 3) {
      const std::int64_t report = next_report(pipe_fds[0]);
      if (report > 0)
        started = report;
      else
        saved = -report;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500 * (attempt + 1)));
    REQUIRE(::kill(child, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
    ::close(pipe_fds[0]);

    std::vector<std::filesystem::path> leftovers;
    for (const auto& f : files_in(dir.path()))
      if (f.filename() != "model.npz") leftovers.push_back(f);
    killed_mid_save = !leftovers.empty();
    CAPTURE(attempt);
    CAPTURE(saved);
    // Whatever the moment of the kill, the final name holds one complete checkpoint:
    // the last one saved, or the one being saved if the kill came after its rename.
    const auto loaded = load_npz(path);  // verifies every CRC
    REQUIRE(loaded.size() == 2);
    const auto step = static_cast<std::int64_t>(loaded.at("step").item());
    CHECK(step >= 2);
    CHECK(step <= 3);
    if (killed_mid_save) CHECK(step == 2);  // the rename never happened
    io_test::check_identical(loaded.at("w"), checkpoint(step).at("w"));
    // The leftover is the dead save's temporary file, never mistaken for a checkpoint.
    for (const auto& f : leftovers) {
      CHECK(f.filename().string().starts_with("model.npz.tmp-"));
      std::filesystem::remove(f);
    }
  }
  CHECK(killed_mid_save);
}
