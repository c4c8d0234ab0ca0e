#include "core/precision.hpp"

#include <array>
#include <string>
#include <utility>

#include "core/error.hpp"

namespace xgrad {

Precision parse_precision(std::string_view name) {
  static constexpr std::array<std::pair<std::string_view, Precision>, 8> kNames = {{
      {"default", Precision::Default},
      {"bfloat16", Precision::Default},
      {"fastest", Precision::Default},
      {"high", Precision::High},
      {"bfloat16_3x", Precision::High},
      {"tensorfloat32", Precision::High},
      {"highest", Precision::Highest},
      {"float32", Precision::Highest},
  }};
  for (const auto& [key, value] : kNames)
    if (key == name) return value;
  throw ValueError("precision: unknown precision '" + std::string(name) +
                   "'; use 'default', 'high' or 'highest' (or the aliases 'bfloat16', 'fastest', "
                   "'bfloat16_3x', 'tensorfloat32', 'float32')");
}

std::string_view precision_name(Precision precision) {
  switch (precision) {
    case Precision::Default: return "default";
    case Precision::High: return "high";
    case Precision::Highest: return "highest";
  }
  return "default";
}

}  // namespace xgrad
