#include "ssync/install.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <memory>
#include <thread>
#include <mutex>
#include <unordered_set>

#include "ssync/audit.h"
#include "ssync/hash.h"
#include "ssync/parallel.h"
#include "ssync/publication.h"

namespace ssync {

// Staged content by digest: staging/objects/<its first two hex digits>/<digest>. In one flat
// directory, every create of a first sync (20,000) took that directory's lock, and the
// writer threads spun waiting for each other: 9.6% of a first sync's CPU in a perf profile
// (rwsem_spin_on_owner under openat), nothing measurable with 256 directories. ext4 makes
// inode allocation slow while holding that lock: without a journal it steps over every
// inode freed in the last minutes, one by one.
class StagedObjects {
public:
    StagedObjects(FileSystem& fs, UniqueFd root, std::string display)
        : fs_(&fs), root_(std::move(root)), display_(std::move(display)) {}

    int root() const { return root_.get(); }
    const std::string& display() const { return display_; }

    // Whether `name` could be one of the 256 directories ("00" to "ff").
    static bool is_fan_name(std::string_view name) { return name.size() == 2 && layout::fan_index(name) >= 0; }

    // Where `digest`'s staged content is, for messages.
    std::string display_of(std::string_view digest) const {
        return display_ + "/" + std::string(digest.substr(0, 2)) + "/" + std::string(digest);
    }

    // The directory for `digest` (or for a fan name), made and opened (never through a
    // symlink) on first use. Not thread-safe: called before the downloads start and after.
    Result<int> dir_for(std::string_view digest) {
        int index = layout::fan_index(digest);
        if (index < 0) return Status(Code::internal, display_ + ": not a digest: " + std::string(digest));
        UniqueFd& dir = dirs_[static_cast<std::size_t>(index)];
        if (!dir) {
            std::string name(digest.substr(0, 2));
            if (fs_->mkdirat(root_.get(), name.c_str(), 0700) != 0 && errno != EEXIST) {
                return errno_status(display_ + "/" + name);
            }
            SSYNC_ASSIGN_OR_RETURN(dir, open_dir_beneath(root_.get(), name));
        }
        return dir.get();
    }

private:
    FileSystem* fs_;
    UniqueFd root_;
    std::string display_;
    std::array<UniqueFd, 256> dirs_;
};

namespace {

constexpr const char* kStatCache = "stat-cache";
constexpr const char* kObjectsDir = "objects";
constexpr const char* kTreeStamp = "tree-stamp";
// Staged bytes between two early writebacks: large enough that the kernel writes big batches,
// small enough that little is left for the flush before the switch.
constexpr std::uint64_t kEarlyWritebackStep = 64 << 20;

Result<StagedObjects> open_staged_objects(FileSystem& fs, int staging_fd, const std::string& staging_display) {
    SSYNC_ASSIGN_OR_RETURN(UniqueFd root, open_dir_beneath(staging_fd, kObjectsDir));
    return StagedObjects(fs, std::move(root), join_path(staging_display, kObjectsDir));
}

// The file system ran full (or over a quota).
bool disk_full(const Status& s) { return s.os_error() == ENOSPC || s.os_error() == EDQUOT; }

bool below(const std::string& path, const std::string& dir) {
    return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

std::string leaf_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Directory descriptors by relative path, opened without following symlinks. Consecutive
// entries of a sorted manifest mostly share a parent, so the last few are kept.
class DirCache {
public:
    DirCache(int root) : root_(root) {}
    Result<int> get(std::string_view dir) {
        if (dir.empty()) return root_;
        for (auto& [path, fd] : open_)
            if (path == dir) return fd.get();
        SSYNC_ASSIGN_OR_RETURN(UniqueFd fd, open_dir_beneath(root_, dir));
        if (open_.size() >= 16) open_.erase(open_.begin());
        open_.emplace_back(std::string(dir), std::move(fd));
        return open_.back().second.get();
    }
    void forget() { open_.clear(); }

private:
    int root_;
    std::vector<std::pair<std::string, UniqueFd>> open_;
};

// Copies src_fd (`from` in messages) into a new file (`to`), hashing on the way. Not
// fsynced: stage() and apply() sync the file system once.
Result<FileDigest> copy_hashed(FileSystem& fs, int src_fd, const std::string& from, int dir_fd,
                               const std::string& name, const std::string& to) {
    UniqueFd out(fs.openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600));
    if (!out) return errno_status(to);
    SSYNC_ASSIGN_OR_RETURN(FileDigest d, hash_fd(src_fd, from, [&](const char* p, std::size_t n) {
        return write_all(fs, out.get(), std::string_view(p, n), to);
    }));
    return d;
}

// Writes staged data back to disk while downloads continue, so that the flush before the
// switch has little left: syncfs on a thread of its own each time another `step` bytes have
// been staged. syncfs rather than a sync_file_range per file: the kernel then submits the
// writes of many files together, instead of one small batch (and one notification of a
// virtual disk) per file.
class EarlyWriteback {
public:
    EarlyWriteback(int fd, std::string display, std::uint64_t step)
        : fd_(fd), display_(std::move(display)), step_(step) {
        // Without a thread (none could be started) the final syncfs does all the writing back.
        try {
            thread_ = std::thread([this] { run(); });
        } catch (...) {
        }
    }
    ~EarlyWriteback() { stop(); }

    // `bytes` more were staged; any thread.
    void staged(std::uint64_t bytes) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            unflushed_ += bytes;
            if (unflushed_ < step_) return;
            unflushed_ = 0;
            wanted_ = true;
        }
        cv_.notify_one();
    }

