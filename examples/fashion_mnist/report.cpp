#include "report.hpp"

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <fmt/format.h>

#include "core/error.hpp"
#include "data/fashion_mnist.hpp"

namespace fashion {

void write_metrics_csv(const std::string& path, const std::vector<EpochMetrics>& rows) {
  std::ofstream out(path);
  if (!out) throw xgrad::IOError("cannot write " + path);
  out << "epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds\n";
  for (const auto& r : rows)
    out << fmt::format("{},{:.6f},{:.6f},{:.6f},{:.6f},{:.2f}\n", r.epoch, r.train_loss, r.train_accuracy,
                       r.test_loss, r.test_accuracy, r.seconds);
}

void print_epoch_table(const std::vector<EpochMetrics>& rows) {
  fmt::print("\n{:>5} {:>11} {:>10} {:>10} {:>9} {:>8}\n", "epoch", "train loss", "train acc", "test loss",
             "test acc", "time");
  for (const auto& r : rows)
    fmt::print("{:>5} {:>11.4f} {:>9.2f}% {:>10.4f} {:>8.2f}% {:>7.1f}s\n", r.epoch, r.train_loss,
               100 * r.train_accuracy, r.test_loss, 100 * r.test_accuracy, r.seconds);
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

bool plot_curves(const std::string& csv_path, const std::string& png_path, int last_epoch) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    fmt::print("gnuplot not found: skipping {} (install gnuplot-nox to get it)\n", png_path);
    return false;
  }
  const std::string script = fmt::format(
      "set terminal pngcairo size 1000,420 noenhanced\n"
      "set output '{1}'\nset datafile separator ','\nset key autotitle columnhead\n"
      "set multiplot layout 1,2\nset xlabel 'epoch'\nset grid\nset xrange [0.5:{2}.5]\n"
      "set title 'loss'\nplot '{0}' using 1:2 with linespoints title 'train', '' using 1:4 with linespoints title 'test'\n"
      "set title 'accuracy'\nset format y '%.0f%%'\n"
      "plot '{0}' using 1:($3*100) with linespoints title 'train', '' using 1:($5*100) with linespoints title 'test'\n"
      "unset multiplot\n",
      csv_path, png_path, last_epoch);
  const std::string script_path = png_path + ".gnuplot";
  std::ofstream(script_path) << script;
  const int status = std::system(fmt::format("gnuplot '{}' 2>&1", script_path).c_str());
  std::remove(script_path.c_str());
  if (status != 0) {
    fmt::print("gnuplot failed (status {}): no {}\n", status, png_path);
    return false;
  }
  return true;
}

}  // namespace fashion
