// Walking a source tree into manifest entries, and the stat cache that lets a re-scan skip
// hashing files that did not change.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <memory>
#include <optional>
#include <string_view>
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

// The FileStat of what fstat/fstatat returned.
FileStat file_stat(const struct stat& st);

// What a st_mode is, for messages: "a regular file", "a directory", "a symlink", "a FIFO",
// "a socket", "a character device", "a block device", else "a special file".
const char* file_kind_name(mode_t mode);

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

// A digest of everything a scan saw: paths, types, modes, owners (ids and names), symlink
// targets, and the files' full stat data (size, mtime, ctime, inode, device). Equal stamps mean
// nothing observable changed; any edit changes at least a ctime.
std::string tree_stamp(const std::vector<ScannedEntry>& entries);

// tree_stamp(scan_tree(root_fd, {special})) without building the entries, the walk spread over
// `threads` threads (0: one per core), and how many entries of each kind the scan would hold.
// For the check "has anything changed since the last run?", which is all a re-sign of an
// unchanged tree needs: about a third of scan_tree's time on one thread.
struct TreeStamp {
    std::string stamp;
    std::size_t files = 0, dirs = 0, symlinks = 0;
    std::uint64_t bytes = 0;  // of the files
};
// nullopt when the walk meets anything scan_tree would refuse, or fails: scan_tree says what.
std::optional<TreeStamp> stamp_tree(int root_fd, SpecialFiles special, unsigned threads);

// Remembers the SHA-256 of files by path and FileStat. Stored beside a publication or a mirror;
// a missing or damaged cache file just means everything is hashed again. Loading keeps the
// file's bytes and indexes them (records sorted by path, found by binary search): no string
// per record, which on a tree of 20,000 files is most of the cost of a map.
class StatCache {
public:
    struct Record {
        std::string_view path;
        FileStat stat;
        std::string_view sha256;
    };

    // Loads `name` below dirfd; any problem yields an empty cache.
    static StatCache load(int dirfd, const std::string& name);
    // The cache file's bytes for these scanned files: one record per regular file whose
    // entry.sha256 is set (others are left out).
    static std::string format(const std::vector<ScannedEntry>& files);
    // The same from entries and their stats side by side (stats[i] belongs to entries[i]).
    static std::string format(const std::vector<Entry>& entries, const std::vector<FileStat>& stats);

    // The record of `path`, whatever its stat, or nullptr.
    const Record* find(std::string_view path) const;
    // The cached digest when `stat` matches what was recorded for `path`, else empty.
    std::string_view lookup(std::string_view path, const FileStat& stat) const;
    std::size_t size() const { return records_.size(); }

private:
    std::shared_ptr<const MappedFile> bytes_;  // what the records point into
    std::vector<Record> records_;               // sorted by path
};

// Looks up user and group names (cached; the empty string when an id has no name).
std::string user_name(std::uint32_t uid);
std::string group_name(std::uint32_t gid);

}  // namespace ssync
