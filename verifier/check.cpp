// ssync-verifier check: verify a few downloaded files against the signed manifest.
#include <cstdio>

#include "ssync/audit.h"
#include "ssync/fs.h"
#include "verbs.h"

namespace ssync::verifier {

namespace {

int run_check(const cli::Args& args) {
    if (args.positionals().empty()) return cli::report_error(Status(Code::usage, "check needs at least one FILE"));
    auto release = load_release(args);
    if (!release) return cli::report_error(release.status());
    auto results = check_files(args.positionals(), args.get("base"), release->manifest);
    bool all_ok = true;
    nlohmann::json list = nlohmann::json::array();
    for (const FileCheck& c : results) {
        all_ok = all_ok && c.ok;
        if (args.has("json")) {
            list.push_back({{"file", c.file}, {"path", c.path}, {"ok", c.ok}, {"problem", c.problem}});
        } else if (c.ok) {
            std::printf("%s: OK (%s)\n", quote_path(c.file).c_str(), quote_path(c.path).c_str());
        } else {
            std::printf("%s: FAILED: %s\n", quote_path(c.file).c_str(), c.problem.c_str());
        }
    }
    if (args.has("json")) {
        print_json({{"ok", all_ok}, {"name", release->manifest.name}, {"serial", release->manifest.serial},
                    {"signer", release->signer.primary_fpr}, {"files", list}});
    }
    return all_ok ? 0 : exit_code(Code::mismatch);
}

}  // namespace

cli::Command check_command() {
    auto options = release_options();
    options.push_back({"base", "DIR", "FILE paths are relative to DIR as in the manifest"});
    return {"check", "verify single downloaded files against the signed manifest",
            "(--from PUB | --manifest FILE --signature FILE) --keyring KEYS.asc [--base DIR] FILE...",
            "For each FILE, finds its manifest entry (its path below --base, its path as given,\n"
            "or the only manifest file with its name) and compares size and SHA-256.",
            options, run_check};
}

}  // namespace ssync::verifier
