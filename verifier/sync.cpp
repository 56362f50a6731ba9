// ssync-verifier sync: make a mirror equal to a verified release, from cron or a timer.
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <random>
#include <thread>

#include "ssync/report.h"
#include "ssync/state.h"
#include "ssync/sync.h"
#include "verbs.h"

namespace ssync::verifier {

namespace {

int run_sync(const cli::Args& args) {
    if (!args.positionals().empty()) {
        return cli::report_error(Status(Code::usage, "unexpected argument '" + args.positionals()[0] + "'"));
    }
    for (const char* required : {"from", "to", "keyring"}) {
        if (!args.has(required)) {
            return cli::report_error(Status(Code::usage, std::string("--") + required + " is required (see --help)"));
        }
    }
    SyncOptions options;
    options.url = args.get("from");
    options.dest = args.get("to");
    options.keyring = args.get("keyring");
    options.state_dir = args.get("state", StateStore::kDefaultDir);
    auto name = cli::release_name(args);
    if (!name) return cli::report_error(name.status());
    options.name = *name;
    options.transport.ca_file = args.get("ca-file");
    options.extras = args.has("keep-extra") ? ExtraPolicy::keep : ExtraPolicy::remove;
    options.verify_all = args.has("checksum");
    options.atomic_tree = args.has("atomic-tree");
    if (options.atomic_tree && options.extras == ExtraPolicy::keep) {
        // The swapped-in tree is built from the manifest alone: what only DEST holds would be
        // gone with the old tree. Refused rather than silently deleting it.
        return cli::report_error(Status(Code::usage, "--keep-extra and --atomic-tree cannot be combined: the new tree "
                                              "is built from the release alone, so extra files would be lost"));
    }
    bool quiet = args.has("quiet") || args.has("json");
    options.progress = stderr_is_terminal() && !quiet;
    if (args.has("max-manifest-size")) {
        auto n = cli::parse_unsigned(args.get("max-manifest-size"), "--max-manifest-size");
        if (!n) return cli::report_error(n.status());
        options.limits.max_bytes = *n;
    }
    if (args.has("timeout")) {
        auto n = cli::parse_duration(args.get("timeout"), "--timeout");
        if (!n) return cli::report_error(n.status());
        options.transport.connect_timeout = std::max(1LL, *n);
        options.transport.low_speed_time = std::max(1LL, *n);
    }
    if (args.has("parallel")) {
        auto n = cli::parse_unsigned(args.get("parallel"), "--parallel");
        if (!n || *n == 0 || *n > 64) return cli::report_error(Status(Code::usage, "--parallel: a number from 1 to 64"));
        options.max_parallel = static_cast<int>(*n);
    }
    // Ownership needs root; as anyone else it is skipped with one warning, unless asked not to
    // care (--no-owner), so that cron stays silent.
    if (args.has("no-owner")) {
        options.owners = OwnerPolicy::skip;
    } else if (::geteuid() == 0) {
        options.owners = OwnerPolicy::apply;
    } else {
        options.owners = OwnerPolicy::skip;
        std::fprintf(stderr, "ssync-verifier sync: warning: not running as root: file owners are not set "
                             "(--no-owner silences this)\n");
    }
    if (args.has("jitter")) {
        auto n = cli::parse_duration(args.get("jitter"), "--jitter");
        if (!n) return cli::report_error(n.status());
        if (*n > 0) {
            std::random_device rd;
            std::uniform_int_distribution<long long> pick(0, *n * 1000);
            std::this_thread::sleep_for(std::chrono::milliseconds(pick(rd)));
        }
    }
    options.now = static_cast<std::int64_t>(std::time(nullptr));

    auto result = sync_release(options);
    if (!result) return cli::report_error(result.status());
    const SyncReport& r = *result;
    if (args.has("json")) {
        print_json({{"ok", true}, {"name", r.name}, {"serial", r.serial}, {"previous_serial", r.previous_serial},
                    {"noop", r.noop}, {"added", r.added}, {"changed", r.changed}, {"removed", r.removed},
                    {"files_fetched", r.files_fetched}, {"bytes_fetched", r.bytes_fetched},
                    {"packs_fetched", r.packs_fetched},
                    {"files_copied_locally", r.files_copied_locally}, {"files_hashed", r.files_hashed},
                    {"seconds", r.seconds},
                    {"phases",
                     {{"release", r.phases.release}, {"plan", r.phases.plan}, {"stage", r.phases.stage},
                      {"flush", r.phases.flush}, {"apply", r.phases.apply}, {"record", r.phases.record}}}});
    } else if (!quiet && stderr_is_terminal()) {
        // People at a terminal get a line; cron gets silence on success.
        if (r.noop) {
            std::printf("%s: serial %llu is current; nothing to do\n", r.name.c_str(),
                        static_cast<unsigned long long>(r.serial));
        } else {
            std::printf("%s: serial %llu -> %llu: %llu added, %llu changed, %llu removed; fetched %llu files (%s) in %.1fs\n",
                        r.name.c_str(), static_cast<unsigned long long>(r.previous_serial),
                        static_cast<unsigned long long>(r.serial), static_cast<unsigned long long>(r.added),
                        static_cast<unsigned long long>(r.changed), static_cast<unsigned long long>(r.removed),
                        static_cast<unsigned long long>(r.files_fetched), human_bytes(r.bytes_fetched).c_str(), r.seconds);
        }
    }
    return 0;
}

}  // namespace

cli::Command sync_command() {
    return {"sync", "verify a release and apply it to a mirror, atomically per path",
            "--from URL --to DEST --keyring KEYS.asc [OPTIONS]",
            "Fetches the current release from URL (a directory, file://, http:// or https://),\n"
            "verifies it against only the keys in KEYS.asc, refuses rollbacks and expired\n"
            "releases, fetches only content DEST does not already have, verifies every byte,\n"
            "and switches each path to its new version atomically. Silent on success unless\n"
            "run at a terminal. See docs/operators.md.",
            {
                {"from", "URL", "the publication: a directory, file://, http:// or https:// URL"},
                {"to", "DEST", "the mirror's tree (created if missing)"},
                {"keyring", "KEYS.asc", "the public keys to trust (required)"},
                {"state", "DIR", "where applied serials are remembered (default /var/lib/ssync)"},
                {"name", "NAME", "refuse a release for another file set"},
                {"ca-file", "FILE", "https: trust this CA bundle instead of the system's"},
                {"keep-extra", "", "keep files in DEST that the release does not list"},
                {"checksum", "", "hash every file in DEST instead of trusting unchanged stat data"},
                {"atomic-tree", "", "build the new tree beside DEST and swap it in whole (see docs/operators.md)"},
                {"no-owner", "", "do not set owners (and do not warn when not root)"},
                {"jitter", "SECONDS", "sleep a random time up to SECONDS first (spreads a fleet's load)"},
                {"timeout", "SECONDS", "connect timeout and stall limit for network transports (default 30)"},
                {"parallel", "N", "transfers in flight (default 64; over HTTP/1.1 at most 8 connections)"},
                {"max-manifest-size", "BYTES", "refuse larger manifests (default 536870912)"},
                {"quiet", "", "no progress and no summary, even at a terminal"},
                {"json", "", "print a JSON summary on stdout"},
            },
            run_sync};
}

}  // namespace ssync::verifier