    // Stops the thread; the first syncfs error, if any.
    Status finish() {
        stop();
        return status_;
    }

private:
    void stop() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        cv_.notify_one();
        if (thread_.joinable()) thread_.join();
    }

    void run() {
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            cv_.wait(lock, [&] { return stopping_ || wanted_; });
            if (stopping_) return;
            wanted_ = false;
            lock.unlock();
            int rc = ::syncfs(fd_);
            int err = errno;
            lock.lock();
            if (rc != 0 && status_.is_ok()) {
                try {
                    status_ = errno_status(display_ + ": syncfs", err);
                } catch (...) {  // out of memory: the final syncfs reports the failure
                }
            }
        }
    }

    int fd_;
    std::string display_;
    std::uint64_t step_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::uint64_t unflushed_ = 0;
    bool wanted_ = false, stopping_ = false;
    Status status_;
    std::thread thread_;
};

}  // namespace

Result<Installer> Installer::open(const std::string& dest, const InstallOptions& options) {
    Installer in;
    in.fs_ = options.fs ? options.fs : &system_fs();
    in.options_ = options;
    in.dest_path_ = dest;
    // A DEST given as a symlink means the directory it names, in both modes: --atomic-tree
    // swaps beside that directory, not beside the link (which it would replace by a real
    // directory, leaving the link's old target with the stale tree). The user's own path may
    // be a link; nothing below it is followed.
    std::string resolved = dest;
    struct stat lst;
    if (::lstat(dest.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
        std::unique_ptr<char, decltype(&std::free)> real(::realpath(dest.c_str(), nullptr), &std::free);
        if (!real) return errno_status(dest + ": symlink to");
        resolved = real.get();
    }
    auto [parent, name] = split_path(resolved);
    in.dest_name_ = name;
    if (in.dest_name_.empty() || in.dest_name_ == "." || in.dest_name_ == ".." || in.dest_name_ == "/") {
        return Status(Code::usage, dest + ": name the destination directory itself (not ., .. or /)");
    }
    SSYNC_ASSIGN_OR_RETURN(in.parent_, open_dir_trusted(parent));
    if (options.source_dir_fd >= 0) {
        // Checked before DEST is created: a DEST inside the publication would change it.
        switch (dir_overlap(resolved, options.source_dir_fd)) {
        case Overlap::inside:
            return Status(Code::usage, dest + ": is the publication it would be synced from, or inside it; "
                                              "choose another destination");
        case Overlap::holds:
            return Status(Code::usage, dest + ": holds the publication it would be synced from (syncing would "
                                              "remove it as extraneous); choose another destination");
        case Overlap::apart:
            break;
        }
    }
    if (::mkdir(resolved.c_str(), 0755) != 0 && errno != EEXIST) return errno_status(dest);
    SSYNC_ASSIGN_OR_RETURN(in.dest_, open_dir_trusted(resolved));
    std::string meta(kReservedDir);
    if (in.fs_->mkdirat(in.dest_.get(), meta.c_str(), 0755) != 0 && errno != EEXIST) {
        return errno_status(join_path(dest, meta));
    }
    auto m = open_dir_beneath(in.dest_.get(), meta);
    if (!m) return m.status().with_context(dest);
    in.meta_ = std::move(m).value();
    SSYNC_RETURN_IF_ERROR(make_dirs(*in.fs_, in.meta_.get(), std::string(kStagingDir) + "/" + kObjectsDir, 0700,
                                    in.staging_display()));
    SSYNC_ASSIGN_OR_RETURN(in.staging_, open_dir_beneath(in.meta_.get(), kStagingDir));
    return in;
}

Result<Plan> Installer::plan(const Manifest& manifest) {
    ScanOptions scan_options;
    scan_options.special = SpecialFiles::include;
    SSYNC_ASSIGN_OR_RETURN(std::vector<ScannedEntry> actual, scan_tree(dest_.get(), scan_options));

    // What content DEST already holds: from the stat cache where a file is unchanged since we
    // wrote it, else by hashing it (only files whose size some manifest file has).
    StatCache cache = options_.verify_all ? StatCache() : StatCache::load(meta_.get(), kStatCache);
    std::unordered_set<std::uint64_t> wanted_sizes;
    for (const Entry& e : manifest.entries)
        if (e.type == EntryType::file) wanted_sizes.insert(e.size);
    std::vector<std::size_t> to_hash;
    known_hashes_.clear();
    for (std::size_t i = 0; i < actual.size(); ++i) {
        const ScannedEntry& a = actual[i];
        if (a.entry.type != EntryType::file || a.special) continue;
        if (std::string_view h = cache.lookup(a.entry.path, a.stat); !h.empty()) {
            known_hashes_[a.entry.path] = std::string(h);
        } else if (wanted_sizes.count(a.entry.size)) {
            to_hash.push_back(i);
        }
    }
    std::mutex mutex;
    SSYNC_RETURN_IF_ERROR(parallel_for(to_hash.size(), options_.threads, [&](std::size_t k) -> Status {
        const ScannedEntry& a = actual[to_hash[k]];
        UniqueFd fd(open_beneath(dest_.get(), a.entry.path, O_RDONLY));
        if (!fd) return Status::ok();  // unreadable: treated as holding nothing useful
        auto d = hash_fd(fd.get(), a.entry.path);
        if (!d) return Status::ok();
        std::lock_guard<std::mutex> lock(mutex);
        known_hashes_[a.entry.path] = d->sha256;
        return Status::ok();
    }));
    std::unordered_map<std::string, std::string> local_by_hash;
    for (const auto& [path, hash] : known_hashes_) {
        auto it = local_by_hash.find(hash);
        if (it == local_by_hash.end() || path < it->second) local_by_hash[hash] = path;
    }

    Plan plan;
    plan.files_hashed = to_hash.size();
    std::unordered_set<std::string> scheduled;
    auto need_content = [&](const Entry& e) {
        if (!scheduled.insert(e.sha256).second) return;
        auto it = local_by_hash.find(e.sha256);
        if (it != local_by_hash.end()) {
            plan.local_source[e.sha256] = it->second;
        } else {
            plan.local_source[e.sha256] = "";
            plan.download.push_back(&e);
            plan.bytes_to_download += e.size;
        }
    };
    auto metadata_differs = [&](const Entry& e, const ScannedEntry& a) {
        if (e.type != EntryType::symlink && a.entry.mode != e.mode) return true;
        if (options_.owners == OwnerPolicy::apply &&
            (a.entry.uid != expected_uid(e) || a.entry.gid != expected_gid(e))) {
            return true;
        }
        return e.type == EntryType::file && e.mtime && a.entry.mtime != e.mtime;
    };

    std::string skip_below;
    const auto& want = manifest.entries;
    std::size_t i = 0, j = 0;
    while (i < want.size() || j < actual.size()) {
        int cmp = i == want.size() ? 1 : j == actual.size() ? -1 : want[i].path.compare(actual[j].entry.path);
        if (cmp < 0) {
            const Entry& e = want[i++];
            plan.create.push_back(&e);
            plan.added++;
            if (e.type == EntryType::file) need_content(e);
            continue;
        }
        if (cmp > 0) {
            const ScannedEntry& a = actual[j++];
            if (!skip_below.empty() && below(a.entry.path, skip_below)) continue;
            if (options_.extras == ExtraPolicy::remove) {
                plan.remove.push_back(a.entry.path);
                plan.removed++;
            }
            if (a.entry.type == EntryType::dir) skip_below = a.entry.path;
            continue;
        }
        const Entry& e = want[i++];
        const ScannedEntry& a = actual[j++];
        if (a.special || a.entry.type != e.type) {
            plan.retype.push_back(e.path);
            plan.create.push_back(&e);
            plan.changed++;
            if (e.type == EntryType::file) need_content(e);
            if (a.entry.type == EntryType::dir) skip_below = e.path;
            continue;
        }
        bool content_differs = false;
        if (e.type == EntryType::file) {
            auto it = known_hashes_.find(e.path);
            content_differs = it == known_hashes_.end() || it->second != e.sha256;
        } else if (e.type == EntryType::symlink) {
            content_differs = a.entry.target != e.target;
        }
        if (content_differs) {
            plan.create.push_back(&e);
            plan.changed++;
            if (e.type == EntryType::file) need_content(e);
        } else if (metadata_differs(e, a)) {
            plan.metadata.push_back(&e);
            plan.changed++;
        }
    }
    planned_scan_ = std::move(actual);
    return plan;
}

Status Installer::stage(const Plan& plan, Transport& transport, ContentLayout layout,
                        const DownloadOptions& download_options, const PackIndex* packs, StageReport* report) {
    Status s = fill_staging(plan, transport, layout, download_options, packs, report);
    if (!disk_full(s)) return s;
    // Kept, the staged part of the release would go on holding the space it needs whole, on a
    // file system that services and logs often share; the next run fetches it again.
    Status cleaned = clean_staging();
    staging_kept_ = !cleaned;
    return Status(s.code(), s.message() + (cleaned ? "; what this run staged was removed to give the space back"
                                                   : "; removing what this run staged failed too: " + cleaned.message()),
                  s.os_error());
}

Status Installer::fill_staging(const Plan& plan, Transport& transport, ContentLayout layout,
                               const DownloadOptions& download_options, const PackIndex* packs,
                               StageReport* report) {
    SSYNC_ASSIGN_OR_RETURN(StagedObjects objects, open_staged_objects(*fs_, staging_.get(), staging_display()));

    // Half-prepared entries of an interrupted run go; its verified content may stay.
    SSYNC_ASSIGN_OR_RETURN(std::vector<DirChild> leftovers, list_dir(staging_.get(), staging_display()));
    for (const DirChild& c : leftovers) {
        if (c.name != kObjectsDir) SSYNC_RETURN_IF_ERROR(remove_tree(*fs_, staging_.get(), c.name, c.name));
    }
    // Content an interrupted run left behind is kept only if it still verifies; anything else
    // there (a file of an older layout, a planted FIFO or symlink) is removed.
    std::unordered_set<std::string> staged;
    SSYNC_ASSIGN_OR_RETURN(std::vector<DirChild> fans, list_dir(objects.root(), objects.display()));
    for (const DirChild& fan : fans) {
        if (!StagedObjects::is_fan_name(fan.name) || (fan.type != DT_DIR && fan.type != DT_UNKNOWN)) {
            SSYNC_RETURN_IF_ERROR(remove_tree(*fs_, objects.root(), fan.name, fan.name));
            continue;
        }
        SSYNC_ASSIGN_OR_RETURN(int dir, objects.dir_for(fan.name));
        SSYNC_ASSIGN_OR_RETURN(std::vector<DirChild> listing, list_dir(dir, objects.display() + "/" + fan.name));
        for (const DirChild& c : listing) {
            bool keep = false;
            if (c.name.compare(0, 2, fan.name) == 0 && plan.local_source.count(c.name)) {
                // Not a regular file (a planted FIFO would block a plain open forever): removed.
                auto fd = open_regular_file(dir, c.name, O_NOFOLLOW, UINT64_MAX, c.name);
                if (fd) {
                    auto d = hash_fd(fd->get(), c.name);
                    keep = d && d->sha256 == c.name;
                }
            }
            if (keep) staged.insert(c.name);
            else SSYNC_RETURN_IF_ERROR(remove_tree(*fs_, dir, c.name, c.name));
        }
    }

    // Content DEST already has under another path (renames, copies) is copied, not fetched.
    std::vector<const Entry*> downloads;
    for (const Entry* e : plan.download)
        if (!staged.count(e->sha256)) downloads.push_back(e);
    std::unordered_map<std::string, const Entry*> entry_by_hash;
    for (const Entry* e : plan.create)
        if (e->type == EntryType::file) entry_by_hash.emplace(e->sha256, e);
    for (const auto& [hash, source] : plan.local_source) {
        if (source.empty() || staged.count(hash)) continue;
        SSYNC_ASSIGN_OR_RETURN(int dir, objects.dir_for(hash));
        UniqueFd src(open_beneath(dest_.get(), source, O_RDONLY));
        if (src) {
            auto d = copy_hashed(*fs_, src.get(), join_path(dest_path_, source), dir, hash, objects.display_of(hash));
            if (d && d->sha256 == hash) {
                staged.insert(hash);
                continue;
            }
            // A full disk fails the fetch just the same: said now, before any download.
            if (!d && disk_full(d.status())) return d.status();
        }
        // Changed or gone since the plan (or the copy failed): fetch it instead.
        fs_->unlinkat(dir, hash.c_str(), 0);
        downloads.push_back(entry_by_hash.at(hash));
    }

    // A downloaded content that one entry alone takes (the common case) gets that entry's
    // metadata while the download worker still has it open, so that apply() only renames it;
    // and staged data is written back while downloads continue, so that the syncfs below finds
    // little left. Both overlap the downloads still in flight.
    std::unordered_map<std::string, const Entry*> sole_user;
    {
        std::unordered_map<std::string, int> uses;
        for (const Entry* e : plan.create)
            if (e->type == EntryType::file) uses[e->sha256]++;
        for (const Entry* e : plan.create)
            if (e->type == EntryType::file && uses[e->sha256] == 1) sole_user.emplace(e->sha256, e);
    }
    prepared_.clear();
    std::mutex prepared_mutex;
    DownloadOptions options = download_options;
    options.fs = fs_;
    EarlyWriteback writeback(objects.root(), objects.display(), kEarlyWritebackStep);
    options.on_verified = [&](const Download& d, int fd) -> Status {
        auto it = sole_user.find(d.file_name);
        if (it != sole_user.end()) {
            SSYNC_RETURN_IF_ERROR(set_metadata_fd(fd, *it->second, join_path(dest_path_, quote_path(it->second->path))));
            std::lock_guard<std::mutex> lock(prepared_mutex);
            prepared_.insert(d.file_name);
        }
        writeback.staged(d.size);
        return Status::ok();
    };

    std::vector<Download> batch;
    batch.reserve(downloads.size());
    for (const Entry* e : downloads) {
        Download d;
        d.path = layout == ContentLayout::objects ? layout::object_path(e->sha256) : e->path;
        d.size = e->size;
        d.sha256 = e->sha256;
        SSYNC_ASSIGN_OR_RETURN(d.dir_fd, objects.dir_for(e->sha256));
        d.file_name = e->sha256;
        d.display = objects.display_of(e->sha256);
        batch.push_back(std::move(d));
    }
    if (packs && !batch.empty()) {
        SSYNC_ASSIGN_OR_RETURN(batch, fetch_from_packs(transport, *packs, std::move(batch), options,
                                                       report ? &report->packs : nullptr));
    }
    if (!batch.empty()) SSYNC_RETURN_IF_ERROR(transport.download_all(batch, options));
    // Staged content must be durable before any of it is renamed into DEST. An early writeback
    // may still be running: this syncfs waits for its writes as well, in parallel rather than
    // after it (each ends with a cache flush of the disk).
    auto flush_start = std::chrono::steady_clock::now();
    if (::syncfs(objects.root()) != 0) return errno_status(objects.display() + ": syncfs");
    SSYNC_RETURN_IF_ERROR(writeback.finish());
    if (report) {
        report->flush_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - flush_start).count();
    }
    return Status::ok();
}

