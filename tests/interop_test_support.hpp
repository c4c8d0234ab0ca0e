// Shared by the interop format tests: the checked-in fixtures, exact comparison of
// whole tensor maps, and whether /usr/bin/python3 has a module for the live round trips.
#pragma once

#include <cstdlib>
#include <map>
#include <string>

#include "io_test_support.hpp"

namespace interop_test {

inline std::string fixture(const std::string& name) { return std::string(XGRAD_TEST_DATA) + "/interop/" + name; }

// The fixture's twin written by numpy.savez (tests/data/interop/make_fixtures.py).
inline std::map<std::string, xgrad::Tensor> expected(const std::string& name) {
  return xgrad::load_npz(fixture(name + ".expected.npz"));
}

// Same keys; each tensor of the same dtype, shape and bits.
inline void check_same(const std::map<std::string, xgrad::Tensor>& got,
                       const std::map<std::string, xgrad::Tensor>& want) {
  std::string got_keys, want_keys;
  for (const auto& [k, t] : got) got_keys += k + " ";
  for (const auto& [k, t] : want) want_keys += k + " ";
  REQUIRE(got_keys == want_keys);
  for (const auto& [k, t] : want) {
    INFO("key " << k);
    io_test::check_identical(got.at(k), t);
  }
}

// Whether /usr/bin/python3 imports every module in `modules` ("torch", "msgpack numpy").
inline bool python_has(const std::string& modules) {
  std::string imports;
  for (std::size_t i = 0, j; i < modules.size(); i = j + 1) {
    j = modules.find(' ', i);
    if (j == std::string::npos) j = modules.size();
    imports += "import " + modules.substr(i, j - i) + ";";
  }
  const std::string command = "/usr/bin/python3 -c '" + imports + "' >/dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

}  // namespace interop_test
