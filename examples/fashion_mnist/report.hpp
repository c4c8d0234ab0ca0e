// What a run leaves behind: metrics.csv, the confusion matrix, curves.png.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/tensor.hpp"

namespace fashion {

struct EpochMetrics {
  int epoch = 0;
  double train_loss = 0, train_accuracy = 0, test_loss = 0, test_accuracy = 0;
  double seconds = 0;  // NaN when unknown (an epoch run before a resume whose metrics.csv is gone)
};

// The columns a checkpoint keeps besides the epoch (the deterministic ones: not seconds).
inline constexpr std::pair<const char*, double EpochMetrics::*> kHistoryColumns[] = {
    {"train_loss", &EpochMetrics::train_loss},
    {"train_accuracy", &EpochMetrics::train_accuracy},
    {"test_loss", &EpochMetrics::test_loss},
    {"test_accuracy", &EpochMetrics::test_accuracy}};

// Replaces `path`, atomically (a crash leaves the old file or the new one, never
// a torn one), with a header and one row per epoch; an unknown seconds field is
// left empty. Throws xgrad::IOError if the file cannot be written.
void write_metrics_csv(const std::string& path, const std::vector<EpochMetrics>& rows);

// Fills in the unknown seconds of `rows` from the metrics.csv at `path`, taking a
// row's seconds only if its other fields are those `rows` would write. A missing
// or foreign file leaves them unknown.
void recover_seconds(const std::string& path, std::vector<EpochMetrics>& rows);
void print_epoch_table(const std::vector<EpochMetrics>& rows);

// counts[true][predicted], printed with the class names.
void print_confusion_matrix(const std::vector<std::vector<long>>& counts);

// Draws loss and accuracy per epoch with gnuplot into `png_path`. Returns false
// (after saying why) when gnuplot is missing or fails; the run goes on.
bool plot_curves(const std::string& csv_path, const std::string& png_path, int last_epoch);

}  // namespace fashion
