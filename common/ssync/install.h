// Making a destination tree equal to a verified manifest: plan, stage, verify, switch in.
//
// Every path in DEST always holds its old or its new version: new content is staged and
// verified in DEST/.ssync/staging (same file system), then renamed over its path. Nothing is
// renamed into DEST before every staged file has verified. No symlink in DEST is followed:
// directories are opened component by component with O_NOFOLLOW and entries are created and
// replaced relative to those descriptors. After SIGKILL a re-run converges: what is already
// in place matches and is skipped; verified staged content is reused.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ssync/fs.h"
#include "ssync/manifest.h"
#include "ssync/pack_fetch.h"
#include "ssync/scan.h"
#include "ssync/status.h"
#include "ssync/transport.h"

namespace ssync {

enum class OwnerPolicy { apply, skip };
enum class ExtraPolicy { remove, keep };

// Where a release's content is fetched from in the source: by hash (a publication's
// objects/) or by path (another mirror's tree).
enum class ContentLayout { objects, tree };

struct Plan {
    std::vector<const Entry*> create;       // entries to (re)create: content, type or target differ
    std::vector<const Entry*> metadata;     // content in place, but mode/owner/mtime differ
    std::vector<std::string> remove;        // DEST paths to delete (top-most only)
    std::vector<std::string> retype;        // DEST paths to delete before `create` (wrong type)
    // Content needed, by hash: a DEST path that already holds it, or empty to download.
    std::unordered_map<std::string, std::string> local_source;
    std::vector<const Entry*> download;     // one entry per distinct hash to fetch
    std::uint64_t bytes_to_download = 0;
    std::uint64_t added = 0, changed = 0, removed = 0;
    std::uint64_t files_hashed = 0;         // DEST files read because the stat cache could not vouch

    bool empty() const { return create.empty() && metadata.empty() && remove.empty() && retype.empty(); }
};

struct InstallOptions {
    OwnerPolicy owners = OwnerPolicy::skip;
    ExtraPolicy extras = ExtraPolicy::remove;
    bool verify_all = false;   // hash every DEST file instead of trusting the stat cache
    unsigned threads = 0;
    FileSystem* fs = nullptr;  // nullptr: system_fs()
    // The directory the release is read from, when it is local: DEST may be neither inside it
    // nor contain it (removing extras would delete the publication). -1: not local.
    int source_dir_fd = -1;
};

class StagedObjects;  // staging's content by digest (install.cpp)

struct StageReport {
    double flush_seconds = 0;  // the final syncfs
    PackFetchStats packs;
};

class Installer {
public:
    // Opens DEST (creating it if missing) and DEST/.ssync. The caller holds the lock. A DEST
    // that overlaps options.source_dir_fd is a usage error, found before anything is created.
    static Result<Installer> open(const std::string& dest, const InstallOptions& options);

    // Compares DEST with `manifest`. Uses DEST/.ssync/stat-cache to avoid re-hashing files
    // whose stat did not change since the last run.
    Result<Plan> plan(const Manifest& manifest);

    // Brings every content the plan needs into staging (local copies, then downloads through
    // `transport`: out of the packs of `packs` where that saves requests, see fetch_from_packs,
    // the rest one by one), each verified by SHA-256, and makes it durable (syncfs); nothing in
    // DEST changes. Reuses verified content left in staging by an interrupted run. `report`,
    // when set, receives the time the final flush took and what packs delivered.
    // download_options.fs and on_verified are the installer's own (its FileSystem; metadata and
    // writeback of each verified download). When DEST's file system runs full (ENOSPC,
    // EDQUOT), everything staged is removed again, the error says so, and staging_kept() turns
    // false; after any other failure, verified content stays for the next run.
    Status stage(const Plan& plan, Transport& transport, ContentLayout layout,
                 const DownloadOptions& download_options, const PackIndex* packs = nullptr,
                 StageReport* report = nullptr);
    bool staging_kept() const { return staging_kept_; }

