// ssync-verifier audit: compare a whole tree with a verified manifest.
#include <cstdio>

#include "ssync/audit.h"
#include "ssync/fs.h"
#include "ssync/report.h"
#include "verbs.h"

namespace ssync::verifier {

namespace {

int run_audit(const cli::Args& args) {
    if (args.positionals().size() != 1) {
        return cli::report_error(Status(Code::usage, "audit takes exactly one DIR (see --help)"));
    }
    const std::string& dir = args.positionals()[0];
    auto release = load_release(args);
    if (!release) return cli::report_error(release.status());
    AuditOptions options;
    options.owners = args.has("ignore-owner") ? OwnerCheck::ignore : OwnerCheck::check;
    options.progress = stderr_is_terminal() && !args.has("json") && !args.has("quiet");
    auto diffs = audit_tree(dir, release->manifest, options);
    if (!diffs) return cli::report_error(diffs.status());
    const Manifest& m = release->manifest;
    if (args.has("json")) {
        nlohmann::json list = nlohmann::json::array();
        for (const Difference& d : *diffs) {
            list.push_back({{"path", d.path}, {"kind", diff_kind_name(d.kind)},
                            {"expected", d.expected}, {"actual", d.actual}});
        }
        print_json({{"ok", diffs->empty()}, {"dir", dir}, {"name", m.name}, {"serial", m.serial},
                    {"signer", release->signer.primary_fpr}, {"entries", m.entries.size()},
                    {"differences", list}});
    } else {
        for (const Difference& d : *diffs) {
            std::string detail;
            if (!d.expected.empty() && !d.actual.empty()) detail = ": expected " + d.expected + ", found " + d.actual;
            else if (!d.expected.empty()) detail = " (" + d.expected + ")";
            else if (!d.actual.empty()) detail = " (" + d.actual + ")";
            std::printf("%-8s %s%s\n", diff_kind_name(d.kind), quote_path(d.path).c_str(), detail.c_str());
        }
        if (!args.has("quiet") || !diffs->empty()) {
            std::printf("%s: %s serial %llu, %zu entries, signed by %s: %s\n", dir.c_str(), m.name.c_str(),
                        static_cast<unsigned long long>(m.serial), m.entries.size(),
                        release->signer.primary_fpr.c_str(),
                        diffs->empty()      ? "OK"
                        : diffs->size() == 1 ? "1 difference"
                                             : (std::to_string(diffs->size()) + " differences").c_str());
        }
    }
    return diffs->empty() ? 0 : exit_code(Code::mismatch);
}

}  // namespace

cli::Command audit_command() {
    auto options = release_options();
    options.push_back({"ignore-owner", "", "do not compare owners (a tree copied as non-root)"});
    options.push_back({"quiet", "", "print nothing when the tree matches"});
    return {"audit", "compare a tree with the signed manifest and list every difference",
            "(--from PUB | --manifest FILE --signature FILE) --keyring KEYS.asc [OPTIONS] DIR",
            "Verifies the manifest's signature against only the keys in KEYS.asc, then reports\n"
            "every missing, extra or modified entry of DIR: content, type, mode, owner, symlink\n"
            "target. Exit status 0 only when DIR matches.",
            options, run_audit};
}

}  // namespace ssync::verifier
