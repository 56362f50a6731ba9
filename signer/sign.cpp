// ssync-signer sign: tree -> objects -> manifest -> detached signature -> current release.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <future>
#include <nlohmann/json.hpp>

#include "ssync/publication.h"
#include "ssync/report.h"
#include "ssync/signature.h"
#include "verbs.h"

namespace ssync::signer {

namespace {

int run_sign(const cli::Args& args) {
    if (!args.has("root") || !args.has("out") || !args.has("key")) {
        return cli::report_error(Status(Code::usage, "--root, --out and --key are required (see --help)"));
    }
    if (!args.positionals().empty()) {
        return cli::report_error(Status(Code::usage, "unexpected argument '" + args.positionals()[0] + "'"));
    }
    PublishOptions options;
    auto name = cli::release_name(args);
    if (!name) return cli::report_error(name.status());
    options.name = *name;
    options.now = static_cast<std::int64_t>(std::time(nullptr));
    if (args.has("serial")) {
        auto n = cli::parse_unsigned(args.get("serial"), "--serial");
        if (!n) return cli::report_error(n.status());
        if (*n == 0) return cli::report_error(Status(Code::usage, "--serial: must be at least 1"));
        options.serial = *n;
    }
    auto valid = cli::parse_duration(args.get("expires", "7d"), "--expires");
    if (!valid) return cli::report_error(valid.status());
    if (*valid <= 0) return cli::report_error(Status(Code::usage, "--expires: must be positive"));
    options.valid_for = *valid;
    options.rehash = args.has("rehash");
    options.packs = !args.has("no-packs");
    options.special = args.has("skip-special") ? SpecialFiles::skip : SpecialFiles::refuse;
    options.progress = stderr_is_terminal() && !args.has("quiet") && !args.has("json");
    if (args.has("threads")) {
        auto n = cli::parse_unsigned(args.get("threads"), "--threads");
        if (!n) return cli::report_error(n.status());
        options.threads = static_cast<unsigned>(std::min<unsigned long long>(*n, 256));
    }
    SigningOptions signing;
    signing.key = args.get("key");
    signing.gnupg_home = args.get("gnupghome");
    signing.passphrase_file = args.get("passphrase-file");
    // One home for the whole run, named in the environment before any thread starts: GPGME
    // then needs no per-context binding, which costs a `gpg --version` (see new_context).
    if (!signing.gnupg_home.empty() && ::setenv("GNUPGHOME", signing.gnupg_home.c_str(), 1) != 0) {
        return cli::report_error(errno_status("GNUPGHOME"));
    }

    // The key is looked up while the tree is scanned and hashed; the same GPGME context then
    // makes the signature.
    std::promise<Status> key_found;
    options.preflight = key_found.get_future().share();
    std::shared_future<Result<std::unique_ptr<Signer>>> signer = std::async(std::launch::async, [&] {
        auto s = Signer::open(signing);
        key_found.set_value(s.status());
        return s;
    }).share();
    auto result = publish(args.get("root"), args.get("out"), options,
                          [&](std::string_view bytes) -> Result<std::string> {
        const Result<std::unique_ptr<Signer>>& s = signer.get();
        if (!s) return s.status();
        return (*s)->sign_detached(bytes);
    });
    if (!result) return cli::report_error(result.status());
    const PublishResult& r = *result;
    if (args.has("json")) {
        nlohmann::json j = {
            {"ok", true},  // as every --json answer; an error gives "ok": false (docs/exit-codes.md)
            {"name", r.header.name},
            {"serial", r.header.serial},
            {"created", format_rfc3339(r.header.created)},
            {"expires", format_rfc3339(r.header.expires)},
            {"manifest_sha256", r.manifest_sha256},
            {"files", r.stats.files},
            {"dirs", r.stats.dirs},
            {"symlinks", r.stats.symlinks},
            {"bytes", r.stats.bytes},
            {"files_hashed", r.stats.files_hashed},
            {"files_cached", r.stats.files_cached},
            {"bytes_hashed", r.stats.bytes_hashed},
            {"objects_stored", r.stats.objects_stored},
            {"bytes_stored", r.stats.bytes_stored},
            {"packs_written", r.stats.packs_written},
            {"bytes_packed", r.stats.bytes_packed},
            {"unchanged", r.stats.reused_entries},
            {"phases",
             {{"scan", r.stats.phases.scan},
              {"hash", r.stats.phases.hash},
              {"sign", r.stats.phases.sign},
              {"write", r.stats.phases.write}}},
        };
        std::printf("%s\n", j.dump(2).c_str());
    } else if (!args.has("quiet") && stderr_is_terminal()) {
        // A person at a terminal gets a line; cron, which mails whatever is printed, gets
        // silence on success. Decided as for the progress line and `ssync-verifier sync`.
        std::printf("signed %s serial %llu: %llu files (%s), %llu dirs, %llu symlinks; hashed %llu, "
                    "reused %llu, stored %llu new objects (%s) and %llu new packs (%s); expires %s\n",
                    r.header.name.c_str(), static_cast<unsigned long long>(r.header.serial),
                    static_cast<unsigned long long>(r.stats.files),
                    human_bytes(r.stats.bytes).c_str(),
                    static_cast<unsigned long long>(r.stats.dirs),
                    static_cast<unsigned long long>(r.stats.symlinks),
                    static_cast<unsigned long long>(r.stats.files_hashed),
                    static_cast<unsigned long long>(r.stats.files_cached),
                    static_cast<unsigned long long>(r.stats.objects_stored),
                    human_bytes(r.stats.bytes_stored).c_str(),
                    static_cast<unsigned long long>(r.stats.packs_written),
                    human_bytes(r.stats.bytes_packed).c_str(), format_rfc3339(r.header.expires).c_str());
    }
    // The process ends now: what publish() built (tens of thousands of entries) goes back to
    // the system with it instead of being freed one string at a time. Kept reachable from a
    // static, so leak checkers do not count it.
    static PublishResult* const kept = new PublishResult(std::move(*result));
    (void)kept;
    return 0;
}

}  // namespace

cli::Command sign_command() {
    return {
        "sign",
        "scan a tree, store its content and publish a signed manifest",
        "--root SRC --out PUB --key FPR [OPTIONS]",
        "Scans SRC (files, directories, symlinks), hashes files with SHA-256 on all cores, stores\n"
        "new content in PUB/objects, packs small objects no pack holds yet into PUB/packs (listed\n"
        "in PUB/releases/N/packs, so that a mirror's first sync takes few requests), and\n"
        "publishes PUB/manifest.json with the detached signature PUB/manifest.json.asc as a new\n"
        "release. Silent on success unless run at a terminal.\n"
        "A top-level SRC/.ssync (a mirror's record, reserved) is left out. See docs/publication.md.",
        {
            {"root", "SRC", "the tree to publish"},
            {"out", "PUB", "the publication directory (created if missing)"},
            {"key", "FPR", "fingerprint of the signing key"},
            {"gnupghome", "DIR", "GnuPG home holding the key (default: $GNUPGHOME or ~/.gnupg)"},
            {"passphrase-file", "FILE", "read the key's passphrase from FILE (unattended signing)"},
            {"name", "NAME", "the file set's name (required for a new publication)"},
            {"serial", "N", "serial number (default: the current one plus 1)"},
            {"expires", "DURATION", "validity, e.g. 7d, 36h (default 7d)"},
            {"rehash", "", "hash every file, ignoring the stat cache"},
            {"no-packs", "", "write no packs and no pack index for this release"},
            {"skip-special", "", "leave out devices, FIFOs and sockets instead of failing"},
            {"threads", "N", "hashing threads (default: one per core)"},
            {"json", "", "print a JSON summary"},
            {"quiet", "", "no progress and no summary, even at a terminal"},
        },
        run_sign,
    };
}

}  // namespace ssync::signer
