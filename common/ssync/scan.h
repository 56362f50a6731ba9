// Walking a source tree into manifest entries, and the stat cache that lets a re-scan skip
// hashing files that did not change.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ssync/fs.h"
#include "ssync/manifest.h"
#include "ssync/status.h"

namespace ssync {

// What identifies an unchanged file between runs. ctime is included although the issue only
// asks for size, mtime and inode: `touch -d` can restore an mtime, but nothing restores ctime.
struct FileStat {
    std::uint64_t dev = 0, ino = 0, size = 0;
    std::int64_t mtime_ns = 0, ctime_ns = 0;
    bool operator==(const FileStat&) const = default;
};

struct ScannedEntry {
    Entry entry;    // for files, entry.sha256 is empty until hashed
    FileStat stat;  // files only
    const char* special = nullptr;  // with SpecialFiles::include: "a FIFO", "a socket"...
    std::size_t found = 0;          // files only: how many files the walk found before this one
};

// What to do with devices, FIFOs and sockets: refuse (an error naming the path), skip them, or
// include them (as type file with `special` set; for auditors, who report them).
enum class SpecialFiles { refuse, skip, include };

struct ScanOptions {
    SpecialFiles special = SpecialFiles::refuse;
    // Called for each regular file (not special files) the moment the walk finds it, before
    // the result is sorted: lets a caller start hashing while the walk goes on. The entry's
    // `found` number identifies it again in the sorted result.
    std::function<void(const ScannedEntry&)> on_file;
};

// Walks `root` (never following a symlink inside it) and returns its entries sorted bytewise by
// path. The top-level ".ssync" directory (a mirror's own metadata) is not part of a release and
// is skipped. Errors (io): unreadable directories, a device, FIFO or socket (unless skipped),
// a name that is not valid UTF-8 (ssync refuses rather than mangles such names), each naming
// the path.
Result<std::vector<ScannedEntry>> scan_tree(int root_fd, const ScanOptions& options = {});

// A digest of everything a scan saw: paths, types, modes, owners, symlink targets, and the
// files' full stat data (size, mtime, ctime, inode, device). Equal stamps mean nothing
// observable changed; any edit changes at least a ctime.
std::string tree_stamp(const std::vector<ScannedEntry>& entries);

// Remembers the SHA-256 of files by path and FileStat. Stored beside a publication; a missing
// or damaged cache file just means everything is hashed again.
class StatCache {
public:
    // Loads `name` below dirfd; any problem yields an empty cache.
    static StatCache load(int dirfd, const std::string& name);
    Status save(FileSystem& fs, int dirfd, const std::string& name) const;
    // The cache file's bytes for these scanned files (their sha256 set), without building a
    // cache first: a signer writes one record per file of a new release.
    static std::string format(const std::vector<ScannedEntry>& files);

    // The cached digest when `stat` matches what was recorded for `path`, else nullptr.
    const std::string* lookup(const std::string& path, const FileStat& stat) const;
    void put(const std::string& path, const FileStat& stat, const std::string& sha256);
    std::size_t size() const { return map_.size(); }

private:
    struct Record {
        FileStat stat;
        std::string sha256;
    };
    std::unordered_map<std::string, Record> map_;
};

// Looks up user and group names (cached; the empty string when an id has no name).
std::string user_name(std::uint32_t uid);
std::string group_name(std::uint32_t gid);

}  // namespace ssync
