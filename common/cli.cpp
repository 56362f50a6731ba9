#include "ssync/cli.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "ssync/manifest.h"
#include "ssync/memory.h"

namespace ssync::cli {

namespace {
std::string g_program = "ssync";
// Whether report_error also answers on stdout in JSON: set once the verb's --json is known.
bool g_json = false;

std::size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
        }
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

void print_command_help(const std::string& program, const Command& c) {
    std::printf("Usage: %s %s %s\n\n%s\n", program.c_str(), c.verb.c_str(), c.usage.c_str(),
                c.summary.c_str());
    if (!c.description.empty()) std::printf("\n%s\n", c.description.c_str());
    std::printf("\nOptions:\n");
    for (const auto& o : c.options) {
        std::string left = "--" + o.name + (o.value_name.empty() ? "" : " " + o.value_name);
        std::printf("  %-28s %s\n", left.c_str(), o.help.c_str());
    }
    std::printf("  %-28s %s\n", "--help", "show this help");
    std::printf("\nExit status: 0 success, 1 differences found, 2 usage error, 3 signature not\n"
                "trusted, 4 manifest refused, 5 local I/O error, 6 transport error, 7 busy.\n"
                "See docs/exit-codes.md.\n");
}

void print_program_help(const std::string& program, const std::string& summary,
                        const std::vector<Command>& commands) {
    std::printf("Usage: %s COMMAND [OPTIONS]\n\n%s\n\nCommands:\n", program.c_str(), summary.c_str());
    for (const auto& c : commands) std::printf("  %-10s %s\n", c.verb.c_str(), c.summary.c_str());
    std::printf("\nRun '%s COMMAND --help' for a command's options.\n", program.c_str());
}
}  // namespace

std::string Args::get(const std::string& name, const std::string& fallback) const {
    auto it = values_.find(name);
    if (it == values_.end() || it->second.empty()) return fallback;
    return it->second.back();
}

const std::vector<std::string>& Args::all(const std::string& name) const {
    static const std::vector<std::string> empty;
    auto it = values_.find(name);
    return it == values_.end() ? empty : it->second;
}

Result<Args> parse(const Command& command, const std::vector<std::string>& words) {
    Args args;
    bool options_done = false;
    for (std::size_t i = 0; i < words.size(); ++i) {
        const std::string& w = words[i];
        if (options_done || w.size() < 2 || w.compare(0, 2, "--") != 0) {
            args.positionals_.push_back(w);
            continue;
        }
        if (w == "--") {
            options_done = true;
            continue;
        }
        std::string name = w.substr(2);
        std::string value;
        bool inline_value = false;
        if (auto eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
            inline_value = true;
        }
        auto spec = std::find_if(command.options.begin(), command.options.end(),
                                 [&](const OptionSpec& o) { return o.name == name; });
        if (spec == command.options.end()) {
            return Status(Code::usage, command.verb + ": unknown option --" + name +
                                           " (see --help)");
        }
        if (spec->value_name.empty()) {
            if (inline_value) return Status(Code::usage, "--" + name + " takes no value");
        } else if (!inline_value) {
            if (i + 1 >= words.size()) {
                return Status(Code::usage, "--" + name + " needs a value (" + spec->value_name + ")");
            }
            value = words[++i];
        }
        if (!spec->value_name.empty() && value.empty()) {
            return Status(Code::usage, "--" + name + ": empty value (expected " + spec->value_name + ")");
        }
        auto& slot = args.values_[name];
        if (!slot.empty() && !spec->repeatable && !spec->value_name.empty()) {
            return Status(Code::usage, "--" + name + " given more than once");
        }
        slot.push_back(value);
    }
    return args;
}

int report_error(const Status& status) {
    if (g_json) {
        nlohmann::json j = {{"ok", false},
                            {"error", {{"code", code_name(status.code())}, {"message", status.message()}}}};
        // A message quotes paths and gpg's text, which need not be UTF-8: replaced, not thrown.
        std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    }
    std::fprintf(stderr, "%s: error: %s\n", g_program.c_str(), status.message().c_str());
    return exit_code(status.code());
}

