// What a run leaves behind: metrics.csv, the confusion matrix, curves.png.
#pragma once

#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace fashion {

struct EpochMetrics {
  int epoch = 0;
  double train_loss = 0, train_accuracy = 0, test_loss = 0, test_accuracy = 0, seconds = 0;
};

// Rewrites `path` with a header and one row per epoch.
void write_metrics_csv(const std::string& path, const std::vector<EpochMetrics>& rows);
void print_epoch_table(const std::vector<EpochMetrics>& rows);

// counts[true][predicted], printed with the class names.
void print_confusion_matrix(const std::vector<std::vector<long>>& counts);

// Draws loss and accuracy per epoch with gnuplot into `png_path`. Returns false
// (after saying why) when gnuplot is missing or fails; the run goes on.
bool plot_curves(const std::string& csv_path, const std::string& png_path, int last_epoch);

}  // namespace fashion
