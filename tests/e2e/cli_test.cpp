// The command-line front ends themselves (common/cli.cpp, signer/, verifier/): what a script
// or cron sees on stdout and stderr, and which exit status, when things go wrong or right.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "e2e.h"
#include "ssync/fs.h"
#include "ssync/publication.h"

namespace ssync::test {

namespace {

// The {"ok": false, "error": {...}} object a failed --json run must print; its code name.
std::string json_error_code(const ProcessResult& r) {
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    REQUIRE_MESSAGE(!j.is_discarded(), "stdout is not JSON: '" << r.out << "' (stderr: " << r.err << ")");
    CHECK(j["ok"] == false);
    REQUIRE(j["error"]["message"].is_string());
    // The same message as the one line on stderr.
    CHECK(r.err.find(j["error"]["message"].get<std::string>()) != std::string::npos);
    return j["error"]["code"].get<std::string>();
}

std::size_t lines(const std::string& text) { return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')); }

// Runs argv with its standard output on /dev/full, where every write fails (ENOSPC).
ProcessResult run_into_full_disk(std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"sh", "-c", "exec \"$@\" >/dev/full", "sh"});
    return run(argv);
}

// The sign command line of Published::sign, without --quiet, as one shell word list.
std::string sign_command(const Published& p) {
    return std::string(SSYNC_SIGNER_BIN) + " sign --root " + p.src + " --out " + p.pub + " --key " + p.keys.plain_fpr +
           " --gnupghome " + p.keys.home + " --name site";
}

}  // namespace

