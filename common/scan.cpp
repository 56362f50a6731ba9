#include "ssync/scan.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "ssync/hash.h"
#include "ssync/parallel.h"

namespace ssync {

namespace {

std::int64_t ns(const struct timespec& ts) {
    return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct Walker {
    const ScanOptions& options;
    // A deque: growing it never moves what it holds (entries are 256 bytes with five strings).
    std::deque<ScannedEntry>& out;
    std::size_t files_found = 0;

    Status walk(int dirfd, const std::string& prefix) {
        SSYNC_ASSIGN_OR_RETURN(std::vector<DirChild> listing,
                               list_dir(dirfd, prefix.empty() ? "." : quote_path(prefix)));
        std::vector<std::string> names;
        names.reserve(listing.size());
        for (DirChild& c : listing) {
            if (prefix.empty() && c.name == kReservedDir) continue;
            names.push_back(std::move(c.name));
        }
        std::sort(names.begin(), names.end());
        for (const std::string& n : names) {
            std::string path = prefix.empty() ? n : prefix + "/" + n;
            if (!is_valid_utf8(n)) {
                return Status(Code::io, quote_path(path) +
                                            ": file name is not valid UTF-8 (rename it; ssync does "
                                            "not publish names it cannot represent exactly)");
            }
            struct stat st;
            if (::fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
                return errno_status(quote_path(path));
            }
            ScannedEntry se;
            Entry& e = se.entry;
            e.path = path;
            e.mode = st.st_mode & 07777;
            e.uid = st.st_uid;
            e.gid = st.st_gid;
            e.user = user_name(st.st_uid);
            e.group = group_name(st.st_gid);
            if (S_ISREG(st.st_mode)) {
                e.type = EntryType::file;
                e.size = static_cast<std::uint64_t>(st.st_size);
                e.mtime = st.st_mtim.tv_sec;
                se.stat = file_stat(st);
                se.found = files_found++;
                if (options.on_file) options.on_file(se);
                out.push_back(std::move(se));
            } else if (S_ISLNK(st.st_mode)) {
                e.type = EntryType::symlink;
                // A symlink's own mode is always 0777 on Linux and cannot be set.
                e.mode = 0777;
                std::string target(static_cast<std::size_t>(st.st_size) + 1, '\0');
                ssize_t len = ::readlinkat(dirfd, n.c_str(), target.data(), target.size());
                if (len < 0) return errno_status(quote_path(path));
                if (static_cast<std::size_t>(len) >= target.size()) {
                    return Status(Code::io, quote_path(path) + ": symlink changed while reading it");
                }
                target.resize(static_cast<std::size_t>(len));
                if (!is_valid_utf8(target)) {
                    return Status(Code::io, quote_path(path) + ": symlink target is not valid UTF-8");
                }
                e.target = std::move(target);
                out.push_back(std::move(se));
            } else if (S_ISDIR(st.st_mode)) {
                e.type = EntryType::dir;
                out.push_back(std::move(se));
                UniqueFd child(::openat(dirfd, n.c_str(),
                                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
                if (!child) return errno_status(quote_path(path));
                SSYNC_RETURN_IF_ERROR(walk(child.get(), path));
            } else {
                if (options.special == SpecialFiles::skip) continue;
                const char* what = file_kind_name(st.st_mode);
                if (options.special == SpecialFiles::include) {
                    e.type = EntryType::file;
                    se.special = what;
                    out.push_back(std::move(se));
                    continue;
                }
                return Status(Code::io, quote_path(path) + ": is " + what +
                                            "; ssync publishes files, directories and symlinks "
                                            "(use --skip-special to leave it out)");
            }
        }
        return Status::ok();
    }
};

}  // namespace

const char* file_kind_name(mode_t mode) {
    return S_ISREG(mode)   ? "a regular file"
         : S_ISDIR(mode)   ? "a directory"
         : S_ISLNK(mode)   ? "a symlink"
         : S_ISFIFO(mode)  ? "a FIFO"
         : S_ISSOCK(mode)  ? "a socket"
         : S_ISCHR(mode)   ? "a character device"
         : S_ISBLK(mode)   ? "a block device"
                           : "a special file";
}

FileStat file_stat(const struct stat& st) {
    return {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
            static_cast<std::uint64_t>(st.st_size), ns(st.st_mtim), ns(st.st_ctim)};
}

Result<std::vector<ScannedEntry>> scan_tree(int root_fd, const ScanOptions& options) {
    std::deque<ScannedEntry> found;
    Walker walker{options, found};
    SSYNC_RETURN_IF_ERROR(walker.walk(root_fd, ""));
    // The walk sorts names per directory, which is not bytewise order of whole paths ("a/b"
    // comes after "a-b" bytewise, but the walk visits a/ first). Sorting pointers, then moving
    // each entry once into place, is cheaper than sorting the entries themselves.
    std::vector<ScannedEntry*> order;
    order.reserve(found.size());
    for (ScannedEntry& se : found) order.push_back(&se);
    auto by_path = [](const ScannedEntry* a, const ScannedEntry* b) { return a->entry.path < b->entry.path; };
    if (!std::is_sorted(order.begin(), order.end(), by_path)) std::sort(order.begin(), order.end(), by_path);
    std::vector<ScannedEntry> out;
    out.reserve(order.size());
    for (ScannedEntry* se : order) out.push_back(std::move(*se));
    return out;
}

namespace {

// One entry's line of the stamp. tree_stamp() and stamp_tree() both write it here, so that they
// agree by construction.
struct StampFields {
    std::string_view path;
    EntryType type;
    const char* special;
    std::uint32_t mode, uid, gid;
    const FileStat& stat;  // zero but for files
    std::string_view target, user, group;
};

void append_stamp_line(std::string& out, const StampFields& f) {
    out += f.path;
    out += '\0';
    out += entry_type_name(f.type);
    out += f.special ? f.special : "";
    for (std::uint64_t v : {std::uint64_t{f.mode}, std::uint64_t{f.uid}, std::uint64_t{f.gid}, f.stat.size,
                            static_cast<std::uint64_t>(f.stat.mtime_ns),
                            static_cast<std::uint64_t>(f.stat.ctime_ns), f.stat.ino, f.stat.dev}) {
        char buf[24];
        buf[0] = ' ';
        auto r = std::to_chars(buf + 1, buf + sizeof buf, v);
        out.append(buf, r.ptr);
    }
    out += '\0';
    out += f.target;
    out += '\0';
    out += f.user;
    out += '\0';
    out += f.group;
    out += '\n';
}

// stamp_tree's walk: directories are tasks that any of the threads takes; each thread writes
// the lines of what it finds into a buffer of its own, and the lines are hashed at the end in
// path order, as tree_stamp() hashes a scan.
class StampWalk {
public:
    StampWalk(int root_fd, SpecialFiles special, unsigned threads)
        : root_fd_(root_fd), special_(special), threads_(threads), found_(threads) {}

    std::optional<TreeStamp> run() {
        tasks_.push_back(std::string());
        pending_ = 1;
        std::vector<std::thread> workers = start_threads(threads_ - 1, [this](unsigned i) { work(i + 1); });
        work(0);
        for (std::thread& w : workers) w.join();
        if (failed_) return std::nullopt;

        struct Line {
            std::string_view path, bytes;
        };
        std::vector<Line> lines;
        TreeStamp out;
        for (const Found& f : found_) {
            for (const Found::Line& l : f.lines) lines.push_back({l.bytes.substr(0, l.path_size), l.bytes});
            out.files += f.files;
            out.dirs += f.dirs;
            out.symlinks += f.symlinks;
            out.bytes += f.bytes;
        }
        std::sort(lines.begin(), lines.end(), [](const Line& a, const Line& b) { return a.path < b.path; });
        Sha256 h;
        for (const Line& l : lines) h.update(l.bytes);
        out.stamp = h.finish_hex();
        return out;
    }

private:
    // What one thread found: its lines, back to back in chunks that are never reallocated. One
    // growing buffer would copy all it holds each time it grew: a tenth of a re-sign's CPU.
    struct Found {
        struct Line {
            std::string_view bytes;
            std::size_t path_size;
        };
        static constexpr std::size_t kChunkSize = 256 * 1024;
        std::vector<std::unique_ptr<char[]>> chunks;
        char* chunk_at = nullptr;
        std::size_t chunk_left = 0;
        std::string scratch;  // the line being written
        std::vector<Line> lines;
        std::size_t files = 0, dirs = 0, symlinks = 0;
        std::uint64_t bytes = 0;

        void add_line(const StampFields& fields) {
            scratch.clear();
            append_stamp_line(scratch, fields);
            if (chunk_left < scratch.size()) {
                chunk_left = std::max(kChunkSize, scratch.size());
                chunks.push_back(std::make_unique_for_overwrite<char[]>(chunk_left));
                chunk_at = chunks.back().get();
            }
            std::memcpy(chunk_at, scratch.data(), scratch.size());
            lines.push_back({std::string_view(chunk_at, scratch.size()), fields.path.size()});
            chunk_at += scratch.size();
            chunk_left -= scratch.size();
        }
    };

    void work(unsigned thread) {
        Found& found = found_[thread];
        for (;;) {
            std::string prefix;  // of a directory to list: "" for the root, else "a/b"
            {
                std::unique_lock<std::mutex> lock(mutex_);
                ready_.wait(lock, [this] { return failed_ || pending_ == 0 || !tasks_.empty(); });
                if (failed_ || pending_ == 0) return;
                prefix = std::move(tasks_.front());
                tasks_.pop_front();
            }
            bool ok = false;
            try {
                ok = list(prefix, found);
            } catch (...) {  // out of memory: the walk fails (an exception would end the process)
            }
            std::lock_guard<std::mutex> lock(mutex_);
            if (!ok) failed_ = true;
            if (--pending_ == 0 || failed_) ready_.notify_all();
        }
    }

    // Adds the lines of a directory's children and queues its subdirectories. False where
    // scan_tree would fail.
    bool list(const std::string& prefix, Found& found) {
        // Queued directories are opened when their turn comes, not when found: a wide tree
        // would otherwise hold a descriptor per queued directory.
        UniqueFd dir(prefix.empty() ? ::fcntl(root_fd_, F_DUPFD_CLOEXEC, 0)
                                    : open_beneath(root_fd_, prefix, O_RDONLY | O_DIRECTORY));
        if (!dir) return false;
        std::vector<std::string> names;
        Status listed = for_each_entry(dir.get(), prefix, [&](const char* name, unsigned char) {
            if (prefix.empty() && name == kReservedDir) return Status::ok();
            names.emplace_back(name);
            return Status::ok();
        });
        if (!listed) return false;
        std::string path, target;
        for (const std::string& name : names) {
            if (!is_valid_utf8(name)) return false;
            path = prefix.empty() ? name : prefix + "/" + name;
            struct stat st;
            if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
            EntryType type = EntryType::file;
            const char* special = nullptr;
            auto mode = static_cast<std::uint32_t>(st.st_mode & 07777);
            FileStat stat;  // zero but for files, as in a scan
            target.clear();
            if (S_ISREG(st.st_mode)) {
                stat = file_stat(st);
                found.files++;
                found.bytes += stat.size;
            } else if (S_ISLNK(st.st_mode)) {
                type = EntryType::symlink;
                mode = 0777;
                target.resize(static_cast<std::size_t>(st.st_size) + 1);
                ssize_t len = ::readlinkat(dir.get(), name.c_str(), target.data(), target.size());
                if (len < 0 || static_cast<std::size_t>(len) >= target.size()) return false;
                target.resize(static_cast<std::size_t>(len));
                if (!is_valid_utf8(target)) return false;
                found.symlinks++;
            } else if (S_ISDIR(st.st_mode)) {
                type = EntryType::dir;
                found.dirs++;
                std::lock_guard<std::mutex> lock(mutex_);
                tasks_.push_back(path);
                ++pending_;
                ready_.notify_one();
            } else {
                if (special_ == SpecialFiles::skip) continue;
                if (special_ == SpecialFiles::refuse) return false;
                special = file_kind_name(st.st_mode);
                found.files++;
            }
            std::string user = user_name(st.st_uid), group = group_name(st.st_gid);
            found.add_line({path, type, special, mode, st.st_uid, st.st_gid, stat, target, user, group});
        }
        return true;
    }

    const int root_fd_;
    const SpecialFiles special_;
    const unsigned threads_;
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<std::string> tasks_;  // directories to list, by path
    std::size_t pending_ = 0;  // tasks queued or being listed
    bool failed_ = false;
    std::vector<Found> found_;  // one per thread
};

}  // namespace

std::string tree_stamp(const std::vector<ScannedEntry>& entries) {
    Sha256 h;
    std::string line;
    for (const ScannedEntry& se : entries) {
        const Entry& e = se.entry;
        line.clear();
        append_stamp_line(line, {e.path, e.type, se.special, e.mode, e.uid, e.gid, se.stat, e.target, e.user, e.group});
        h.update(line);
    }
    return h.finish_hex();
}

std::optional<TreeStamp> stamp_tree(int root_fd, SpecialFiles special, unsigned threads) {
    if (threads == 0) threads = default_thread_count();
    return StampWalk(root_fd, special, threads).run();
}

namespace {
template <typename Id, typename Lookup>
std::string cached_name(Id id, Lookup lookup) {
    // Trees mostly have one owner: the id this thread asked for last is answered without the
    // lock and the hash lookup (a walk asks for every entry).
    thread_local std::optional<std::pair<Id, std::string>> last;
    if (last && last->first == id) return last->second;
    static std::mutex mutex;
    static std::unordered_map<Id, std::string> cache;
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(id);
    std::string name = it != cache.end() ? it->second : cache.emplace(id, lookup(id)).first->second;
    last.emplace(id, name);
    return name;
}
}  // namespace

std::string user_name(std::uint32_t uid) {
    return cached_name(uid, [](std::uint32_t id) {
        struct passwd pw, *res = nullptr;
        char buf[4096];
        if (getpwuid_r(id, &pw, buf, sizeof buf, &res) == 0 && res) return std::string(res->pw_name);
        return std::string();
    });
}

std::string group_name(std::uint32_t gid) {
    return cached_name(gid, [](std::uint32_t id) {
        struct group gr, *res = nullptr;
        char buf[4096];
        if (getgrgid_r(id, &gr, buf, sizeof buf, &res) == 0 && res) return std::string(res->gr_name);
        return std::string();
    });
}

// Cache file format, one record per line:
//   <sha256> <size> <mtime_ns> <ctime_ns> <ino> <dev> <path length> <path>\n
// The explicit length keeps any byte in a path unambiguous.
StatCache StatCache::load(int dirfd, const std::string& name) {
    // Mapped, not read: only ssync replaces the file, always by rename, so the mapped bytes
    // never change or shrink under us.
    auto mapped = MappedFile::open(dirfd, name, 1ull << 30, name);
    if (!mapped) return StatCache();
    auto bytes = std::make_shared<const MappedFile>(std::move(mapped).value());
    std::string_view s = bytes->bytes();
    std::vector<Record> records;
    records.reserve(s.size() / 128);
    std::size_t pos = 0;
    auto field = [&](auto& value) {
        std::size_t sp = s.find(' ', pos);
        if (sp == std::string_view::npos) return false;
        auto r = std::from_chars(s.data() + pos, s.data() + sp, value);
        if (r.ec != std::errc() || r.ptr != s.data() + sp) return false;
        pos = sp + 1;
        return true;
    };
    while (pos < s.size()) {
        if (pos + 65 > s.size() || s[pos + 64] != ' ') return StatCache();
        Record r;
        r.sha256 = s.substr(pos, 64);
        pos += 65;
        std::size_t len = 0;
        if (!field(r.stat.size) || !field(r.stat.mtime_ns) || !field(r.stat.ctime_ns) ||
            !field(r.stat.ino) || !field(r.stat.dev) || !field(len)) {
            return StatCache();
        }
        if (len > s.size() - pos || pos + len >= s.size() || s[pos + len] != '\n') return StatCache();
        r.path = s.substr(pos, len);
        records.push_back(r);
        pos += len + 1;
    }
    auto by_path = [](const Record& a, const Record& b) { return a.path < b.path; };
    // format() writes in path order; a cache written otherwise is still usable.
    if (!std::is_sorted(records.begin(), records.end(), by_path)) {
        std::stable_sort(records.begin(), records.end(), by_path);
    }
    StatCache cache;
    cache.bytes_ = std::move(bytes);
    cache.records_ = std::move(records);
    return cache;
}

namespace {
template <typename T>
void append_field(std::string& out, T value) {
    char buf[24];
    buf[0] = ' ';
    auto r = std::to_chars(buf + 1, buf + sizeof buf, value);
    out.append(buf, r.ptr);
}

void append_record(std::string& out, const Entry& e, const FileStat& stat) {
    if (e.type != EntryType::file || e.sha256.size() != 64) return;
    out += e.sha256;
    append_field(out, stat.size);
    append_field(out, stat.mtime_ns);  // signed: a file may be dated before 1970
    append_field(out, stat.ctime_ns);
    append_field(out, stat.ino);
    append_field(out, stat.dev);
    append_field(out, e.path.size());
    out += ' ';
    out += e.path;
    out += '\n';
}
}  // namespace

std::string StatCache::format(const std::vector<ScannedEntry>& files) {
    std::string out;
    out.reserve(files.size() * 160);
    for (const ScannedEntry& se : files) {
        if (!se.special) append_record(out, se.entry, se.stat);
    }
    return out;
}

std::string StatCache::format(const std::vector<Entry>& entries, const std::vector<FileStat>& stats) {
    std::string out;
    out.reserve(entries.size() * 160);
    for (std::size_t i = 0; i < entries.size() && i < stats.size(); ++i) append_record(out, entries[i], stats[i]);
    return out;
}

const StatCache::Record* StatCache::find(std::string_view path) const {
    auto it = std::lower_bound(records_.begin(), records_.end(), path,
                               [](const Record& r, std::string_view p) { return r.path < p; });
    if (it == records_.end() || it->path != path) return nullptr;
    return &*it;
}

std::string_view StatCache::lookup(std::string_view path, const FileStat& stat) const {
    const Record* r = find(path);
    if (!r || !(r->stat == stat)) return {};
    return r->sha256;
}

}  // namespace ssync
