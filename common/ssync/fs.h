// The operating system's file system behind a narrow interface.
//
// Everything that writes works relative to directory descriptors and opens with O_NOFOLLOW, so
// a symlink planted in a destination can never redirect a write. All system calls that change
// the disk go through FileSystem, whose default implementation forwards to the kernel; tests
// wrap it to inject ENOSPC, a failed rename or a "crash" against the real disk.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "ssync/status.h"

namespace ssync {

// Owns a file descriptor; closes it on destruction.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) reset(o.release());
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    int release() {
        int fd = fd_;
        fd_ = -1;
        return fd;
    }
    void reset(int fd = -1);

private:
    int fd_ = -1;
};

// System calls that change the disk. Each returns what the kernel returns (-1 and errno on
// failure). Subclass and forward to inject faults.
class FileSystem {
public:
    virtual ~FileSystem() = default;
    virtual int openat(int dirfd, const char* path, int flags, mode_t mode);
    virtual int mkdirat(int dirfd, const char* path, mode_t mode);
    virtual int renameat2(int olddirfd, const char* oldpath, int newdirfd, const char* newpath,
                          unsigned flags);
    virtual int unlinkat(int dirfd, const char* path, int flags);
    virtual int symlinkat(const char* target, int dirfd, const char* path);
    virtual int linkat(int olddirfd, const char* oldpath, int newdirfd, const char* newpath);
    virtual ssize_t write(int fd, const void* buf, size_t count);
    virtual int fsync(int fd);
    virtual int fchmod(int fd, mode_t mode);
    virtual int fchownat(int dirfd, const char* path, uid_t uid, gid_t gid, int flags);
    virtual int utimensat(int dirfd, const char* path, const struct timespec times[2], int flags);
};

// The kernel, unwrapped.
FileSystem& system_fs();

// Opens the directory at `relative_path` below dirfd, following no symlink in any component
// and refusing "..": what a manifest or a mirror names can never lead outside dirfd.
// An empty path opens dirfd itself (a new descriptor).
Result<UniqueFd> open_dir_beneath(int dirfd, std::string_view relative_path);
// Opens a directory an administrator named on the command line; symlinks in that path are
// the administrator's choice, so they are followed.
Result<UniqueFd> open_dir_trusted(const std::string& path);

// Opens a regular file for reading (flags adds e.g. O_NOFOLLOW), refusing anything else and a
// file larger than max_bytes; `st` (if set) receives its stat. O_NONBLOCK: a FIFO in its place
// is refused at once, not waited on.
Result<UniqueFd> open_regular_file(int dirfd, const std::string& path, int flags, std::uint64_t max_bytes,
                                   const std::string& display, struct stat* st = nullptr);

// Reads a whole regular file, refusing one larger than max_bytes. Context in errors is
// `display`. Below a directory descriptor (ssync's own files: DEST/.ssync, the state, a
// publication) a symlink in the last component is refused; a path the user gave (a keyring, a
// passphrase file) may be a symlink.
Result<std::string> read_file_bounded(int dirfd, const std::string& path, std::uint64_t max_bytes,
                                      const std::string& display);
Result<std::string> read_file_bounded(const std::string& path, std::uint64_t max_bytes);
// Reads at most the first max_bytes of a regular file (not through a symlink), of any size.
Result<std::string> read_file_prefix(int dirfd, const std::string& path, std::uint64_t max_bytes,
                                     const std::string& display);

// A file's bytes mapped read-only, for a process's own files that it reads whole (a stat
// cache, the signer's previous manifest): the page cache is mapped instead of copied, so no
// fresh memory is touched, which on some VMs costs more than parsing the bytes. NOT for
// anything verified before it is parsed (a signed manifest from elsewhere): the file could
// change under the mapping; read those with read_file_bounded. Errors as read_file_bounded.
class MappedFile {
public:
    static Result<MappedFile> open(int dirfd, const std::string& path, std::uint64_t max_bytes,
                                   const std::string& display);
    MappedFile() = default;
    MappedFile(MappedFile&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr; o.size_ = 0; }
    MappedFile& operator=(MappedFile&& o) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile();
    std::string_view bytes() const { return {static_cast<const char*>(data_), size_}; }

private:
    void* data_ = nullptr;
    std::size_t size_ = 0;
};

