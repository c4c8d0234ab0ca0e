#include "report.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/io/file_io.hpp"
#include "data/fashion_mnist.hpp"

namespace fashion {

namespace {

// A metrics.csv row without its seconds field (and without the comma before it).
std::string row_prefix(const EpochMetrics& r) {
  return fmt::format("{},{:.6f},{:.6f},{:.6f},{:.6f}", r.epoch, r.train_loss, r.train_accuracy, r.test_loss,
                     r.test_accuracy);
}

}  // namespace

void write_metrics_csv(const std::string& path, const std::vector<EpochMetrics>& rows) {
  std::string text = "epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds\n";
  for (const auto& r : rows)
    text += row_prefix(r) + (std::isnan(r.seconds) ? std::string(",\n") : fmt::format(",{:.2f}\n", r.seconds));
  xgrad::AtomicFileWriter out(path);
  out.write(text);
  out.commit();
}

void recover_seconds(const std::string& path, std::vector<EpochMetrics>& rows) {
  std::ifstream in(path);
  std::map<std::string, double> seconds_by_prefix;
  for (std::string line; std::getline(in, line);) {
    const auto comma = line.rfind(',');
    if (comma == std::string::npos || comma + 1 == line.size()) continue;
    try {
      seconds_by_prefix[line.substr(0, comma)] = std::stod(line.substr(comma + 1));
    } catch (const std::exception&) {  // the header, or a row this function cannot use
    }
  }
  for (auto& r : rows)
    if (const auto it = seconds_by_prefix.find(row_prefix(r)); std::isnan(r.seconds) && it != seconds_by_prefix.end())
      r.seconds = it->second;
}

void print_epoch_table(const std::vector<EpochMetrics>& rows) {
  fmt::print("\n{:>5} {:>11} {:>10} {:>10} {:>9} {:>8}\n", "epoch", "train loss", "train acc", "test loss",
             "test acc", "time");
  for (const auto& r : rows)
    fmt::print("{:>5} {:>11.4f} {:>9.2f}% {:>10.4f} {:>8.2f}% {:>8}\n", r.epoch, r.train_loss, 100 * r.train_accuracy,
               r.test_loss, 100 * r.test_accuracy, std::isnan(r.seconds) ? "?" : fmt::format("{:.1f}s", r.seconds));
}

void print_confusion_matrix(const std::vector<std::vector<long>>& counts) {
  fmt::print("\nconfusion matrix (rows: true class, columns: predicted)\n{:>12}", "");
  for (std::size_t j = 0; j < counts.size(); ++j) fmt::print("{:>6}", j);
  fmt::print("\n");
  for (std::size_t i = 0; i < counts.size(); ++i) {
    fmt::print("{:>9} {:>2}", std::string(xgrad::kFashionMnistClasses[i]).substr(0, 9), i);
    for (long c : counts[i]) fmt::print("{:>6}", c);
    fmt::print("\n");
  }
}

namespace {

// A gnuplot string expression whose value is `text`, byte for byte. gnuplot
// substitutes `commands` inside double quotes but nothing inside single quotes,
// where only ' is special (doubled); a single-quoted string cannot hold a control
// character (a newline would end the command), so those are joined in as
// double-quoted octal escapes: 'a'."\012".'b'.
std::string gnuplot_string(const std::string& text) {
  std::string out = "'";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) out += fmt::format("'.\"\\{:03o}\".'", byte);
    else if (c == '\'') out += "''";
    else out += c;
  }
  return out + "'";
}

// gnuplot gives some file names a meaning of their own: a data file '<cmd' or an
// output '|cmd' runs a shell command, '-', '+' and '$name' are not files. Only
// relative names can start that way; "./" makes them plain paths.
std::string plain_path(const std::string& path) { return path.starts_with('/') ? path : "./" + path; }

// Runs gnuplot (found on PATH) with `script` on its standard input, without a
// shell. Returns an empty string on success, else what went wrong.
std::string run_gnuplot(const std::string& script) {
  // The whole script is in the pipe before gnuplot starts, so writing it can
  // neither block nor raise SIGPIPE if gnuplot exits early.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return fmt::format("gnuplot: cannot create a pipe: {}", std::strerror(errno));
  if (script.size() > 65536) ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(script.size()));
  ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
  const ssize_t written = ::write(fds[1], script.data(), script.size());
  const int write_error = errno;
  ::close(fds[1]);
  if (written != static_cast<ssize_t>(script.size())) {
    ::close(fds[0]);
    return fmt::format("gnuplot: cannot pass it its {}-byte script: {}", script.size(),
                       written < 0 ? std::strerror(write_error) : "the pipe is full");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[0], STDIN_FILENO);
  char name[] = "gnuplot";
  char* argv[] = {name, nullptr};
  pid_t pid = 0;
  const int spawn_error = ::posix_spawnp(&pid, name, &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[0]);
  if (spawn_error == ENOENT) return "gnuplot not found";
  if (spawn_error != 0) return fmt::format("cannot start gnuplot: {}", std::strerror(spawn_error));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return fmt::format("gnuplot: waitpid failed: {}", std::strerror(errno));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  if (WIFSIGNALED(status)) return fmt::format("gnuplot was killed by signal {}", WTERMSIG(status));
  return fmt::format("gnuplot failed (exit status {})", WEXITSTATUS(status));
}

}  // namespace

bool plot_curves(const std::string& csv_path, const std::string& png_path, int last_epoch) {
  // The paths reach gnuplot only as string literals in the script it reads on its
  // standard input; no shell ever sees them.
  const std::string script = fmt::format(
      "csv = {0}\nset terminal pngcairo size 1000,420 noenhanced\n"
      "set output {1}\nset datafile separator ','\nset key autotitle columnhead\n"
      "set multiplot layout 1,2\nset xlabel 'epoch'\nset grid\nset xrange [0.5:{2}.5]\n"
      "set title 'loss'\nplot csv using 1:2 with linespoints title 'train', '' using 1:4 with linespoints title 'test'\n"
      "set title 'accuracy'\nset format y '%.0f%%'\n"
      "plot csv using 1:(column(3)*100) with linespoints title 'train', '' using 1:(column(5)*100) with linespoints "
      "title 'test'\nunset multiplot\nunset output\n",
      gnuplot_string(plain_path(csv_path)), gnuplot_string(plain_path(png_path)), last_epoch);
  const std::string error = run_gnuplot(script);
  if (!error.empty()) {
    fmt::print("{}: no {}{}\n", error, png_path,
               error.find("not found") != std::string::npos ? " (install gnuplot-nox to get it)" : "");
    return false;
  }
  return true;
}

}  // namespace fashion
