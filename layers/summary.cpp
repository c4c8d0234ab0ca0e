// Module::summary: one initialising forward pass, with every module's output
// recorded, printed as a table.
#include <set>

#include <fmt/format.h>

#include "layers/module.hpp"
#include "layers/summary_recorder.hpp"

namespace xgrad::nn {

namespace {

using Row = std::vector<std::string>;

std::string render(const std::vector<Row>& rows) {
  std::vector<std::size_t> width(rows[0].size(), 0);
  for (const Row& r : rows)
    for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  std::string out;
  auto line = [&](const Row& r) {
    std::string text;
    for (std::size_t c = 0; c < r.size(); ++c)
      text += c + 1 < r.size() ? fmt::format("{:<{}}  ", r[c], width[c]) : r[c];
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out += text + "\n";
  };
  line(rows[0]);
  Row rule;
  for (std::size_t w : width) rule.push_back(std::string(w, '-'));
  line(rule);
  for (std::size_t i = 1; i < rows.size(); ++i) line(rows[i]);
  return out;
}

}  // namespace

std::string Module::summary(const Tensor& sample_input) {
  SummaryRecorder recorder;
  init(sample_input);
  std::vector<Row> rows{{"path", "module", "input", "output", "parameters", "count", "dtype"}};
  std::int64_t total = 0, bytes = 0;
  for (auto& [p, m] : named_modules()) {
    const auto& outputs = recorder.outputs();
    const auto it = outputs.find(m);
    std::string output = it == outputs.end() ? "-" : shape_str(it->second.first) + " " +
                                                         std::string(dtype_name(it->second.second));
    // What the parameters were created for (batch dims as '*'), else what this pass fed it.
    const auto in = recorder.inputs().find(m);
    std::string input = m->initialised_for();
    if (input.empty()) input = in == recorder.inputs().end() ? "-" : m->input_spec(in->second);
    std::string shapes;
    std::set<std::string> dtypes;
    std::int64_t count = 0;
    for (const auto& [name, t] : m->params_) {
      shapes += (shapes.empty() ? "" : ", ") + name + " " + shape_str(t.shape());
      dtypes.insert(std::string(dtype_name(t.dtype())));
      count += t.numel();
      bytes += t.numel() * static_cast<std::int64_t>(itemsize(t.dtype()));
    }
    total += count;
    rows.push_back({p.empty() ? "(root)" : p, m->describe(), input, output, shapes.empty() ? "-" : shapes,
                    std::to_string(count), dtypes.empty() ? "-" : fmt::format("{}", fmt::join(dtypes, "/"))});
  }
  return render(rows) + fmt::format("Total: {} parameters, {} bytes\n", total, bytes);
}

}  // namespace xgrad::nn
