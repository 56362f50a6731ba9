#include "ssync/fs.h"

#include <dirent.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>

namespace ssync {

void UniqueFd::reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

int FileSystem::openat(int dirfd, const char* path, int flags, mode_t mode) {
    return ::openat(dirfd, path, flags | O_CLOEXEC, mode);
}
int FileSystem::mkdirat(int dirfd, const char* path, mode_t mode) {
    return ::mkdirat(dirfd, path, mode);
}
int FileSystem::renameat2(int olddirfd, const char* oldpath, int newdirfd, const char* newpath,
                          unsigned flags) {
    if (flags == 0) return ::renameat(olddirfd, oldpath, newdirfd, newpath);
    return static_cast<int>(
        ::syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags));
}
int FileSystem::unlinkat(int dirfd, const char* path, int flags) {
    return ::unlinkat(dirfd, path, flags);
}
int FileSystem::symlinkat(const char* target, int dirfd, const char* path) {
    return ::symlinkat(target, dirfd, path);
}
int FileSystem::linkat(int olddirfd, const char* oldpath, int newdirfd, const char* newpath) {
    return ::linkat(olddirfd, oldpath, newdirfd, newpath, 0);
}
ssize_t FileSystem::write(int fd, const void* buf, size_t count) { return ::write(fd, buf, count); }
int FileSystem::fsync(int fd) { return ::fsync(fd); }
int FileSystem::fchmod(int fd, mode_t mode) { return ::fchmod(fd, mode); }
int FileSystem::fchownat(int dirfd, const char* path, uid_t uid, gid_t gid, int flags) {
    return ::fchownat(dirfd, path, uid, gid, flags);
}
int FileSystem::utimensat(int dirfd, const char* path, const struct timespec times[2], int flags) {
    return ::utimensat(dirfd, path, times, flags);
}

FileSystem& system_fs() {
    // Never destroyed: code that runs at exit (static destructors of tests) may still use it.
    static FileSystem* fs = new FileSystem;
    return *fs;
}

std::string join_path(std::string_view a, std::string_view b) {
    if (a.empty()) return std::string(b);
    if (b.empty()) return std::string(a);
    std::string r(a);
    if (r.back() != '/') r += '/';
    r += b;
    return r;
}

std::string quote_path(std::string_view path) {
    std::string out;
    out.reserve(path.size());
    static const char hex[] = "0123456789abcdef";
    auto esc = [&](unsigned char c) {
        out += "\\x";
        out += hex[c >> 4];
        out += hex[c & 15];
    };
    for (std::size_t i = 0; i < path.size();) {
        unsigned char c = static_cast<unsigned char>(path[i]);
        if (c < 0x20 || c == 0x7f || c == '\\') {
            if (c == '\\') out += "\\\\"; else esc(c);
            ++i;
            continue;
        }
        if (c < 0x80) {
            out += static_cast<char>(c);
            ++i;
            continue;
        }
        // Copy a well-formed UTF-8 sequence; escape anything else byte by byte.
        int len = (c >= 0xc2 && c <= 0xdf) ? 2 : (c >= 0xe0 && c <= 0xef) ? 3
                : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
        bool ok = len > 0 && i + len <= path.size();
        for (int k = 1; ok && k < len; ++k)
            ok = (static_cast<unsigned char>(path[i + k]) & 0xc0) == 0x80;
        if (ok) {
            out.append(path.substr(i, len));
            i += len;
        } else {
            esc(c);
            ++i;
        }
    }
    return out;
}

Result<UniqueFd> open_dir_trusted(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno_status(path);
    return UniqueFd(fd);
}

Result<UniqueFd> open_dir_beneath(int dirfd, std::string_view relative_path) {
    UniqueFd current(::fcntl(dirfd, F_DUPFD_CLOEXEC, 0));
    if (!current) return errno_status("dup");
    std::size_t pos = 0;
    while (pos < relative_path.size()) {
        std::size_t slash = relative_path.find('/', pos);
        if (slash == std::string_view::npos) slash = relative_path.size();
        std::string component(relative_path.substr(pos, slash - pos));
        pos = slash + 1;
        if (component.empty() || component == ".") continue;
        if (component == "..") {
            return Status(Code::io, quote_path(relative_path) + ": '..' component refused");
        }
        int fd = ::openat(current.get(), component.c_str(),
                          O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == ELOOP || e == ENOTDIR) {
                return Status(Code::io, quote_path(relative_path) +
                                            ": not a directory (a symlink or file is in the way)");
            }
            return errno_status(quote_path(relative_path), e);
        }
        current.reset(fd);
    }
    return current;
}

