// The command-line front end shared by ssync-signer and ssync-verifier: one table of verbs,
// each with its options; --help is generated from the table.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ssync/status.h"

namespace ssync::cli {

struct OptionSpec {
    std::string name;        // without the leading "--"
    std::string value_name;  // empty for a flag
    std::string help;
    bool repeatable = false;
};

class Args {
public:
    bool has(const std::string& name) const { return values_.count(name) > 0; }
    // The option's (last) value, or `fallback` when absent.
    std::string get(const std::string& name, const std::string& fallback = {}) const;
    const std::vector<std::string>& all(const std::string& name) const;
    const std::vector<std::string>& positionals() const { return positionals_; }

private:
    friend Result<Args> parse(const struct Command&, const std::vector<std::string>&);
    std::map<std::string, std::vector<std::string>> values_;
    std::vector<std::string> positionals_;
};

struct Command {
    std::string verb;
    std::string summary;  // one line
    std::string usage;    // "--from PUB --keyring KEYS.asc DIR"
    std::string description;
    std::vector<OptionSpec> options;
    int (*run)(const Args&);
};

// Parses the words after the verb. Unknown options, missing values and empty values are
// Code::usage errors: no option takes an empty string (an empty path, key or name is always a
// mistake, often an unset shell variable, and must not silently mean "the default").
Result<Args> parse(const Command& command, const std::vector<std::string>& words);

// Dispatches argv to the verb's run function and returns the process exit status. Handles
// --help, --version, an unknown verb (with a suggestion) and usage errors. Standard output is
// flushed before returning: output that could not be written fails a run that had succeeded
// (Code::io, one line on stderr), as a script reading it would otherwise get nothing and exit 0.
int main(const std::string& program, const std::string& summary, const std::vector<Command>& commands,
         int argc, char** argv);

// Prints "<program>: error: <message>" on one line to stderr and returns exit_code(code). When
// the verb was given --json (or, if its command line did not parse, --json is among its
// words), first prints {"ok": false, "error": {"code": NAME, "message": ...}} on stdout, so
// that a script reading JSON always gets a document (docs/exit-codes.md).
int report_error(const Status& status);

// Parses durations such as "7d", "12h", "30m", "90s", "3600" (seconds).
Result<long long> parse_duration(const std::string& text, const std::string& option);
Result<unsigned long long> parse_unsigned(const std::string& text, const std::string& option);
// --name, checked like a manifest's name (it names state files); empty when absent.
Result<std::string> release_name(const Args& args);

}  // namespace ssync::cli
