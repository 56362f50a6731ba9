// The test keys (keys/make-test-keys.sh, made once per test process) and signing with the gpg
// program itself, independently of ssync's own signing code.
#include <doctest/doctest.h>
#include <limits.h>
#include <stdlib.h>

#include <cstdio>
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

std::unique_ptr<KeysDir> make_keys() {
    auto k = std::make_unique<KeysDir>();
    const std::string& out = k->dir.path();
    ProcessResult r = run({"bash", SSYNC_KEYS_SCRIPT, out});
    char resolved[PATH_MAX];
    if (realpath((out + "/gnupg").c_str(), resolved)) k->real_home = resolved;
    if (r.exit_status != 0) FAIL("make-test-keys.sh failed: " << r.err);

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
    // The resolved home: when the script had to put it under a short path, gpg must be given
    // that path, or gpg-agent's socket names would be too long again.
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