TEST_SUITE("e2e cli") {
    TEST_CASE("--json: every failure prints an error object on stdout, command-line errors included") {
        Published p;
        // ssync-signer: a missing publication, a locked one, a missing source tree.
        auto gc = signer({"gc", "--out", p.dir / "nonexist", "--json"});
        CHECK(gc.exit_status == 5);
        CHECK(json_error_code(gc) == "io");
        CHECK(lines(gc.err) == 1);

        REQUIRE(p.sign().exit_status == 0);
        {
            auto signer_dir = open_dir_trusted(p.pub + "/" + layout::kSignerDir);
            REQUIRE(signer_dir.is_ok());
            auto lock = FileLock::acquire(signer_dir->get(), layout::kSignerLock, "lock");
            REQUIRE(lock.is_ok());
            auto busy = p.sign({"--json"});
            CHECK(busy.exit_status == 7);
            CHECK(json_error_code(busy) == "busy");
        }
        auto bad_root = signer({"sign", "--root", p.dir / "missing", "--out", p.pub, "--key", p.keys.plain_fpr,
                                "--gnupghome", p.keys.home, "--json"});
        CHECK(bad_root.exit_status == 5);
        CHECK(json_error_code(bad_root) == "io");

        // A command line that does not parse, for both programs: unknown option, missing value.
        for (const auto& argv : std::vector<std::vector<std::string>>{
                 {SSYNC_VERIFIER_BIN, "audit", "--no-such-option", "--json", p.src},
                 {SSYNC_VERIFIER_BIN, "show", "--json", "--from"},
                 {SSYNC_SIGNER_BIN, "sign", "--json", "--no-such-option"},
                 {SSYNC_SIGNER_BIN, "gc", "--json", "--keep"},
                 {SSYNC_VERIFIER_BIN, "sycn", "--json"}}) {
            CAPTURE(argv[1]);
            CAPTURE(argv[2]);
            auto r = run(argv);
            CHECK(r.exit_status == 2);
            CHECK(json_error_code(r) == "usage");
            CHECK(lines(r.err) == 1);
        }
        // Without --json, or for a verb without it (export), stdout stays empty.
        auto plain = verifier({"audit", "--no-such-option", p.src});
        CHECK(plain.exit_status == 2);
        CHECK(plain.out.empty());
        auto export_bad = verifier({"export", "--json", "--from", p.pub, "--keyring", p.keyring});
        CHECK(export_bad.exit_status == 2);
        CHECK(export_bad.out.empty());
        // After "--" it is a word, not the option.
        auto after = verifier({"audit", "--no-such-option", "--", "--json"});
        CHECK(after.exit_status == 2);
        CHECK(after.out.empty());
    }

    TEST_CASE("an empty option value is a usage error naming the option") {
        Published p;
        auto key = signer({"sign", "--root", p.src, "--out", p.pub, "--key", "", "--gnupghome", p.keys.home,
                           "--name", "site"});
        CHECK(key.exit_status == 2);
        CHECK(key.err.find("--key: empty value") != std::string::npos);
        CHECK(lines(key.err) == 1);
        CHECK_FALSE(exists(p.pub));
        auto file = p.sign({"--passphrase-file="});
        CHECK(file.exit_status == 2);
        CHECK(file.err.find("--passphrase-file: empty value") != std::string::npos);
        auto keyring = verifier({"show", "--from", p.pub, "--keyring", ""});
        CHECK(keyring.exit_status == 2);
        CHECK(keyring.err.find("--keyring: empty value") != std::string::npos);
    }

    TEST_CASE("a passphrase-protected key: an empty --passphrase-file, or none without a terminal") {
        Published p;
        write_file(p.dir / "empty", "");
        auto empty = p.sign({"--passphrase-file", p.dir / "empty"}, p.keys.passphrase_fpr);
        CHECK(empty.exit_status == 2);
        CHECK(lines(empty.err) == 1);
        CHECK(empty.err.find(p.dir / "empty" + ": its first line is empty, but signing key") != std::string::npos);
        CHECK(empty.err.find("needs a passphrase") != std::string::npos);
        CHECK_FALSE(exists(p.pub + "/latest"));

        // gpg-agent would ask through pinentry, which has no terminal here (and no display).
        auto none = run({"env", "-u", "DISPLAY", "-u", "WAYLAND_DISPLAY", "-u", "GPG_TTY", SSYNC_SIGNER_BIN, "sign",
                         "--root", p.src, "--out", p.pub, "--key", p.keys.passphrase_fpr, "--gnupghome", p.keys.home,
                         "--name", "site", "--quiet"});
        CHECK(none.exit_status == 3);
        CHECK(lines(none.err) == 1);
        CHECK(none.err.find("the key needs a passphrase") != std::string::npos);
        CHECK(none.err.find("give --passphrase-file FILE for unattended signing") != std::string::npos);
        CHECK_FALSE(exists(p.pub + "/latest"));

        // The key also signs with an empty file when it needs no passphrase: gpg never asks.
        CHECK(p.sign({"--passphrase-file", p.dir / "empty"}).exit_status == 0);
    }

    TEST_CASE("sign and gc: a summary at a terminal, nothing on stdout in cron") {
        Published p;
        auto first = signer({"sign", "--root", p.src, "--out", p.pub, "--key", p.keys.plain_fpr, "--gnupghome",
                             p.keys.home, "--name", "site"});
        REQUIRE_MESSAGE(first.exit_status == 0, first.err);
        CHECK(first.out.empty());
        CHECK(first.err.empty());
        auto gc = signer({"gc", "--out", p.pub, "--keep", "1"});
        CHECK(gc.exit_status == 0);
        CHECK(gc.out.empty());
        CHECK(gc.err.empty());
        CHECK(signer({"gc", "--out", p.pub, "--dry-run"}).out.empty());

        // script(1) gives the command a terminal.
        auto at_terminal = run({"script", "-qec", sign_command(p), "/dev/null"});
        CHECK_MESSAGE(at_terminal.exit_status == 0, at_terminal.out);
        CHECK(at_terminal.out.find("signed site serial 2: ") != std::string::npos);
        std::string gc_command = std::string(SSYNC_SIGNER_BIN) + " gc --out " + p.pub + " --keep 1";
        auto gc_terminal = run({"script", "-qec", gc_command + " --dry-run", "/dev/null"});
        CHECK(gc_terminal.out.find("would remove 1 release (1)") != std::string::npos);
        // --quiet still silences it there, and --json is printed wherever stdout goes.
        auto quiet = run({"script", "-qec", gc_command + " --quiet", "/dev/null"});
        CHECK(quiet.exit_status == 0);
        CHECK(quiet.out.empty());
        auto json = signer({"gc", "--out", p.pub, "--json"});
        CHECK(nlohmann::json::parse(json.out)["kept"] == nlohmann::json::array({2}));
        CHECK(nlohmann::json::parse(json.out)["ok"] == true);
    }

    TEST_CASE("output that cannot be written fails the run with exit 5 and one line") {
        Published p;
        REQUIRE(p.sign().exit_status == 0);
        for (const auto& argv : std::vector<std::vector<std::string>>{
                 {SSYNC_SIGNER_BIN, "sign", "--root", p.src, "--out", p.pub, "--key", p.keys.plain_fpr,
                  "--gnupghome", p.keys.home, "--json"},
                 {SSYNC_SIGNER_BIN, "gc", "--out", p.pub, "--json"},
                 {SSYNC_VERIFIER_BIN, "show", "--from", p.pub, "--keyring", p.keyring},
                 {SSYNC_VERIFIER_BIN, "show", "--from", p.pub, "--keyring", p.keyring, "--json"},
                 {SSYNC_VERIFIER_BIN, "audit", "--from", p.pub, "--keyring", p.keyring, p.src},
                 {SSYNC_VERIFIER_BIN, "audit", "--from", p.pub, "--keyring", p.keyring, p.dir.path()},  // differs
                 {SSYNC_VERIFIER_BIN, "--help"}}) {
            CAPTURE(argv[1]);
            CAPTURE(argv.back());
            auto r = run_into_full_disk(argv);
            CHECK(r.exit_status == 5);
            CHECK(lines(r.err) == 1);
            CHECK(r.err.find("error: standard output: No space left on device") != std::string::npos);
        }
        // A run that failed keeps its own status and message.
        auto untrusted = run_into_full_disk({SSYNC_VERIFIER_BIN, "show", "--from", p.pub, "--keyring",
                                             p.keys.pubkey("other"), "--json"});
        CHECK(untrusted.exit_status == 3);
        CHECK(lines(untrusted.err) == 1);
        CHECK(untrusted.err.find("standard output") == std::string::npos);
    }

    TEST_CASE("gc: a .ssync-signer/ that cannot be opened is an I/O error naming it, not 'not a publication'") {
        if (::geteuid() != 0) return;  // needs root to become someone else
        Published p;
        REQUIRE(p.sign().exit_status == 0);
        // nobody can reach the publication, but not into .ssync-signer/ (mode 0700, root's).
        REQUIRE(::chmod(p.dir.path().c_str(), 0755) == 0);
        REQUIRE(::chmod(p.pub.c_str(), 0755) == 0);
        auto r = run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SSYNC_SIGNER_BIN, "gc", "--out",
                      p.pub});
        CHECK(r.exit_status == 5);
        CHECK(lines(r.err) == 1);
        CHECK(r.err.find(p.pub + "/.ssync-signer: Permission denied") != std::string::npos);
        CHECK(r.err.find("not a publication") == std::string::npos);
        // A publication with no .ssync-signer/ at all still is "not a publication".
        auto src = signer({"gc", "--out", p.src});
        CHECK(src.exit_status == 2);
        CHECK(src.err.find("not a publication made by ssync-signer") != std::string::npos);
    }
}

}  // namespace ssync::test
