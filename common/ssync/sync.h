// ssync-verifier sync as a library call: publication -> verified manifest -> state check ->
// plan -> staged and verified content -> switched in -> state recorded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ssync/install.h"
#include "ssync/manifest.h"
#include "ssync/status.h"
#include "ssync/transport.h"

namespace ssync {

struct SyncOptions {
    std::string url;        // the publication (any transport)
    std::string dest;       // the tree to make equal to the release
    std::string keyring;    // the only keys trusted
    std::string state_dir;  // where serials are remembered
    std::string name;       // expected file-set name; empty: DEST's recorded one, or any
    TransportOptions transport;
    OwnerPolicy owners = OwnerPolicy::skip;
    ExtraPolicy extras = ExtraPolicy::remove;
    bool verify_all = false;  // hash DEST's files instead of trusting the stat cache
    bool atomic_tree = false; // switch the whole tree at once (Installer::apply_whole_tree)
    bool progress = false;
    std::int64_t now = 0;
    ManifestLimits limits;
    int max_parallel = 64;  // see DownloadOptions::max_parallel
    FileSystem* fs = nullptr;
};

struct SyncReport {
    std::string name;
    std::uint64_t serial = 0;
    std::uint64_t previous_serial = 0;  // 0: none recorded
    bool noop = false;
    std::uint64_t added = 0, changed = 0, removed = 0;
    // Content, plus manifest, signature and pack index bytes; files_fetched counts the files
    // cut from packs too, bytes_fetched all of each pack fetched.
    std::uint64_t files_fetched = 0, bytes_fetched = 0;
    std::uint64_t packs_fetched = 0;  // packs the content was cut from (ssync/packs.h)
    std::uint64_t files_copied_locally = 0;
    std::uint64_t files_hashed = 0;  // DEST files read while planning: the stat cache could not vouch
    double seconds = 0;
    // Where the seconds went, for operators and benchmarks: fetching and verifying the release
    // (signature, manifest), planning (scanning DEST), staging (copies and downloads), making
    // staging durable, switching in, recording. Phases a run skipped stay 0.
    struct Phases {
        double release = 0, plan = 0, stage = 0, flush = 0, apply = 0, record = 0;
    } phases;
};

// Runs one sync. Errors: busy (another sync holds DEST's lock), untrusted, bad_manifest
// (including rollback, freeze/expiry, name), transport, io. Until the staged release has
// verified completely, DEST and the state are untouched; after that each path holds its old or
// its new version at every moment, and a re-run converges.
Result<SyncReport> sync_release(const SyncOptions& options);

}  // namespace ssync
