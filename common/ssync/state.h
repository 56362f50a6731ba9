// What a mirror remembers between runs: per file-set name, the last applied serial and the
// manifest's and signature's digests, so that rollbacks and freezes are caught.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ssync/fs.h"
#include "ssync/status.h"

namespace ssync {

struct SyncState {
    std::string name;
    std::uint64_t serial = 0;
    std::string manifest_sha256;
    std::string signature_sha256;
    std::int64_t expires = 0;
    std::string dest;  // where it was applied (informational)
    // The keyring the release was verified with (SHA-256 of the file's bytes) and until when
    // that verdict holds (VerifiedSignature::valid_until; 0: no expiry). A run that finds the
    // same release again trusts it without gpg only while both still hold. Empty in state files
    // written before they were recorded: the next run verifies again.
    std::string keyring_sha256;
    std::int64_t verified_until = 0;
};

// The state directory's files: "<name>.state" (JSON). The default directory is
// /var/lib/ssync (docs/operators.md).
class StateStore {
public:
    inline static const std::string kDefaultDir = "/var/lib/ssync";

    // Opens (creating if missing, mode 0700) the state directory.
    static Result<StateStore> open(FileSystem& fs, const std::string& dir);

    // The state for `name`; std::nullopt when there is none. A damaged state file is an error
    // (io) naming it: silently forgetting it would re-open the door to rollbacks.
    Result<std::optional<SyncState>> load(const std::string& name) const;
    // Durably replaces the state for state.name.
    Status save(const SyncState& state) const;
    // Whether save() can work (a file can be created in the directory), asked before DEST is
    // touched: a state that cannot be recorded would let every run apply whatever it is
    // offered, older releases included, and fail only afterwards.
    Status check_writable() const;

private:
    StateStore(FileSystem& fs, std::string dir, UniqueFd fd) : fs_(&fs), dir_(std::move(dir)), fd_(std::move(fd)) {}
    FileSystem* fs_;
    std::string dir_;
    UniqueFd fd_;
};

}  // namespace ssync