// Writes all of `data` to fd, retrying short writes.
Status write_all(FileSystem& fs, int fd, std::string_view data, const std::string& display);

// Durable replace: writes a temporary beside `name` in dirfd, fsyncs it, renames it over
// `name`, fsyncs the directory. On failure the temporary is removed and `name` is untouched.
Status write_file_atomic(FileSystem& fs, int dirfd, const std::string& name, std::string_view data,
                         mode_t mode, const std::string& display);

// Creates every missing directory of the relative `path` below dirfd (no symlink followed).
Status make_dirs(FileSystem& fs, int dirfd, std::string_view path, mode_t mode,
                 const std::string& display);

// Removes `name` in dirfd and, if it is a directory, all below it; no symlink is followed.
// A missing `name` is not an error.
Status remove_tree(FileSystem& fs, int dirfd, const std::string& name, const std::string& display);

struct DirChild {
    std::string name;
    unsigned char type;  // DT_DIR, DT_REG, DT_LNK... or DT_UNKNOWN
};
// The names in a directory (without "." and ".."), read from the start whatever the
// descriptor's offset. Moves that offset: not for a descriptor another thread lists.
Result<std::vector<DirChild>> list_dir(int dirfd, const std::string& display);

// The same walk without a string per entry: `visit(name, d_type)` for each entry but "." and
// "..", read with getdents64 from the directory's start; an error from `visit` stops it.
Status for_each_entry(int dirfd, const std::string& display,
                      const std::function<Status(const char* name, unsigned char type)>& visit);

// Whether the directory `inner` is the directory `outer` or below it, found by walking up
// from `inner` through ".." and comparing device and inode (so another spelling of a path, a
// symlink or a bind mount of the same file system does not hide it). An ancestor that cannot
// be opened ends the walk: false, as nothing above it could be compared.
bool dir_within(int inner, int outer);

// A path split into the directory that holds it and its last name, trailing slashes ignored:
// "a/b/" -> {"a", "b"}, "b" -> {".", "b"}, "/b" -> {"/", "b"}, "/" -> {"/", "/"}.
struct PathParts {
    std::string parent, name;
};
PathParts split_path(const std::string& path);

// How the directory at `path` (which need not exist yet) relates to the directory `dir`:
// inside it (or the same), holding it, or apart. For refusing a destination that overlaps
// the source, before anything is created.
enum class Overlap { apart, inside, holds };
Overlap dir_overlap(const std::string& path, int dir);

// fsync a directory by descriptor.
Status sync_dir(FileSystem& fs, int dirfd, const std::string& display);

// Joins a/b with one '/' ("" + b gives b).
std::string join_path(std::string_view a, std::string_view b);

// A readable, one-line rendering of a path for messages: control characters and bytes that are
// not UTF-8 are shown as \xHH.
std::string quote_path(std::string_view path);

}  // namespace ssync

namespace ssync {
// Opens `relative_path` below dirfd with `flags` (O_RDONLY...), following no symlink in any
// component and never leaving dirfd (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or a
// component-by-component walk on kernels without it). -1 and errno on failure, like openat.
// Always O_NONBLOCK, which changes nothing for regular files and directories: a FIFO or device
// someone put in the tree is opened at once (and then refused by type), never waited on.
int open_beneath(int dirfd, const std::string& relative_path, int flags, mode_t mode = 0);
}  // namespace ssync

namespace ssync {
// An exclusive advisory lock (flock) on a file, held while the object lives.
class FileLock {
public:
    // Creates `name` below dirfd if needed and locks it without waiting. Code busy when another
    // process holds it: "<display> is locked by another process".
    static Result<FileLock> acquire(int dirfd, const std::string& name, const std::string& display);
    FileLock(FileLock&&) = default;
    FileLock& operator=(FileLock&&) = default;

private:
    explicit FileLock(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};
}  // namespace ssync
