// Helpers for the end-to-end tests: the real binaries, real gpg, real files.
#pragma once

#include <string>
#include <vector>

#include "testutil.h"

namespace ssync::test {

inline ProcessResult signer(std::vector<std::string> args) {
    args.insert(args.begin(), SSYNC_SIGNER_BIN);
    return run(args);
}

inline ProcessResult verifier(std::vector<std::string> args) {
    args.insert(args.begin(), SSYNC_VERIFIER_BIN);
    return run(args);
}

// A source tree, a publication of it signed with the plain test key, and the key's public
// keyring: the starting point of most scenarios.
struct Published {
    TempDir dir;
    std::string src = dir / "src", pub = dir / "pub";
    const TestKeys& keys = test_keys();
    std::string keyring = keys.pubkey("plain");

    Published() { make_sample_tree(src); }

    static void make_sample_tree(const std::string& root);

    // Signs src into pub with `key` (default: plain). Returns the signer's result.
    ProcessResult sign(const std::vector<std::string>& extra = {}, std::string key = {}) const {
        std::vector<std::string> args = {"sign", "--root", src, "--out", pub, "--key",
                                         key.empty() ? keys.plain_fpr : key, "--gnupghome", keys.home,
                                         "--name", "site", "--quiet"};
        args.insert(args.end(), extra.begin(), extra.end());
        return signer(args);
    }
    ProcessResult audit(const std::string& tree, const std::vector<std::string>& extra = {}) const {
        std::vector<std::string> args = {"audit", "--from", pub, "--keyring", keyring};
        args.insert(args.end(), extra.begin(), extra.end());
        args.push_back(tree);
        return verifier(args);
    }
};

}  // namespace ssync::test

namespace ssync::test {
// The sha256 the publication's current manifest lists for `path`.
std::string sha256_of_entry(const std::string& pub, const std::string& path);
// The publication's object file holding that content (layout::object_path below pub).
std::string object_of_entry(const std::string& pub, const std::string& path);
}  // namespace ssync::test