Result<UniqueFd> open_regular_file(int dirfd, const std::string& path, int flags, std::uint64_t max_bytes,
                                   const std::string& display, struct stat* st_out) {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever. It
    // changes nothing for a regular file.
    UniqueFd fd(::openat(dirfd, path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | flags));
    if (!fd) return errno_status(display);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return errno_status(display);
    if (!S_ISREG(st.st_mode)) return Status(Code::io, display + ": not a regular file");
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes) {
        return Status(Code::too_large, display + ": larger than the limit of " +
                                    std::to_string(max_bytes) + " bytes");
    }
    if (st_out) *st_out = st;
    return fd;
}

namespace {

// Reads `fd` to its end, or (prefix) to max_bytes; without prefix, more is an error.
Result<std::string> read_up_to(int fd, std::uint64_t max_bytes, bool prefix, std::size_t expected,
                               const std::string& display) {
    std::string data;
    data.reserve(std::min<std::size_t>(expected, max_bytes));
    char buf[1 << 16];
    for (;;) {
        std::size_t want = sizeof buf;
        if (prefix) want = std::min<std::uint64_t>(want, max_bytes - data.size());
        if (want == 0) break;
        ssize_t got = ::read(fd, buf, want);
        if (got < 0) {
            if (errno == EINTR) continue;
            return errno_status(display);
        }
        if (got == 0) break;
        // The file may grow after fstat: the bound holds for what we actually read.
        if (data.size() + static_cast<std::size_t>(got) > max_bytes) {
            return Status(Code::too_large, display + ": larger than the limit of " +
                                        std::to_string(max_bytes) + " bytes");
        }
        data.append(buf, static_cast<std::size_t>(got));
    }
    return data;
}

// A whole file of at most max_bytes, or (prefix) the first max_bytes of a file of any size.
Result<std::string> read_regular(int dirfd, const std::string& path, int flags, std::uint64_t max_bytes, bool prefix,
                                 const std::string& display) {
    struct stat st;
    SSYNC_ASSIGN_OR_RETURN(UniqueFd fd,
                           open_regular_file(dirfd, path, flags, prefix ? UINT64_MAX : max_bytes, display, &st));
    return read_up_to(fd.get(), max_bytes, prefix, static_cast<std::size_t>(st.st_size), display);
}
}  // namespace

Result<std::string> read_file_bounded(int dirfd, const std::string& path, std::uint64_t max_bytes,
                                      const std::string& display) {
    return read_regular(dirfd, path, O_NOFOLLOW, max_bytes, false, display);
}

Result<std::string> read_file_prefix(int dirfd, const std::string& path, std::uint64_t max_bytes,
                                     const std::string& display) {
    return read_regular(dirfd, path, O_NOFOLLOW, max_bytes, true, display);
}

Result<MappedFile> MappedFile::open(int dirfd, const std::string& path, std::uint64_t max_bytes,
                                    const std::string& display) {
    struct stat st;
    SSYNC_ASSIGN_OR_RETURN(UniqueFd fd, open_regular_file(dirfd, path, O_NOFOLLOW, max_bytes, display, &st));
    MappedFile m;
    if (st.st_size == 0) return m;
    void* p = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE | MAP_POPULATE,
                     fd.get(), 0);
    if (p == MAP_FAILED) return errno_status(display + ": mmap");
    m.data_ = p;
    m.size_ = static_cast<std::size_t>(st.st_size);
    return m;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
    if (this != &o) {
        if (data_) ::munmap(data_, size_);
        data_ = o.data_;
        size_ = o.size_;
        o.data_ = nullptr;
        o.size_ = 0;
    }
    return *this;
}

MappedFile::~MappedFile() {
    if (data_) ::munmap(data_, size_);
}

Result<std::string> read_file_bounded(const std::string& path, std::uint64_t max_bytes) {
    return read_regular(AT_FDCWD, path, 0, max_bytes, false, path);
}

Status write_all(FileSystem& fs, int fd, std::string_view data, const std::string& display) {
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t put = fs.write(fd, data.data() + done, data.size() - done);
        if (put < 0) {
            if (errno == EINTR) continue;
            return errno_status(display);
        }
        if (put == 0) return Status(Code::io, display + ": write returned 0");
        done += static_cast<std::size_t>(put);
    }
    return Status::ok();
}

