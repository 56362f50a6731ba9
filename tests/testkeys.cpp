// The test keys (keys/make-test-keys.sh: under ctest made once per run by a fixture and copied by
// each test process, else made by the process itself) and signing with the gpg program itself,
// independently of ssync's own signing code.
#include <doctest/doctest.h>
#include <limits.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>

#include "ssync/fs.h"
#include "testutil.h"

namespace ssync::test {

namespace {

// Lives until the process exits: stops the keys' gpg-agent, then removes the keys (and, when the
// script had to put the GnuPG home elsewhere for socket-path length, that home too).
struct KeysDir {
    TempDir dir;
    TestKeys keys;
    std::string real_home;
    ~KeysDir() {
        if (real_home.empty()) return;
        (void)run_process({"gpgconf", "--homedir", real_home, "--kill", "all"});
        if (real_home.rfind(dir.path() + "/", 0) != 0) {
            (void)remove_tree(system_fs(), AT_FDCWD, real_home, real_home);
        }
    }
};

// Copies a GnuPG home: directories and regular files only, never the sockets of an agent.
void copy_gnupg_home(const std::filesystem::path& from, const std::filesystem::path& to) {
    namespace fs = std::filesystem;
    fs::create_directory(to);  // already there for a home made by mkdtemp
    fs::permissions(to, fs::perms::owner_all, fs::perm_options::replace);
    for (const fs::directory_entry& e : fs::directory_iterator(from)) {
        fs::file_status st = e.symlink_status();
        if (fs::is_directory(st)) {
            copy_gnupg_home(e.path(), to / e.path().filename());
        } else if (fs::is_regular_file(st)) {
            fs::copy_file(e.path(), to / e.path().filename());
        }
    }
}

// Copies the keys the ctest fixture made in FROM (tests/test-keys-fixture.sh) into k's
// directory, the GnuPG home under the same short-path rule as keys/make-test-keys.sh.
void copy_keys(KeysDir& k, const std::string& from) {
    namespace fs = std::filesystem;
    const std::string& out = k.dir.path();
    char resolved[PATH_MAX];
    if (!realpath((from + "/gnupg").c_str(), resolved)) {
        FAIL("no test keys in " << from << " (the ctest fixture \"keys: make the test keys\")");
    }
    std::string home = out + "/gnupg";
    if (out.size() > 70) {
        std::string tmpl = "/tmp/ssync-keys-XXXXXX";
        if (!mkdtemp(tmpl.data())) FAIL("mkdtemp /tmp/ssync-keys-XXXXXX failed");
        home = tmpl;
    }
    k.real_home = home;
    try {
        copy_gnupg_home(resolved, home);
        for (const fs::directory_entry& e : fs::directory_iterator(from)) {
            if (e.path().filename() != "gnupg" && fs::is_regular_file(e.symlink_status())) {
                fs::copy_file(e.path(), out / e.path().filename());
            }
        }
    } catch (const fs::filesystem_error& e) {
        FAIL("copying the test keys from " << from << ": " << e.what());
    }
}

// Makes the keys afresh with keys/make-test-keys.sh (a test binary run outside ctest).
void make_keys_with_script(KeysDir& k) {
    const std::string& out = k.dir.path();
    ProcessResult r = run({"bash", SSYNC_KEYS_SCRIPT, out});
    char resolved[PATH_MAX];
    if (realpath((out + "/gnupg").c_str(), resolved)) k.real_home = resolved;
    if (r.exit_status != 0) FAIL("make-test-keys.sh failed: " << r.err);
}

std::unique_ptr<KeysDir> make_keys() {
    auto k = std::make_unique<KeysDir>();
    const std::string& out = k->dir.path();
    const char* fixture = getenv("SSYNC_TEST_KEYS");
    if (fixture && *fixture) {
        copy_keys(*k, fixture);
    } else {
        make_keys_with_script(*k);
    }

    std::map<std::string, std::string> fprs;
    std::istringstream lines(read_file(out + "/fingerprints"));
    std::string line;
    while (std::getline(lines, line)) {
        auto eq = line.find('=');
        if (eq != std::string::npos) fprs[line.substr(0, eq)] = line.substr(eq + 1);
    }
    for (const char* name : {"plain", "passphrase", "expired", "revoked", "subkey", "other"}) {
        if (fprs[name].size() != 40) FAIL("make-test-keys.sh: no fingerprint for " << name);
    }
    TestKeys& t = k->keys;
    t.dir = out;
    // The resolved home: when it had to go under a short path, gpg must be given that path, or
    // gpg-agent's socket names would be too long again.
    t.home = k->real_home.empty() ? out + "/gnupg" : k->real_home;
    t.plain_fpr = fprs["plain"];
    t.passphrase_fpr = fprs["passphrase"];
    t.passphrase_file = out + "/passphrase.txt";
    t.expired_fpr = fprs["expired"];
    t.revoked_fpr = fprs["revoked"];
    t.subkey_fpr = fprs["subkey"];
    t.other_fpr = fprs["other"];
    return k;
}

}  // namespace

const TestKeys& test_keys() {
    // KeysDir's destructor runs at exit and uses system_fs(): constructing that first makes it
    // outlive the keys.
    (void)system_fs();
    static std::unique_ptr<KeysDir> keys = make_keys();
    return keys->keys;
}

void gpg_sign(const std::string& key_fpr, const std::string& data_path, const std::string& sig_path,
              const std::string& faked_time, const std::string& sig_expire) {
    const TestKeys& keys = test_keys();
    // The bare fingerprint, not "FPR!": with "!" gpg would insist on the primary key, and the
    // subkey test key's primary cannot sign. A full fingerprint still names exactly one key.
    std::vector<std::string> argv = {"gpg",   "--homedir", keys.home,      "--batch", "--no-tty",
                                     "--yes", "--armor",   "--local-user", key_fpr};
    if (!faked_time.empty()) argv.insert(argv.end(), {"--faked-system-time", faked_time});
    // --default-sig-expire applies in --batch mode (only --ask-sig-expire would prompt).
    if (!sig_expire.empty()) argv.insert(argv.end(), {"--default-sig-expire", sig_expire});
    argv.insert(argv.end(), {"--detach-sign", "-o", sig_path, data_path});
    ProcessResult r = run(argv);
    if (r.exit_status != 0) FAIL("gpg --detach-sign with " << key_fpr << " failed: " << r.err);
}

}  // namespace ssync::test