Status Installer::set_metadata_fd(int fd, const Entry& e, const std::string& display) {
    // chown first: it clears setuid/setgid bits, which fchmod then sets.
    if (options_.owners == OwnerPolicy::apply) {
        if (::fchown(fd, expected_uid(e), expected_gid(e)) != 0) return errno_status(display + ": chown");
    }
    if (e.type == EntryType::file && e.mtime) {
        struct timespec times[2];
        times[0].tv_sec = *e.mtime;
        times[0].tv_nsec = 0;
        times[1] = times[0];
        if (::futimens(fd, times) != 0) return errno_status(display + ": set mtime");
    }
    if (e.type != EntryType::dir && fs_->fchmod(fd, e.mode) != 0) return errno_status(display + ": chmod");
    return Status::ok();
}

Result<int> Installer::prepare_file(const Entry& e, StagedObjects& objects, std::unordered_map<std::string, int>& uses,
                                    std::string& name, const std::string& what) {
    SSYNC_ASSIGN_OR_RETURN(int objects_fd, objects.dir_for(e.sha256));
    int dir = staging_.get();
    int& remaining = uses[e.sha256];
    if (remaining > 1) {
        UniqueFd src(fs_->openat(objects_fd, e.sha256.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0));
        if (!src) return errno_status(what + ": staged content");
        SSYNC_ASSIGN_OR_RETURN(FileDigest d, copy_hashed(*fs_, src.get(), what, staging_.get(), name, what));
        if (d.sha256 != e.sha256) return Status(Code::io, what + ": staged content changed");
    } else {
        dir = objects_fd;
        name = e.sha256;
        if (prepared_.count(e.sha256)) {
            // Its metadata was set when it was downloaded (stage()).
            remaining--;
            return dir;
        }
    }
    remaining--;
    UniqueFd fd(fs_->openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0));
    if (!fd) return errno_status(what + ": staged content");
    SSYNC_RETURN_IF_ERROR(set_metadata_fd(fd.get(), e, what));
    return dir;
}