    // Switches the staged release in: directories, files and symlinks renamed into place,
    // metadata fixed, extras removed, directory modes set last, then syncfs.
    Status apply(const Manifest& manifest, const Plan& plan);

    // Before apply(): makes the directory record() will write the release to (removing a
    // non-directory found at DEST/.ssync/releases: ssync's own name, never followed), so that
    // recording cannot fail for that reason after DEST was switched.
    Status prepare_record(const Manifest& manifest);

    // Records the applied release in DEST/.ssync (manifest, signature, `latest`, stat cache) so
    // DEST can be audited and served to downstream mirrors, and empties staging.
    Status record(const Manifest& manifest, const std::string& manifest_bytes, const std::string& signature);

    // After a plan found DEST already right for the release kept in DEST/.ssync: rewrites the
    // stat cache and the tree stamp from a fresh scan, so that stat-only drift (a ctime moved by
    // chmod-and-back or a same-owner chown) costs one full check, not one on every run.
    // Call right after plan() returned an empty plan.
    void refresh_record(const std::string& manifest_bytes);

    // The whole-tree alternative to apply() + record(): builds the complete new tree beside
    // DEST (".<name>.ssync-next" in DEST's parent; unchanged files hard-linked, changed ones
    // from staging), records the release in it, then swaps it with DEST in one
    // renameat2(RENAME_EXCHANGE) and removes the old tree. Readers see the old tree or the new
    // one, never a mix; after a crash DEST is entirely old or entirely new. Costs a directory
    // entry per file and a copy of files whose metadata alone changed. Errors: io, including a
    // file system without RENAME_EXCHANGE.
    Status apply_whole_tree(const Manifest& manifest, const Plan& plan, const std::string& manifest_bytes,
                            const std::string& signature);

    // True when DEST is exactly as the last record() left it for the manifest with digest
    // `manifest_sha256`: the tree stamp kept in DEST/.ssync matches a fresh scan. Lets an
    // unchanged release be confirmed without parsing its manifest. Any doubt answers false.
    bool unchanged_since_record(const std::string& manifest_sha256);

    // Removes staging (after a failed run that should not be resumed).
    Status clean_staging();

    int dest_fd() const { return dest_.get(); }
    int meta_fd() const { return meta_.get(); }

private:
    Installer() = default;
    Status set_metadata_fd(int fd, const Entry& e, const std::string& display);
    std::string staging_display() const;  // DEST/.ssync/staging, as messages name it
    // stage() up to its error handling.
    Status fill_staging(const Plan& plan, Transport& transport, ContentLayout layout,
                        const DownloadOptions& download_options, const PackIndex* packs, StageReport* report);
    std::string stamp_with_policy(const std::vector<ScannedEntry>& actual) const;
    // Prepares the new version of file `e` for the rename that switches it in: the staged
    // content itself on its last use (`uses` counts them down), else a copy in staging named
    // `name`; metadata set either way. Returns the directory it is in and sets `name`.
    Result<int> prepare_file(const Entry& e, StagedObjects& objects, std::unordered_map<std::string, int>& uses,
                             std::string& name, const std::string& what);
    Status record_into(int tree_fd, int tree_meta_fd, const std::string& display, const Manifest& manifest,
                       const std::string& manifest_bytes, const std::string& signature);
    void write_stat_cache_and_stamp(int tree_meta_fd, const std::string& meta_display,
                                    const std::vector<ScannedEntry>& scanned, const std::string& manifest_bytes);

    FileSystem* fs_ = nullptr;
    InstallOptions options_;
    std::string dest_path_;
    UniqueFd parent_;             // DEST's parent directory
    std::string dest_name_;       // DEST's name in it
    UniqueFd dest_, meta_, staging_;
    std::unordered_map<std::string, std::string> known_hashes_;  // DEST path -> sha256
    std::vector<ScannedEntry> planned_scan_;                      // what the last plan() saw
    // Staged contents (by hash) whose metadata stage() already set for the one entry using them.
    std::unordered_set<std::string> prepared_;
    bool staging_kept_ = true;
};

inline constexpr const char* kStagingDir = "staging";

}  // namespace ssync
