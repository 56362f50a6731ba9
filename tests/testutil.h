// Helpers shared by the unit and end-to-end tests: a fresh temporary directory per test,
// running programs, writing and reading files.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "ssync/process.h"

namespace ssync::test {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    // path()/name
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

// Runs a program; fails the current test if it cannot be started.
ProcessResult run(const std::vector<std::string>& argv, const std::string& stdin_data = {},
                  const std::vector<std::string>& extra_env = {});

// Starts a program in the background (argument vector, inherited stdio) and returns its pid;
// fails the current test if it cannot be started.
pid_t spawn(const std::vector<std::string>& argv);
// Waits for a spawned program; its exit status, or 128 + signal.
int wait_exit(pid_t pid);

// Sets an environment variable (for this process and what it spawns) until destroyed, then
// restores what was there.
class ScopedEnv {
public:
    ScopedEnv(std::string name, const std::string& value);
    ~ScopedEnv();
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    std::string name_;
    bool had_ = false;
    std::string old_;
};

// Writes a file (creating parent directories), with the given mode.
void write_file(const std::string& path, const std::string& data, mode_t mode = 0644);
// Reads a whole file; fails the current test if it cannot.
std::string read_file(const std::string& path);
bool exists(const std::string& path);  // lstat succeeds
void make_dirs(const std::string& path);
// `size` bytes that look random, the same for the same seed and different for another.
std::string pseudo_random_bytes(std::size_t size, unsigned seed);

// Test keys made by keys/make-test-keys.sh once per test process, in a GnuPG home of their own.
struct TestKeys {
    std::string home;              // GnuPG home holding every test secret key
    std::string plain_fpr;         // ordinary signing key
    std::string passphrase_fpr;    // key protected by passphrase_file's contents
    std::string passphrase_file;
    std::string expired_fpr;       // expired in the past
    std::string revoked_fpr;       // revoked after signing
    std::string subkey_fpr;        // primary key with a separate signing subkey
    std::string other_fpr;         // a valid key that is in no trusted keyring
    // Public keyrings (ASCII armour) holding just one key each, by name:
    // plain.pub.asc, passphrase.pub.asc, expired.pub.asc, revoked.pub.asc, subkey.pub.asc,
    // other.pub.asc
    std::string dir;
    std::string pubkey(const std::string& name) const { return dir + "/" + name + ".pub.asc"; }
};
const TestKeys& test_keys();

}  // namespace ssync::test

namespace ssync::test {
// Makes an ASCII-armoured detached signature of data_path with the gpg program itself (not
// ssync), using the test keys' home. faked_time ("20200101T000000") signs as if at that time;
// sig_expire ("1d") gives the signature an expiry.
void gpg_sign(const std::string& key_fpr, const std::string& data_path, const std::string& sig_path,
              const std::string& faked_time = {}, const std::string& sig_expire = {});
}  // namespace ssync::test
