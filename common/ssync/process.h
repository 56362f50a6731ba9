// Running another program: always an argument vector (never a shell string), with bounded
// captured output.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "ssync/status.h"

namespace ssync {

struct ProcessResult {
    int exit_status = -1;   // the exit code, or 128 + signal number when killed by a signal
    std::string out;        // captured standard output (up to ProcessOptions::max_output)
    std::string err;        // captured standard error (likewise)
};

struct ProcessOptions {
    std::string stdin_data;                 // written to the child's standard input
    std::vector<std::string> extra_env;     // "NAME=value" added to the environment
    std::size_t max_output = 16u << 20;     // output beyond this is an error
    bool inherit_stderr = false;            // let the child write to our stderr directly
};

// Runs argv[0] (searched in PATH) with argv and waits for it. An error only when the program
// could not be started or its output exceeded the bound; a non-zero exit is reported in
// exit_status, not as an error.
Result<ProcessResult> run_process(const std::vector<std::string>& argv,
                                  const ProcessOptions& options = {});

}  // namespace ssync