static std::string temp_name(const std::string& name) {
    static std::atomic<unsigned> counter{0};
    std::random_device rd;
    return ".ssync-tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++) + "." +
           std::to_string(rd() % 100000) + "." + name.substr(name.rfind('/') + 1);
}

Status sync_dir(FileSystem& fs, int dirfd, const std::string& display) {
    if (fs.fsync(dirfd) != 0) return errno_status(display + ": fsync");
    return Status::ok();
}

Status write_file_atomic(FileSystem& fs, int dirfd, const std::string& name, std::string_view data,
                         mode_t mode, const std::string& display) {
    std::string tmp = temp_name(name);
    UniqueFd fd(fs.openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode));
    if (!fd) return errno_status(display + ": create temporary");
    auto fail = [&](Status s) {
        fs.unlinkat(dirfd, tmp.c_str(), 0);
        return s;
    };
    if (Status s = write_all(fs, fd.get(), data, display); !s) return fail(s);
    if (fs.fchmod(fd.get(), mode) != 0) return fail(errno_status(display + ": chmod"));
    if (fs.fsync(fd.get()) != 0) return fail(errno_status(display + ": fsync"));
    fd.reset();
    if (fs.renameat2(dirfd, tmp.c_str(), dirfd, name.c_str(), 0) != 0) {
        return fail(errno_status(display + ": rename"));
    }
    return sync_dir(fs, dirfd, display);
}

