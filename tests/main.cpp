// doctest's main, plus a check that every test case leaves xgrad's thread count
// and the main thread's floating-point mode as it found them: set_num_threads is
// process-wide, so a test that changes it and does not restore it
// (test_support::ThreadCountGuard does) makes every later test run at its count,
// the threaded ones included; a denormal flush left on (FlushDenormalsGuard
// restores it) would change every later test's arithmetic.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/flush_denormals.hpp"
#include "core/threading.hpp"

namespace {

std::vector<std::string> g_global_state_leaks;

struct GlobalStateListener : doctest::IReporter {
  explicit GlobalStateListener(const doctest::ContextOptions&) {}
  void test_case_start(const doctest::TestCaseData& data) override {
    name_ = data.m_name;
    threads_at_start_ = xgrad::num_threads();
    control_at_start_ = xgrad::detail::floating_point_control();
  }
  void test_case_end(const doctest::CurrentTestCaseStats&) override {
    if (const int now = xgrad::num_threads(); now != threads_at_start_)
      g_global_state_leaks.push_back(std::string(name_) + " (" + std::to_string(threads_at_start_) +
                                     " threads at its start, " + std::to_string(now) + " at its end)");
    if (xgrad::detail::floating_point_control() != control_at_start_)
      g_global_state_leaks.push_back(std::string(name_) + " (the floating-point mode: flush denormals, rounding)");
  }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}

 private:
  int threads_at_start_ = 0;
  std::uint32_t control_at_start_ = 0;
  const char* name_ = "";
};

DOCTEST_REGISTER_LISTENER("global_state", 1, GlobalStateListener);

}  // namespace

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int failed = context.run();
  for (const std::string& leak : g_global_state_leaks)
    std::fprintf(stderr, "test case left global state changed: %s\n", leak.c_str());
  if (context.shouldExit()) return failed;
  return failed != 0 || !g_global_state_leaks.empty() ? 1 : 0;
}