Status Installer::apply(const Manifest& manifest, const Plan& plan) {
    SSYNC_ASSIGN_OR_RETURN(StagedObjects objects, open_staged_objects(*fs_, staging_.get(), staging_display()));
    DirCache dirs(dest_.get());
    auto display = [&](const std::string& path) { return join_path(dest_path_, quote_path(path)); };

    // Not as root, a directory whose mode has no owner write bit (a read-only directory of the
    // release, 0555) refuses the renames into it: ours, so made writable for the switch and
    // given its mode back in step 5. Without this, such an update failed half-applied on every
    // run. (Root is not held back by modes.)
    std::map<std::string, mode_t> unlocked;  // directory path -> its mode before
    const bool modes_bind = ::geteuid() != 0;
    auto parent_for_change = [&](std::string_view dir) -> Result<int> {
        SSYNC_ASSIGN_OR_RETURN(int fd, dirs.get(dir));
        if (!modes_bind || unlocked.count(std::string(dir))) return fd;
        struct stat st;
        if (::fstat(fd, &st) != 0) return errno_status(display(std::string(dir)));
        if ((st.st_mode & S_IRWXU) == S_IRWXU || st.st_uid != ::geteuid()) return fd;
        if (fs_->fchmod(fd, (st.st_mode & 07777) | S_IRWXU) != 0) return errno_status(display(std::string(dir)) + ": chmod");
        unlocked.emplace(std::string(dir), st.st_mode & 07777);
        return fd;
    };

    // 1. Entries of the wrong type go first (a file where a directory must be, and so on).
    for (const std::string& path : plan.retype) {
        SSYNC_ASSIGN_OR_RETURN(int parent, parent_for_change(parent_path(path)));
        SSYNC_RETURN_IF_ERROR(remove_tree(*fs_, parent, leaf_of(path), display(path)));
    }
    dirs.forget();

    // How often each staged content is still to be used: the last use may take the staged
    // file itself, earlier ones take copies.
    std::unordered_map<std::string, int> uses;
    for (const Entry* e : plan.create)
        if (e->type == EntryType::file) uses[e->sha256]++;

    // 2. Create and replace, parents before children (the manifest is sorted).
    std::uint64_t counter = 0;
    for (const Entry* e : plan.create) {
        std::string parent_dir(parent_path(e->path));
        SSYNC_ASSIGN_OR_RETURN(int parent, parent_for_change(parent_dir));
        std::string leaf = leaf_of(e->path);
        std::string what = display(e->path);
        if (e->type == EntryType::dir) {
            // Writable while it is being filled; its own mode is set in step 5.
            if (fs_->mkdirat(parent, leaf.c_str(), 0700) != 0 && errno != EEXIST) return errno_status(what);
            UniqueFd fd(fs_->openat(parent, leaf.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0));
            if (!fd) return errno_status(what);
            SSYNC_RETURN_IF_ERROR(set_metadata_fd(fd.get(), *e, what));
            continue;
        }
        // The new version is prepared beside DEST's file system root in staging (metadata
        // included), then switched in by one rename. The last use of a staged content is
        // renamed itself; earlier uses take copies.
        int from_dir = staging_.get();
        std::string from = "in-" + std::to_string(counter++);
        if (e->type == EntryType::symlink) {
            if (fs_->symlinkat(e->target.c_str(), staging_.get(), from.c_str()) != 0) return errno_status(what);
            if (options_.owners == OwnerPolicy::apply &&
                fs_->fchownat(staging_.get(), from.c_str(), expected_uid(*e), expected_gid(*e), AT_SYMLINK_NOFOLLOW) != 0) {
                int err = errno;
                fs_->unlinkat(staging_.get(), from.c_str(), 0);
                return errno_status(what + ": chown", err);
            }
        } else {
            SSYNC_ASSIGN_OR_RETURN(from_dir, prepare_file(*e, objects, uses, from, what));
        }
        // The switch for this path: atomic, and never through a symlink (parent was opened
        // with O_NOFOLLOW all the way down; a symlink at `leaf` itself is replaced, not followed).
        if (fs_->renameat2(from_dir, from.c_str(), parent, leaf.c_str(), 0) != 0) {
            int err = errno;
            if (from_dir == staging_.get()) fs_->unlinkat(staging_.get(), from.c_str(), 0);
            return errno_status(what, err);
        }
    }

    // 3. Metadata of entries whose content is already right.
    for (const Entry* e : plan.metadata) {
        std::string what = display(e->path);
        if (e->type == EntryType::symlink) {
            SSYNC_ASSIGN_OR_RETURN(int parent, dirs.get(parent_path(e->path)));
            if (options_.owners == OwnerPolicy::apply &&
                fs_->fchownat(parent, leaf_of(e->path).c_str(), expected_uid(*e), expected_gid(*e), AT_SYMLINK_NOFOLLOW) != 0) {
                return errno_status(what + ": chown");
            }
            continue;
        }
        UniqueFd fd(e->type == EntryType::dir ? [&]() -> int {
            auto d = open_dir_beneath(dest_.get(), e->path);
            return d ? std::move(d).value().release() : -1;
        }() : open_beneath(dest_.get(), e->path, O_RDONLY));
        if (!fd) return errno_status(what);
        SSYNC_RETURN_IF_ERROR(set_metadata_fd(fd.get(), *e, what));
        if (e->type == EntryType::dir && fs_->fchmod(fd.get(), e->mode) != 0) return errno_status(what + ": chmod");
    }

    // 4. Extras, deepest first.
    for (auto it = plan.remove.rbegin(); it != plan.remove.rend(); ++it) {
        SSYNC_ASSIGN_OR_RETURN(int parent, parent_for_change(parent_path(*it)));
        SSYNC_RETURN_IF_ERROR(remove_tree(*fs_, parent, leaf_of(*it), display(*it)));
    }

    // 5. Directory modes last, deepest first, so that a read-only directory is filled first.
    dirs.forget();
    for (auto it = plan.create.rbegin(); it != plan.create.rend(); ++it) {
        const Entry* e = *it;
        if (e->type != EntryType::dir) continue;
        SSYNC_ASSIGN_OR_RETURN(UniqueFd fd, open_dir_beneath(dest_.get(), e->path));
        if (fs_->fchmod(fd.get(), e->mode) != 0) return errno_status(display(e->path) + ": chmod");
    }
    // Directories made writable above get the release's mode (or, for DEST itself and
    // directories the release does not list, their own) back; deepest first.
    for (auto it = unlocked.rbegin(); it != unlocked.rend(); ++it) {
        const auto& [path, before] = *it;
        const Entry* e = path.empty() ? nullptr : manifest.find(path);
        bool listed = e && e->type == EntryType::dir;
        auto fd = dirs.get(path);
        if (!fd && !listed && !path.empty()) continue;  // an extra directory, removed since
        if (!fd) return fd.status();
        if (fs_->fchmod(*fd, listed ? e->mode : before) != 0) return errno_status(display(path) + ": chmod");
    }
    if (::syncfs(dest_.get()) != 0) return errno_status(dest_path_ + ": syncfs");
    return Status::ok();
}

