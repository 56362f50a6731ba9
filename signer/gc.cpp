// ssync-signer gc: old releases and the objects only they used leave the publication.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "ssync/collect.h"
#include "ssync/report.h"
#include "verbs.h"

namespace ssync::signer {

namespace {

// "6-7" or "1-5, 9": serials in ascending order, runs of consecutive ones shortened.
std::string serial_list(std::vector<std::uint64_t> serials) {
    std::sort(serials.begin(), serials.end());
    std::string out;
    for (std::size_t i = 0; i < serials.size();) {
        std::size_t j = i;
        while (j + 1 < serials.size() && serials[j + 1] == serials[j] + 1) ++j;
        if (!out.empty()) out += ", ";
        out += std::to_string(serials[i]);
        if (j > i) out += "-" + std::to_string(serials[j]);
        i = j + 1;
    }
    return out;
}

std::string count_of(std::uint64_t n, const char* what) {
    return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

int run_gc(const cli::Args& args) {
    if (!args.has("out")) return cli::report_error(Status(Code::usage, "--out is required (see --help)"));
    if (!args.positionals().empty()) {
        return cli::report_error(Status(Code::usage, "unexpected argument '" + args.positionals()[0] + "'"));
    }
    CollectOptions options;
    if (args.has("keep")) {
        auto n = cli::parse_unsigned(args.get("keep"), "--keep");
        if (!n) return cli::report_error(n.status());
        options.keep = *n;
    }
    options.dry_run = args.has("dry-run");
    auto result = collect_garbage(args.get("out"), options);
    if (!result) return cli::report_error(result.status());
    const CollectResult& r = *result;
    if (args.has("json")) {
        nlohmann::json j = {
            {"ok", true},  // as every --json answer; an error gives "ok": false (docs/exit-codes.md)
            {"dry_run", options.dry_run},
            {"kept", r.kept},
            {"removed_releases", r.removed_releases},
            {"objects_kept", r.objects_kept},
            {"objects_removed", r.objects_removed},
            {"bytes_removed", r.bytes_removed},
            {"temporaries_removed", r.temporaries_removed},
            {"packs_kept", r.packs_kept},
            {"packs_removed", r.packs_removed},
            {"pack_bytes_removed", r.pack_bytes_removed},
        };
        std::printf("%s\n", j.dump(2).c_str());
    } else if (!args.has("quiet") && stderr_is_terminal()) {
        // At a terminal a line; in cron silence on success (as sign and `ssync-verifier sync`).
        std::string removed = count_of(r.removed_releases.size(), "release");
        if (!r.removed_releases.empty()) removed += " (" + serial_list(r.removed_releases) + ")";
        std::printf("%s %s, %s (%s) and %s (%s); kept %s %s (%s, %s)\n", options.dry_run ? "would remove" : "removed",
                    removed.c_str(), count_of(r.objects_removed, "object").c_str(), human_bytes(r.bytes_removed).c_str(),
                    count_of(r.packs_removed, "pack").c_str(), human_bytes(r.pack_bytes_removed).c_str(),
                    r.kept.size() == 1 ? "release" : "releases", serial_list(r.kept).c_str(),
                    count_of(r.objects_kept, "object").c_str(), count_of(r.packs_kept, "pack").c_str());
    }
    return 0;
}

}  // namespace

cli::Command gc_command() {
    return {
        "gc",
        "remove old releases and the content only they used",
        "--out PUB [--keep N] [OPTIONS]",
        "Keeps the current release (PUB/latest) and the N-1 before it, and removes the other\n"
        "PUB/releases/ directories, every object no kept release lists and every pack no kept\n"
        "release's pack index lists. Takes the same lock as sign. Mirrors only ever fetch the\n"
        "current release; keeping two lets a mirror that read `latest` just before a new\n"
        "release finish its run. Silent on success unless run at a terminal. See\n"
        "docs/publication.md.",
        {
            {"out", "PUB", "the publication directory"},
            {"keep", "N", "releases to keep, the current one included (default 2)"},
            {"dry-run", "", "report what would be removed, remove nothing"},
            {"json", "", "print a JSON summary"},
            {"quiet", "", "no summary, even at a terminal"},
        },
        run_gc,
    };
}

}  // namespace ssync::signer
