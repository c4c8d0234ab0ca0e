// doctest's main, plus a check that every test case leaves xgrad's thread count
// as it found it: set_num_threads is process-wide, so a test that changes it and
// does not restore it (test_support::ThreadCountGuard does) makes every later
// test run at its count, the threaded ones included.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "core/threading.hpp"

namespace {

std::vector<std::string> g_thread_count_leaks;

struct ThreadCountListener : doctest::IReporter {
  explicit ThreadCountListener(const doctest::ContextOptions&) {}
  void test_case_start(const doctest::TestCaseData& data) override {
    name_ = data.m_name;
    threads_at_start_ = xgrad::num_threads();
  }
  void test_case_end(const doctest::CurrentTestCaseStats&) override {
    if (const int now = xgrad::num_threads(); now != threads_at_start_)
      g_thread_count_leaks.push_back(std::string(name_) + " (" + std::to_string(threads_at_start_) +
                                     " threads at its start, " + std::to_string(now) + " at its end)");
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
  const char* name_ = "";
};

DOCTEST_REGISTER_LISTENER("thread_count", 1, ThreadCountListener);

}  // namespace

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int failed = context.run();
  for (const std::string& leak : g_thread_count_leaks)
    std::fprintf(stderr, "test case left the thread count changed: %s\n", leak.c_str());
  if (context.shouldExit()) return failed;
  return failed != 0 || !g_thread_count_leaks.empty() ? 1 : 0;
}
