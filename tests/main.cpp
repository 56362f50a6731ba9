// The test binaries' main: doctest's own, plus one guard. ctest runs each case by name
// (doctest_discover_tests), and a name the filter cannot match -- CMake splits names at ';' --
// used to run nothing and pass. A run whose filters select no test case now fails instead.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <optional>

namespace {

std::optional<unsigned> g_cases_selected;  // set when a test run (not a query) ends

struct SelectedCasesListener final : doctest::IReporter {
    explicit SelectedCasesListener(const doctest::ContextOptions&) {}
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats& stats) override {
        g_cases_selected = stats.numTestCasesPassingFilters;
    }
    void test_case_start(const doctest::TestCaseData&) override {}
    void test_case_reenter(const doctest::TestCaseData&) override {}
    void test_case_end(const doctest::CurrentTestCaseStats&) override {}
    void test_case_exception(const doctest::TestCaseException&) override {}
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData&) override {}
    void log_message(const doctest::MessageData&) override {}
    void test_case_skipped(const doctest::TestCaseData&) override {}
};

REGISTER_LISTENER("selected-cases", 1, SelectedCasesListener);

}  // namespace

int main(int argc, char** argv) {
    doctest::Context context(argc, argv);
    int status = context.run();
    if (context.shouldExit()) return status;
    if (g_cases_selected && *g_cases_selected == 0) {
        std::fprintf(stderr, "no test case matches the filters: a test name with ';' or a typo?\n");
        return status != 0 ? status : 1;
    }
    return status;
}