Status Installer::prepare_record(const Manifest& manifest) {
    std::string meta_display = join_path(dest_path_, ".ssync");
    struct stat st;
    if (::fstatat(meta_.get(), layout::kReleases, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
        fs_->unlinkat(meta_.get(), layout::kReleases, 0) != 0) {
        return errno_status(meta_display + "/" + layout::kReleases);
    }
    std::string release = layout::release_dir(manifest.serial);
    return make_dirs(*fs_, meta_.get(), release, 0755, meta_display + "/" + release);
}

Status Installer::record(const Manifest& manifest, const std::string& manifest_bytes,
                         const std::string& signature) {
    SSYNC_RETURN_IF_ERROR(record_into(dest_.get(), meta_.get(), dest_path_, manifest, manifest_bytes, signature));
    return clean_staging();
}

Status Installer::record_into(int tree_fd, int tree_meta_fd, const std::string& display, const Manifest& manifest,
                              const std::string& manifest_bytes, const std::string& signature) {
    std::string meta_display = join_path(display, ".ssync");
    std::string release = layout::release_dir(manifest.serial);
    SSYNC_RETURN_IF_ERROR(make_dirs(*fs_, tree_meta_fd, release, 0755, meta_display + "/" + release));
    SSYNC_ASSIGN_OR_RETURN(UniqueFd release_fd, open_dir_beneath(tree_meta_fd, release));
    SSYNC_RETURN_IF_ERROR(write_file_atomic(*fs_, release_fd.get(), layout::kManifest, manifest_bytes, 0644,
                                            meta_display + "/" + release + "/" + layout::kManifest));
    SSYNC_RETURN_IF_ERROR(write_file_atomic(*fs_, release_fd.get(), layout::kSignature, signature, 0644,
                                            meta_display + "/" + release + "/" + layout::kSignature));
    SSYNC_RETURN_IF_ERROR(write_file_atomic(*fs_, tree_meta_fd, layout::kLatest,
                                            std::to_string(manifest.serial) + "\n", 0644, meta_display + "/latest"));
    SSYNC_RETURN_IF_ERROR(write_file_atomic(*fs_, tree_meta_fd, layout::kSignature, signature, 0644,
                                            meta_display + "/" + layout::kSignature));
    SSYNC_RETURN_IF_ERROR(write_file_atomic(*fs_, tree_meta_fd, layout::kManifest, manifest_bytes, 0644,
                                            meta_display + "/" + layout::kManifest));
    // Older releases' manifests are no longer served: `latest` names the current one, and a
    // downstream mirror that read the old `latest` a moment ago retries.
    if (auto releases = open_dir_beneath(tree_meta_fd, layout::kReleases)) {
        if (auto listing = list_dir(releases->get(), meta_display + "/releases")) {
            for (const DirChild& c : *listing) {
                if (c.name != std::to_string(manifest.serial)) (void)remove_tree(*fs_, releases->get(), c.name, c.name);
            }
        }
    }

    // The stat cache lets the next run trust what it finds unchanged without re-hashing.
    ScanOptions scan_options;
    scan_options.special = SpecialFiles::skip;
    if (auto actual = scan_tree(tree_fd, scan_options)) {
        for (ScannedEntry& a : *actual) {
            if (a.entry.type != EntryType::file) continue;
            const Entry* e = manifest.find(a.entry.path);
            if (e && e->type == EntryType::file && e->size == a.entry.size) a.entry.sha256 = e->sha256;
        }
        write_stat_cache_and_stamp(tree_meta_fd, meta_display, *actual, manifest_bytes);
    }
    return Status::ok();
}

void Installer::refresh_record(const std::string& manifest_bytes) {
    // The plan's own scan and the digests it verified, not a new scan: each file's stat was
    // taken before it was hashed, so a file changed since then will not match its record.
    std::vector<ScannedEntry> scanned;
    scanned.reserve(planned_scan_.size());
    for (ScannedEntry& a : planned_scan_) {
        if (a.special) continue;  // the stamp is over the tree without special files
        if (a.entry.type == EntryType::file) {
            auto it = known_hashes_.find(a.entry.path);
            if (it != known_hashes_.end()) a.entry.sha256 = it->second;
        }
        scanned.push_back(std::move(a));
    }
    planned_scan_.clear();
    write_stat_cache_and_stamp(meta_.get(), join_path(dest_path_, ".ssync"), scanned, manifest_bytes);
}

// Only caches: a failure to write them costs the next run a full plan, nothing more.
void Installer::write_stat_cache_and_stamp(int tree_meta_fd, const std::string& meta_display,
                                           const std::vector<ScannedEntry>& scanned,
                                           const std::string& manifest_bytes) {
    (void)write_file_atomic(*fs_, tree_meta_fd, kStatCache, StatCache::format(scanned), 0600, kStatCache);
    (void)write_file_atomic(*fs_, tree_meta_fd, kTreeStamp,
                            sha256_hex(manifest_bytes) + " " + stamp_with_policy(scanned) + "\n", 0644,
                            meta_display + "/" + kTreeStamp);
}

bool Installer::unchanged_since_record(const std::string& manifest_sha256) {
    auto recorded = read_file_bounded(meta_.get(), kTreeStamp, 256, kTreeStamp);
    if (!recorded || recorded->size() != 64 + 1 + 64 + 1 || recorded->compare(0, 64, manifest_sha256) != 0) {
        return false;
    }
    // The copy of the manifest that downstream mirrors read must be intact too. Hashed as it
    // is read through one small buffer: megabytes of fresh memory cost more than the hashing.
    auto kept = open_regular_file(meta_.get(), layout::kManifest, O_NOFOLLOW, UINT64_MAX, layout::kManifest);
    if (!kept) return false;
    auto digest = hash_fd(kept->get(), layout::kManifest);
    if (!digest || digest->sha256 != manifest_sha256) return false;
    ScanOptions scan_options;
    scan_options.special = SpecialFiles::skip;
    auto actual = scan_tree(dest_.get(), scan_options);
    return actual && recorded->compare(65, 64, stamp_with_policy(*actual)) == 0;
}

// A stamp recorded under other options (extras kept, owners not set) says nothing about
// whether this run's options are satisfied, so the options are part of it.
std::string Installer::stamp_with_policy(const std::vector<ScannedEntry>& actual) const {
    std::string policy = options_.extras == ExtraPolicy::keep ? "extras:keep" : "extras:remove";
    policy += options_.owners == OwnerPolicy::apply ? " owners:apply " : " owners:skip ";
    return sha256_hex(policy + tree_stamp(actual));
}

Status Installer::apply_whole_tree(const Manifest& manifest, const Plan& plan, const std::string& manifest_bytes,
                                   const std::string& signature) {
    const std::string next_name = "." + dest_name_ + ".ssync-next";
    const std::string next_display = join_path(dest_path_, "../" + next_name);
    // A next tree left by a run that died (before or after its swap) is not current: remove it.
    SSYNC_RETURN_IF_ERROR(remove_tree(*fs_, parent_.get(), next_name, next_display));
    if (fs_->mkdirat(parent_.get(), next_name.c_str(), 0700) != 0) return errno_status(next_display);
    SSYNC_ASSIGN_OR_RETURN(UniqueFd next, open_dir_beneath(parent_.get(), next_name));
    SSYNC_ASSIGN_OR_RETURN(StagedObjects objects, open_staged_objects(*fs_, staging_.get(), staging_display()));
    auto display = [&](const std::string& path) { return join_path(dest_path_, quote_path(path)); };

    std::unordered_set<std::string_view> fresh;  // content or metadata not as in DEST
    for (const Entry* e : plan.create) fresh.insert(e->path);
    for (const Entry* e : plan.metadata) fresh.insert(e->path);
    std::unordered_map<std::string, int> uses;
    for (const Entry* e : plan.create)
        if (e->type == EntryType::file) uses[e->sha256]++;
    std::unordered_set<std::string_view> created;
    for (const Entry* e : plan.create) created.insert(e->path);

    DirCache dirs(next.get());
    std::uint64_t counter = 0;
    for (const Entry& e : manifest.entries) {
        SSYNC_ASSIGN_OR_RETURN(int parent, dirs.get(parent_path(e.path)));
        std::string leaf = leaf_of(e.path);
        std::string what = display(e.path);
        if (e.type == EntryType::dir) {
            if (fs_->mkdirat(parent, leaf.c_str(), 0700) != 0) return errno_status(what);
            UniqueFd fd(fs_->openat(parent, leaf.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0));
            if (!fd) return errno_status(what);
            SSYNC_RETURN_IF_ERROR(set_metadata_fd(fd.get(), e, what));
            continue;
        }
        if (e.type == EntryType::symlink) {
            if (fs_->symlinkat(e.target.c_str(), parent, leaf.c_str()) != 0) return errno_status(what);
            if (options_.owners == OwnerPolicy::apply &&
                fs_->fchownat(parent, leaf.c_str(), expected_uid(e), expected_gid(e), AT_SYMLINK_NOFOLLOW) != 0) {
                return errno_status(what + ": chown");
            }
            continue;
        }
        if (!fresh.count(e.path)) {
            // Unchanged: share the inode with DEST's file. Linked through the descriptor we
            // opened without following symlinks, so a path swapped meanwhile cannot be linked.
            UniqueFd src(open_beneath(dest_.get(), e.path, O_RDONLY));
            struct stat st;
            if (!src || ::fstat(src.get(), &st) != 0 || !S_ISREG(st.st_mode)) return errno_status(what);
            std::string proc = "/proc/self/fd/" + std::to_string(src.get());
            if (::linkat(AT_FDCWD, proc.c_str(), parent, leaf.c_str(), AT_SYMLINK_FOLLOW) == 0) continue;
            if (errno != EMLINK && errno != EXDEV && errno != ENOENT) return errno_status(what);
            // Too many links (or no /proc): a copy with the same metadata will do.
            SSYNC_ASSIGN_OR_RETURN(FileDigest d, copy_hashed(*fs_, src.get(), what, parent, leaf, what));
            if (d.sha256 != e.sha256) return Status(Code::io, what + ": changed during the sync; run again");
            UniqueFd fd(fs_->openat(parent, leaf.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0));
            if (!fd) return errno_status(what);
            SSYNC_RETURN_IF_ERROR(set_metadata_fd(fd.get(), e, what));
            continue;
        }
        int from_dir = staging_.get();
        std::string from = "in-" + std::to_string(counter++);
        if (!created.count(e.path)) {
            // Metadata alone changed: a private copy, so the old tree keeps its own.
            UniqueFd src(open_beneath(dest_.get(), e.path, O_RDONLY));
            if (!src) return errno_status(what);
            SSYNC_ASSIGN_OR_RETURN(FileDigest d, copy_hashed(*fs_, src.get(), what, staging_.get(), from, what));
            if (d.sha256 != e.sha256) return Status(Code::io, what + ": changed during the sync; run again");
            UniqueFd fd(fs_->openat(from_dir, from.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0));
            if (!fd) return errno_status(what);
            SSYNC_RETURN_IF_ERROR(set_metadata_fd(fd.get(), e, what));
        } else {
            SSYNC_ASSIGN_OR_RETURN(from_dir, prepare_file(e, objects, uses, from, what));
        }
        if (fs_->renameat2(from_dir, from.c_str(), parent, leaf.c_str(), 0) != 0) return errno_status(what);
    }
    dirs.forget();
    for (auto it = manifest.entries.rbegin(); it != manifest.entries.rend(); ++it) {
        if (it->type != EntryType::dir) continue;
        SSYNC_ASSIGN_OR_RETURN(UniqueFd fd, open_dir_beneath(next.get(), it->path));
        if (fs_->fchmod(fd.get(), it->mode) != 0) return errno_status(display(it->path) + ": chmod");
    }
    // The new tree's own .ssync; its lock is DEST's lock file itself (a second name for the
    // same inode), so the lock we hold stays the lock of whichever tree is DEST.
    if (fs_->mkdirat(next.get(), std::string(kReservedDir).c_str(), 0755) != 0) return errno_status(next_display);
    SSYNC_ASSIGN_OR_RETURN(UniqueFd next_meta, open_dir_beneath(next.get(), kReservedDir));
    if (fs_->linkat(meta_.get(), "lock", next_meta.get(), "lock") != 0) return errno_status(next_display + "/.ssync/lock");
    SSYNC_RETURN_IF_ERROR(record_into(next.get(), next_meta.get(), dest_path_, manifest, manifest_bytes, signature));
    if (fs_->fchmod(next.get(), 0755) != 0) return errno_status(next_display);
    if (::syncfs(next.get()) != 0) return errno_status(next_display + ": syncfs");

    // The switch for the whole tree.
    if (fs_->renameat2(parent_.get(), next_name.c_str(), parent_.get(), dest_name_.c_str(), RENAME_EXCHANGE) != 0) {
        int err = errno;
        if (err == EINVAL || err == ENOSYS) {
            return Status(Code::io, dest_path_ + ": the file system cannot swap directories atomically "
                                                 "(RENAME_EXCHANGE); run without --atomic-tree");
        }
        return errno_status(dest_path_ + ": swap", err);
    }
    if (fs_->fsync(parent_.get()) != 0) return errno_status(dest_path_ + ": fsync parent");
    // What is now at next_name is the old tree.
    (void)remove_tree(*fs_, parent_.get(), next_name, next_display);
    return Status::ok();
}

std::string Installer::staging_display() const {
    return join_path(dest_path_, std::string(kReservedDir) + "/" + kStagingDir);
}

Status Installer::clean_staging() {
    SSYNC_RETURN_IF_ERROR(remove_tree(*fs_, meta_.get(), kStagingDir, staging_display()));
    SSYNC_RETURN_IF_ERROR(make_dirs(*fs_, meta_.get(), std::string(kStagingDir) + "/" + kObjectsDir, 0700,
                                    staging_display()));
    SSYNC_ASSIGN_OR_RETURN(staging_, open_dir_beneath(meta_.get(), kStagingDir));
    return Status::ok();
}

}  // namespace ssync