namespace {

// Whether `words` hold --json as an option (before a "--" that ends the options).
bool asks_for_json(const std::vector<std::string>& words) {
    for (const std::string& w : words) {
        if (w == "--") return false;
        if (w == "--json") return true;
    }
    return false;
}

int dispatch(const std::string& program, const std::string& summary, const std::vector<Command>& commands,
             const std::vector<std::string>& words) {
    if (words.empty() || words[0] == "--help" || words[0] == "-h" || words[0] == "help") {
        if (words.size() >= 2 && words[0] == "help") {
            for (const auto& c : commands)
                if (c.verb == words[1]) {
                    print_command_help(program, c);
                    return 0;
                }
        }
        print_program_help(program, summary, commands);
        return words.empty() ? exit_code(Code::usage) : 0;
    }
    if (words[0] == "--version") {
        std::printf("%s %s\n", program.c_str(), SSYNC_VERSION_STRING);
        return 0;
    }
    auto it = std::find_if(commands.begin(), commands.end(),
                           [&](const Command& c) { return c.verb == words[0]; });
    if (it == commands.end()) {
        std::string message = "unknown command '" + words[0] + "'";
        std::size_t best = 3;
        std::string suggestion;
        for (const auto& c : commands) {
            std::size_t d = edit_distance(words[0], c.verb);
            if (d < best) {
                best = d;
                suggestion = c.verb;
            }
        }
        if (!suggestion.empty()) message += "; did you mean '" + suggestion + "'?";
        else message += " (see " + program + " --help)";
        g_json = asks_for_json(words);
        return report_error(Status(Code::usage, message));
    }
    g_program = program + " " + it->verb;
    std::vector<std::string> rest(words.begin() + 1, words.end());
    if (std::find(rest.begin(), rest.end(), "--help") != rest.end() ||
        std::find(rest.begin(), rest.end(), "-h") != rest.end()) {
        print_command_help(program, *it);
        return 0;
    }
    auto args = parse(*it, rest);
    if (!args) {
        // A script that asked for JSON gets it for a command line that did not parse too, as
        // long as the verb has --json at all (export does not).
        bool has_json = std::any_of(it->options.begin(), it->options.end(),
                                    [](const OptionSpec& o) { return o.name == "json"; });
        g_json = has_json && asks_for_json(rest);
        return report_error(args.status());
    }
    g_json = args->has("json");
    return it->run(*args);
}

// Flushes stdout and fails a run whose output was lost (disk full, a closed pipe's EIO, a
// file system error): stdio reports that only here, and exit() would discard it silently.
// A run that already failed keeps its own status and message; a successful one, or `audit`
// and `check` whose list of differences is their result, becomes an io error.
int finish_output(int status) {
    errno = 0;
    int flushed = std::fflush(stdout);
    int err = errno;
    if (flushed == 0 && !std::ferror(stdout)) return status;
    if (status != 0 && status != exit_code(Code::mismatch)) return status;
    g_json = false;  // stdout is what failed
    std::string detail = flushed != 0 && err != 0 ? std::strerror(err) : "write failed";
    return report_error(Status(Code::io, "standard output: " + detail));
}

}  // namespace

int main(const std::string& program, const std::string& summary, const std::vector<Command>& commands,
         int argc, char** argv) {
    tune_allocator_for_short_runs();
    g_program = program;
    // The last line of defence: memory or threads running out (bad_alloc, system_error) end the
    // run with one line and exit status 5, not an abort. What the run had begun is left as
    // after a crash, which every command is built to survive (the next run finishes the job).
    try {
        std::vector<std::string> words(argv + 1, argv + argc);
        return finish_output(dispatch(program, summary, commands, words));
    } catch (...) {
        return finish_output(report_error(status_from_current_exception()));
    }
}

Result<long long> parse_duration(const std::string& text, const std::string& option) {
    if (text.empty()) return Status(Code::usage, option + ": empty duration");
    long long mult = 1;
    std::string digits = text;
    switch (text.back()) {
        case 's': mult = 1; digits.pop_back(); break;
        case 'm': mult = 60; digits.pop_back(); break;
        case 'h': mult = 3600; digits.pop_back(); break;
        case 'd': mult = 86400; digits.pop_back(); break;
        case 'w': mult = 7 * 86400; digits.pop_back(); break;
        default: break;
    }
    auto n = parse_unsigned(digits, option);
    if (!n) return Status(Code::usage, option + ": '" + text + "' is not a duration such as 7d, 12h, 30m");
    if (*n > 100ull * 365 * 86400 / static_cast<unsigned long long>(mult)) {
        return Status(Code::usage, option + ": '" + text + "' is too long");
    }
    return static_cast<long long>(*n) * mult;
}

Result<unsigned long long> parse_unsigned(const std::string& text, const std::string& option) {
    if (text.empty() || text.size() > 18 ||
        !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return Status(Code::usage, option + ": '" + text + "' is not a whole number below 10^18");
    }
    return std::stoull(text);
}

Result<std::string> release_name(const Args& args) {
    if (!args.has("name")) return std::string();
    std::string name = args.get("name");
    if (Status st = check_release_name(name); !st.is_ok()) {
        return Status(Code::usage, "--name '" + name + "': " + st.message());
    }
    return name;
}

}  // namespace ssync::cli