Status make_dirs(FileSystem& fs, int dirfd, std::string_view path, mode_t mode,
                 const std::string& display) {
    std::size_t pos = 0;
    UniqueFd current(::fcntl(dirfd, F_DUPFD_CLOEXEC, 0));
    if (!current) return errno_status("dup");
    while (pos < path.size()) {
        std::size_t slash = path.find('/', pos);
        if (slash == std::string_view::npos) slash = path.size();
        std::string component(path.substr(pos, slash - pos));
        pos = slash + 1;
        if (component.empty() || component == ".") continue;
        if (component == "..") return Status(Code::io, display + ": '..' component refused");
        if (fs.mkdirat(current.get(), component.c_str(), mode) != 0 && errno != EEXIST) {
            return errno_status(display + ": mkdir " + quote_path(component));
        }
        int fd = fs.openat(current.get(), component.c_str(),
                           O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
        if (fd < 0) return errno_status(display + ": open " + quote_path(component));
        current.reset(fd);
    }
    return Status::ok();
}

Status for_each_entry(int dirfd, const std::string& display,
                      const std::function<Status(const char* name, unsigned char type)>& visit) {
    // getdents64 on the descriptor itself, not opendir(): fdopendir on a dup costs a dup, an
    // fstat, two fcntl and a close per directory, a fifth of a walk's system calls.
    if (::lseek(dirfd, 0, SEEK_SET) != 0) return errno_status(display);
    alignas(struct dirent64) char buf[32 << 10];
    for (;;) {
        ssize_t got = ::getdents64(dirfd, buf, sizeof buf);
        if (got < 0) {
            if (errno == EINTR) continue;
            return errno_status(display);
        }
        if (got == 0) break;
        for (ssize_t at = 0; at < got;) {
            const auto* de = reinterpret_cast<const struct dirent64*>(buf + at);
            at += de->d_reclen;
            const char* n = de->d_name;
            if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'))) continue;
            SSYNC_RETURN_IF_ERROR(visit(n, de->d_type));
        }
    }
    return Status::ok();
}

Result<std::vector<DirChild>> list_dir(int dirfd, const std::string& display) {
    std::vector<DirChild> out;
    SSYNC_RETURN_IF_ERROR(for_each_entry(dirfd, display, [&](const char* name, unsigned char type) {
        out.push_back({std::string(name), type});
        return Status::ok();
    }));
    return out;
}

bool dir_within(int inner, int outer) {
    struct stat target, here;
    if (::fstat(outer, &target) != 0 || ::fstat(inner, &here) != 0) return false;
    UniqueFd up;
    int current = inner;
    // Bounded: a path has at most PATH_MAX / 2 components.
    for (int depth = 0; depth < 4096; ++depth) {
        if (here.st_dev == target.st_dev && here.st_ino == target.st_ino) return true;
        UniqueFd parent(::openat(current, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        struct stat above;
        if (!parent || ::fstat(parent.get(), &above) != 0) return false;
        if (above.st_dev == here.st_dev && above.st_ino == here.st_ino) return false;  // the root
        up = std::move(parent);
        current = up.get();
        here = above;
    }
    return false;
}

PathParts split_path(const std::string& path) {
    std::string trimmed = path;
    while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
    auto slash = trimmed.rfind('/');
    if (slash == std::string::npos) return {".", trimmed};
    if (trimmed == "/") return {"/", "/"};
    return {slash == 0 ? "/" : trimmed.substr(0, slash), trimmed.substr(slash + 1)};
}

Overlap dir_overlap(const std::string& path, int dir) {
    if (auto existing = open_dir_trusted(path)) {
        if (dir_within(existing->get(), dir)) return Overlap::inside;
        if (dir_within(dir, existing->get())) return Overlap::holds;
        return Overlap::apart;
    }
    // Not there yet: it would be created in its parent, so only that can put it inside `dir`.
    auto parent_fd = open_dir_trusted(split_path(path).parent);
    return parent_fd && dir_within(parent_fd->get(), dir) ? Overlap::inside : Overlap::apart;
}

static Status remove_children(FileSystem& fs, int dirfd, const std::string& display) {
    SSYNC_ASSIGN_OR_RETURN(std::vector<DirChild> listing, list_dir(dirfd, display));
    std::vector<std::pair<std::string, bool>> children;
    for (DirChild& c : listing) {
        bool is_dir = c.type == DT_DIR;
        if (c.type == DT_UNKNOWN) {
            struct stat st;
            if (::fstatat(dirfd, c.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) is_dir = S_ISDIR(st.st_mode);
        }
        children.emplace_back(std::move(c.name), is_dir);
    }
    for (auto& [n, is_dir] : children) {
        if (is_dir) {
            SSYNC_RETURN_IF_ERROR(remove_tree(fs, dirfd, n, join_path(display, n)));
        } else if (fs.unlinkat(dirfd, n.c_str(), 0) != 0 && errno != ENOENT) {
            return errno_status(join_path(display, n));
        }
    }
    return Status::ok();
}

Status remove_tree(FileSystem& fs, int dirfd, const std::string& name, const std::string& display) {
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return Status::ok();
        return errno_status(display);
    }
    if (!S_ISDIR(st.st_mode)) {
        if (fs.unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) return errno_status(display);
        return Status::ok();
    }
    UniqueFd child(fs.openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0));
    if (!child) return errno_status(display);
    // A read-only directory (a published tree) must become writable to be emptied.
    if ((st.st_mode & 0700) != 0700) fs.fchmod(child.get(), (st.st_mode & 07777) | 0700);
    SSYNC_RETURN_IF_ERROR(remove_children(fs, child.get(), display));
    child.reset();
    if (fs.unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
        return errno_status(display);
    }
    return Status::ok();
}

}  // namespace ssync

#include <linux/openat2.h>

namespace ssync {

int open_beneath(int dirfd, const std::string& relative_path, int flags, mode_t mode) {
    static std::atomic<bool> have_openat2{true};
    if (have_openat2.load(std::memory_order_relaxed)) {
        struct open_how how {};
        how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        how.mode = (flags & O_CREAT) ? mode : 0;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
        long fd = ::syscall(SYS_openat2, dirfd, relative_path.c_str(), &how, sizeof how);
        if (fd >= 0 || errno != ENOSYS) return static_cast<int>(fd);
        have_openat2.store(false, std::memory_order_relaxed);
    }
    std::string_view parent = relative_path;
    std::string name = relative_path;
    auto slash = relative_path.rfind('/');
    UniqueFd dir;
    if (slash != std::string::npos) {
        auto d = open_dir_beneath(dirfd, parent.substr(0, slash));
        if (!d) {
            errno = ELOOP;
            return -1;
        }
        dir = std::move(d).value();
        name = relative_path.substr(slash + 1);
    }
    if (name == ".." || name == ".") {
        errno = EXDEV;
        return -1;
    }
    return ::openat(dir ? dir.get() : dirfd, name.c_str(), flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, mode);
}

}  // namespace ssync

#include <sys/file.h>

namespace ssync {

Result<FileLock> FileLock::acquire(int dirfd, const std::string& name, const std::string& display) {
    UniqueFd fd(::openat(dirfd, name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) return errno_status(display);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            return Status(Code::busy, display + " is locked by another process; try again later");
        }
        return errno_status(display);
    }
    return FileLock(std::move(fd));
}

}  // namespace ssync
