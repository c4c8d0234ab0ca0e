// The Fashion-MNIST example's report: curves.png is drawn by gnuplot from paths
// that come from --out, so they must reach gnuplot as data, never as code.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "core/error.hpp"
#include "examples/fashion_mnist/report.hpp"

namespace fs = std::filesystem;

namespace {

bool gnuplot_installed() {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "";
  for (std::size_t start = 0; start <= dirs.size();) {
    const std::size_t end = std::min(dirs.find(':', start), dirs.size());
    if (::access((dirs.substr(start, end - start) + "/gnuplot").c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

// Runs the test body in a fresh temporary directory, so relative paths and the
// side effects an injected command would have land there; restores the directory after.
class ScratchDirectory {
 public:
  ScratchDirectory() : previous_(fs::current_path()) {
    std::string pattern = (fs::temp_directory_path() / "xgrad-report-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
    fs::current_path(path_);
  }
  ~ScratchDirectory() {
    fs::current_path(previous_);
    fs::remove_all(path_);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path previous_, path_;
};

bool is_png(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string magic(8, '\0');
  in.read(magic.data(), 8);
  return in && magic == "\x89PNG\r\n\x1a\n";
}

std::string contents(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Caps the size of files this process writes (RLIMIT_FSIZE), so that a write past
// `bytes` fails with EFBIG as on a full disk; SIGXFSZ is ignored meanwhile.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &previous_) == 0);
    previous_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{bytes, previous_.rlim_max};
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &previous_);
    std::signal(SIGXFSZ, previous_handler_);
  }

 private:
  rlimit previous_{};
  void (*previous_handler_)(int) = nullptr;
};

}  // namespace

TEST_CASE("write_metrics_csv replaces the file whole or not at all, and says when it cannot write") {
  ScratchDirectory scratch;
  std::vector<fashion::EpochMetrics> rows{{1, 0.9, 0.7, 0.8, 0.72, 1.5}};
  fashion::write_metrics_csv("metrics.csv", rows);
  const std::string one_epoch =
      "epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds\n1,0.900000,0.700000,0.800000,0.720000,1.50\n";
  CHECK(contents("metrics.csv") == one_epoch);
  rows.push_back({2, 0.6, 0.8, 0.65, 0.78, std::nan("")});  // seconds unknown: an empty field
  {
    FileSizeLimit limit(one_epoch.size() / 2);  // as a full disk: writing in place would leave half a file
    CHECK_THROWS_AS(fashion::write_metrics_csv("metrics.csv", rows), xgrad::IOError);
  }
  CHECK(contents("metrics.csv") == one_epoch);  // the old file, intact
  CHECK(std::distance(fs::directory_iterator("."), fs::directory_iterator()) == 1);  // no temporary file left
  fashion::write_metrics_csv("metrics.csv", rows);
  CHECK(contents("metrics.csv") == one_epoch + "2,0.600000,0.800000,0.650000,0.780000,\n");
  CHECK_THROWS_AS(fashion::write_metrics_csv("no such directory/metrics.csv", rows), xgrad::IOError);
}

TEST_CASE("recover_seconds takes the seconds of the rows a metrics.csv holds for the same epochs") {
  ScratchDirectory scratch;
  fashion::write_metrics_csv("metrics.csv", {{1, 0.9, 0.7, 0.8, 0.72, 1.5}, {2, 0.6, 0.8, 0.65, 0.78, 2.25}});
  const double unknown = std::nan("");
  // Epoch 1 as written; epoch 2 with another loss (a different run's row); epoch 3 absent.
  std::vector<fashion::EpochMetrics> rows{
      {1, 0.9, 0.7, 0.8, 0.72, unknown}, {2, 0.5, 0.8, 0.65, 0.78, unknown}, {3, 0.4, 0.9, 0.5, 0.8, unknown}};
  fashion::recover_seconds("metrics.csv", rows);
  CHECK(rows[0].seconds == 1.5);
  CHECK(std::isnan(rows[1].seconds));
  CHECK(std::isnan(rows[2].seconds));
  fashion::recover_seconds("no such file.csv", rows);  // nothing to recover from: not an error
  CHECK(rows[0].seconds == 1.5);
}

TEST_CASE("plot_curves draws at paths holding quotes, spaces, $(), ;, backquotes and newlines, and runs none of them") {
  if (!gnuplot_installed()) {
    MESSAGE("skipped: gnuplot is not installed");
    return;
  }
  ScratchDirectory scratch;
  const std::vector<fashion::EpochMetrics> rows{{1, 0.9, 0.7, 0.8, 0.72, 1.5}, {2, 0.6, 0.8, 0.65, 0.78, 1.4}};
  struct Case {
    std::string csv, png;
  };
  std::vector<Case> cases;
  for (const std::string dir : {"it's a \"quoted\" run with spaces", "/tmp/inj'$(touch side_effect)'x",
                                "a;touch side_effect;b", "`touch side_effect`", "line\nbreak\rand\ttab",
                                "@dir \"`touch side_effect`\" \\012 \\", "$(touch side_effect)"}) {
    // A leading '/' becomes a relative directory "tmp/...": the scratch directory holds everything.
    const std::string relative = dir.starts_with('/') ? dir.substr(1) : dir;
    fs::create_directories(relative);
    cases.push_back({relative + "/metrics.csv", relative + "/curves.png"});
  }
  // gnuplot reads a data file named "<cmd" from a pipe and writes an output named "|cmd" to one.
  cases.push_back({"<touch side_effect", "|touch side_effect"});
  cases.push_back({(scratch.path() / "absolute 'dir'.csv").string(), (scratch.path() / "absolute 'dir'.png").string()});
  for (const Case& c : cases) {
    INFO("png path: ", c.png);
    fashion::write_metrics_csv(c.csv, rows);
    CHECK(fashion::plot_curves(c.csv, c.png, 2));
    CHECK(is_png(c.png));
  }
  CHECK_FALSE(fs::exists("side_effect"));
}

TEST_CASE("plot_curves reports a gnuplot failure instead of pretending") {
  if (!gnuplot_installed()) {
    MESSAGE("skipped: gnuplot is not installed");
    return;
  }
  ScratchDirectory scratch;
  CHECK_FALSE(fashion::plot_curves("no such file.csv", "curves.png", 1));
}
