#include "ssync/publication.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <unordered_set>
#include <utility>
#include <vector>

#include "ssync/hash.h"
#include "ssync/pack_writer.h"
#include "ssync/packs.h"
#include "ssync/parallel.h"

namespace ssync {

namespace {
int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}
}  // namespace

namespace layout {
int fan_index(std::string_view sha256) {
    if (sha256.size() < 2) return -1;
    int hi = hex_value(sha256[0]), lo = hex_value(sha256[1]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}
std::string object_path(std::string_view sha256) {
    std::string p = kObjects;
    p += '/';
    p += sha256.substr(0, 2);
    p += '/';
    p += sha256;
    return p;
}
std::string release_dir(std::uint64_t serial) {
    return std::string(kReleases) + "/" + std::to_string(serial);
}
std::optional<std::uint64_t> parse_serial(std::string_view text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
    std::uint64_t serial = 0;
    auto res = std::from_chars(text.data(), text.data() + text.size(), serial);
    if (text.empty() || res.ec != std::errc() || res.ptr != text.data() + text.size() || serial == 0) {
        return std::nullopt;
    }
    return serial;
}
}  // namespace layout

namespace {

constexpr const char* kCacheFile = "stat-cache";

// A file's size as fstat saw it when it was opened for publishing: what is read and published,
// without one more read() per file to find the end (hash_fd's stop_at).
std::uint64_t size_at_open(const struct stat& st) { return static_cast<std::uint64_t>(st.st_size); }

bool exists_at(int dirfd, const std::string& path) {
    struct stat st;
    return ::fstatat(dirfd, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

// The refusal of a symlink or file where the publication has a directory ssync does not
// replace on its own.
Status not_a_directory(const std::string& display) {
    return Status(Code::io, display + ": not a directory (a symlink or file is in the way); " +
                                "ssync neither follows nor removes it");
}

// Fails when the open file changed after `at_open` was taken (fstat at open): a write in
// place while it was read moves its size, mtime or ctime, and what was read may then be a mix
// of old and new bytes, which must not be signed. (A write within the same clock tick as the
// file's last change and of the same size goes unseen, as it does for the stat cache.)
Status unchanged_since_open(int fd, const struct stat& at_open, const std::string& display) {
    struct stat now;
    if (::fstat(fd, &now) != 0) return errno_status(display);
    if (now.st_size != at_open.st_size || now.st_mtim.tv_sec != at_open.st_mtim.tv_sec ||
        now.st_mtim.tv_nsec != at_open.st_mtim.tv_nsec || now.st_ctim.tv_sec != at_open.st_ctim.tv_sec ||
        now.st_ctim.tv_nsec != at_open.st_ctim.tv_nsec) {
        return Status(Code::io, display + ": changed while it was being published; run again");
    }
    return Status::ok();
}

// Makes sure `name` in `parent` is a directory of ssync's own and opens it, never following a
// symlink: a symlink planted there would otherwise carry every later write out of the
// publication. With `replace` (tree/ and the objects' fan-out and work directories, which only
// ssync fills), a symlink or file in the way is removed and the directory made afresh; else
// (objects/, releases/: an administrator may have a reason, and they hold what mirrors fetch)
// it is refused. `created` (if set) says whether the directory is new.
Result<UniqueFd> own_dir(FileSystem& fs, int parent, const char* name, const std::string& display, bool replace,
                         bool* created = nullptr, mode_t mode = 0755) {
    bool made = fs.mkdirat(parent, name, mode) == 0;
    if (!made && errno != EEXIST) return errno_status(display);
    UniqueFd fd(fs.openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0));
    if (!fd) {
        int e = errno;
        if (e != ELOOP && e != ENOTDIR) return errno_status(display, e);
        if (!replace) return not_a_directory(display);
        // unlinkat removes the symlink itself, never what it points to.
        if (fs.unlinkat(parent, name, 0) != 0) return errno_status(display);
        if (fs.mkdirat(parent, name, mode) != 0) return errno_status(display);
        made = true;
        fd = UniqueFd(fs.openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0));
        if (!fd) return errno_status(display);
    }
    if (created) *created = made;
    return fd;
}

// The objects the publication holds, listed once per run from the 256 fan-out directories
// (getdents), beside the walk: no digest, however it was found (the stat cache, the previous
// release), is taken as stored without its object being there. Measured on the development VM
// for 20,000 objects: ~22 ms for the listing, ~105 ms for one fstatat per file. Only regular
// files count: a symlink under an object's name is not content, and is replaced when stored.
class ObjectSet {
public:
    using Digest = std::array<unsigned char, 32>;

    static Result<ObjectSet> list(int pub_fd) {
        ObjectSet set;
        // Read only, so a symlink in the way is skipped rather than refused: the store
        // refuses or replaces it before anything is written.
        UniqueFd objects(::openat(pub_fd, layout::kObjects, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!objects) {
            if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR) return set;
            return errno_status(layout::kObjects);
        }
        static const char hex[] = "0123456789abcdef";
        for (int i = 0; i < 256; ++i) {
            char name[] = {hex[i >> 4], hex[i & 15], 0};
            std::string display = std::string("objects/") + name;
            UniqueFd fan(::openat(objects.get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!fan) {
                if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR) continue;
                return errno_status(display);
            }
            // Straight into digests: list_dir would allocate a string per object.
            SSYNC_RETURN_IF_ERROR(for_each_entry(fan.get(), display, [&](const char* entry, unsigned char type) {
                std::string_view n(entry);
                Digest d;
                if (n.size() != 64 || n[0] != name[0] || n[1] != name[1] || !decode(n, d)) return Status::ok();
                bool regular = type == DT_REG;
                if (type == DT_UNKNOWN) {
                    struct stat st;
                    regular = ::fstatat(fan.get(), entry, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
                }
                if (regular) set.digests_.push_back(d);
                return Status::ok();
            }));
        }
        std::sort(set.digests_.begin(), set.digests_.end());
        return set;
    }

    bool has(std::string_view sha256) const {
        Digest d;
        return decode(sha256, d) && std::binary_search(digests_.begin(), digests_.end(), d);
    }

private:
    // 64 lowercase hex digits, as ssync names objects; false for anything else.
    static bool decode(std::string_view hex, Digest& out) {
        if (hex.size() != 64) return false;
        for (std::size_t k = 0; k < 32; ++k) {
            int hi = hex_value(hex[2 * k]), lo = hex_value(hex[2 * k + 1]);
            if (hi < 0 || lo < 0) return false;
            out[k] = static_cast<unsigned char>(hi * 16 + lo);
        }
        return true;
    }

    std::vector<Digest> digests_;
};

// Stores content into objects/ while it is hashed, so the object holds exactly the bytes the
// manifest vouches for even if the source changes meanwhile. Every object is written through
// descriptors of objects/, objects/tmp and the 256 fan-out directories, opened once without
// following symlinks.
class ObjectStore {
public:
    // `publication` names the publication in messages.
    ObjectStore(FileSystem& fs, int pub_fd, std::string publication)
        : fs_(fs), pub_fd_(pub_fd), publication_(std::move(publication)) {}

    // A path inside the publication, as messages name it: a full disk must say which one.
    std::string in_publication(std::string_view relative) const { return join_path(publication_, std::string(relative)); }

    Status prepare() {
        SSYNC_ASSIGN_OR_RETURN(objects_fd_, own_dir(fs_, pub_fd_, layout::kObjects, in_publication(layout::kObjects), false));
        SSYNC_ASSIGN_OR_RETURN(tmp_fd_, own_dir(fs_, objects_fd_.get(), "tmp", in_publication("objects/tmp"), true));
        for (int i = 0; i < 256; ++i) {
            static const char hex[] = "0123456789abcdef";
            char dir[] = {hex[i >> 4], hex[i & 15], 0};
            SSYNC_ASSIGN_OR_RETURN(fan_out_[i], own_dir(fs_, objects_fd_.get(), dir, in_publication(std::string("objects/") + dir), true));
        }
        // Temporaries of a run that died (we hold the publication's lock, so none is live).
        SSYNC_ASSIGN_OR_RETURN(std::vector<DirChild> leftovers, list_dir(tmp_fd_.get(), in_publication("objects/tmp")));
        for (const DirChild& c : leftovers) {
            SSYNC_RETURN_IF_ERROR(remove_tree(fs_, tmp_fd_.get(), c.name, in_publication("objects/tmp/" + c.name)));
        }
        return Status::ok();
    }

    // objects/tmp, for temporaries that are renamed into place.
    int tmp_dir() const { return tmp_fd_.get(); }
    // The fan-out directory that holds `sha256` (64 lowercase hex digits, as the manifest
    // checks and the hasher writes); the object's name in it is the digest itself.
    int fan_out(std::string_view sha256) const {
        return fan_out_[layout::fan_index(sha256)].get();
    }

    // Reads `src_fd` to the end (or `stop_at` bytes: see hash_fd), hashing it and writing it
    // to a temporary object, then files it under its digest. When `expect` is set the digest
    // must equal it. `at_open` is the file's fstat at open: a file changed since is not stored.
    Result<FileDigest> store(int src_fd, const std::string& display, const std::string* expect,
                             const struct stat& at_open, std::uint64_t stop_at = UINT64_MAX) {
        std::string tmp = "t" + std::to_string(::getpid()) + "-" + std::to_string(counter_++);
        const std::string tmp_display = in_publication("objects/tmp/" + tmp);  // for messages
        UniqueFd out(fs_.openat(tmp_fd_.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0444));
        if (!out) return errno_status(tmp_display);
        auto cleanup = [&] { fs_.unlinkat(tmp_fd_.get(), tmp.c_str(), 0); };
        auto digest = hash_fd(
            src_fd, display,
            [&](const char* data, std::size_t size) {
                return write_all(fs_, out.get(), std::string_view(data, size), tmp_display);
            },
            stop_at);
        if (!digest) {
            cleanup();
            return digest.status();
        }
        if (expect && digest->sha256 != *expect) {
            cleanup();
            return Status(Code::io, display + ": changed while it was being published; run again");
        }
        if (Status same = unchanged_since_open(src_fd, at_open, display); !same) {
            cleanup();
            return same;
        }
        out.reset();
        std::string final_path = in_publication(layout::object_path(digest->sha256));
        int dir = fan_out(digest->sha256);
        const char* name = digest->sha256.c_str();
        // Another file with the same content may get there first: same bytes, nothing to do.
        // Unless what holds the name is not a regular file (a symlink someone put there, which
        // tree/ would otherwise link to): that is removed, unfollowed, and the rename tried
        // again, when another thread may just have put the object there (two files of the same
        // content replacing the same symlink): the second attempt accepts that as the first does.
        for (int attempt = 0;; ++attempt) {
            if (fs_.renameat2(tmp_fd_.get(), tmp.c_str(), dir, name, RENAME_NOREPLACE) == 0) break;
            int e = errno;
            if (e != EEXIST || attempt == 2) {
                cleanup();
                return errno_status(final_path, e);
            }
            struct stat st;
            if (::fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
                cleanup();
                return digest;
            }
            Status removed = remove_tree(fs_, dir, name, final_path);
            if (!removed) {
                cleanup();
                return removed;
            }
        }
        objects_stored_++;
        bytes_stored_ += digest->size;
        return digest;
    }

    std::atomic<std::uint64_t> objects_stored_{0}, bytes_stored_{0};

private:
    FileSystem& fs_;
    int pub_fd_;
    std::string publication_;
    UniqueFd objects_fd_, tmp_fd_;
    UniqueFd fan_out_[256];
    std::atomic<std::uint64_t> counter_{0};
};

// Makes `to_name` in to_dir (`display` in messages) another name of `from_name` in from_dir,
// atomically replacing what was there.
Status replace_with_link(FileSystem& fs, int from_dir, const char* from_name, int to_dir, const char* to_name,
                         const std::string& display) {
    std::string tmp = std::string(".ssync-tmp-link.") + to_name;
    fs.unlinkat(to_dir, tmp.c_str(), 0);
    if (fs.linkat(from_dir, from_name, to_dir, tmp.c_str()) != 0) return errno_status(display);
    if (fs.renameat2(to_dir, tmp.c_str(), to_dir, to_name, 0) != 0) {
        int err = errno;
        fs.unlinkat(to_dir, tmp.c_str(), 0);
        return errno_status(display, err);
    }
    return Status::ok();
}

// What the publication held when this run began, read beside the walk.
// A manifest of the publication's own: its bytes and its header (name, serial, dates). The
// entries, megabytes of JSON that take ~0.1 s to parse for 20,000 files, are parsed only when
// a run needs them, which a re-sign of an unchanged tree does not.
struct OwnManifest {
    std::string display;
    // Mapped, not read: only ssync replaces it, by rename, so the bytes never change under us;
    // and mapping page-cache pages costs far less than copying megabytes into fresh memory.
    std::shared_ptr<const MappedFile> mapped;
    std::string_view bytes;
    Manifest header;  // no entries

    // The whole manifest, parsed on first use (by the publishing thread only).
    Result<const Manifest*> entries() const {
        if (!full_) {
            auto m = parse_manifest(bytes);
            if (!m) return m.status().with_context(display);
            full_ = std::move(m).value();
        }
        return &*full_;
    }

    static Result<OwnManifest> read(int dirfd, const char* name, std::string display) {
        OwnManifest m;
        SSYNC_ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::open(dirfd, name, ManifestLimits{}.max_bytes, display));
        m.mapped = std::make_shared<const MappedFile>(std::move(mapped));
        m.bytes = m.mapped->bytes();
        m.display = std::move(display);
        if (auto header = parse_manifest_header(m.bytes)) {
            m.header = std::move(header).value();
            return m;
        }
        // Not in write_manifest()'s layout (or damaged): parsed whole, which says what is wrong.
        SSYNC_RETURN_IF_ERROR(m.entries().status());
        m.header = *m.full_;
        m.header.entries.clear();
        return m;
    }

private:
    mutable std::optional<Manifest> full_;
};

struct Before {
    // The current release: the one `latest` names (releases/N/manifest.json is the release
    // itself), or without that the top-level manifest.json. Its name must match the new one;
    // files of the same path and size are probably unchanged.
    std::optional<OwnManifest> current;
    bool current_is_release = false;  // read from releases/N, N what `latest` names
    // What tree/ was last brought to: the top-level manifest.json, switched just before tree/
    // is updated. Usually the same file as `current`; an older release after a run that failed
    // between `latest` and the top-level pair; none when it was removed.
    std::optional<OwnManifest> tree_only;  // when it is another file than `current`'s
    bool tree_is_current = false;
    // The highest serial the publication has published or started: `latest`, every
    // releases/N, and the manifests above. The next release must be above it, so that no
    // serial a mirror may have applied is ever signed again with other bytes.
    std::uint64_t highest = 0;

    const OwnManifest* tree_basis() const {
        if (tree_is_current) return current ? &*current : nullptr;
        return tree_only ? &*tree_only : nullptr;
    }
};

Result<Before> read_before(int pub_fd, const std::string& publication) {
    auto in_publication = [&](std::string_view relative) { return join_path(publication, std::string(relative)); };
    Before b;
    std::optional<std::uint64_t> latest;
    struct stat st;
    if (::fstatat(pub_fd, layout::kLatest, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        SSYNC_ASSIGN_OR_RETURN(std::string text, read_file_prefix(pub_fd, layout::kLatest, 64, in_publication(layout::kLatest)));
        // Anything but a serial is a damaged unsigned hint, which this run replaces.
        latest = layout::parse_serial(text);
        if (latest) b.highest = *latest;
    } else if (errno != ENOENT) {
        return errno_status(in_publication(layout::kLatest));
    }

    UniqueFd releases(::openat(pub_fd, layout::kReleases, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!releases) {
        if (errno == ELOOP || errno == ENOTDIR) return not_a_directory(in_publication(layout::kReleases));
        if (errno != ENOENT) return errno_status(in_publication(layout::kReleases));
    } else {
        // Every name that is a serial, whatever it is: a release a failed run left above
        // `latest` (never published, but the serial is not reused either) or something in
        // the way of that name.
        SSYNC_ASSIGN_OR_RETURN(std::vector<DirChild> names, list_dir(releases.get(), in_publication(layout::kReleases)));
        for (const DirChild& c : names) {
            auto serial = layout::parse_serial(c.name);
            if (serial && std::to_string(*serial) == c.name) b.highest = std::max(b.highest, *serial);
        }
    }

    struct stat current_st {};
    if (latest && releases) {
        std::string name = std::to_string(*latest);
        std::string display = in_publication(layout::release_dir(*latest) + "/" + layout::kManifest);
        UniqueFd release(::openat(releases.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!release) {
            if (errno == ELOOP || errno == ENOTDIR) return not_a_directory(in_publication(layout::release_dir(*latest)));
            if (errno != ENOENT) return errno_status(in_publication(layout::release_dir(*latest)));
        } else if (::fstatat(release.get(), layout::kManifest, &current_st, AT_SYMLINK_NOFOLLOW) == 0) {
            SSYNC_ASSIGN_OR_RETURN(OwnManifest m, OwnManifest::read(release.get(), layout::kManifest, display));
            if (m.header.serial != *latest) {
                return Status(Code::bad_manifest, display + ": holds serial " + std::to_string(m.header.serial) +
                                                      ", but latest names " + std::to_string(*latest));
            }
            b.current = std::move(m);
            b.current_is_release = true;
        } else if (errno != ENOENT) {
            return errno_status(display);
        }
    }

    struct stat top_st;
    if (::fstatat(pub_fd, layout::kManifest, &top_st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (b.current && top_st.st_dev == current_st.st_dev && top_st.st_ino == current_st.st_ino) {
            b.tree_is_current = true;  // the usual case: a second name of the release's file
        } else {
            SSYNC_ASSIGN_OR_RETURN(OwnManifest m, OwnManifest::read(pub_fd, layout::kManifest,
                                                                     "previous manifest.json in the publication"));
            if (b.current) {
                b.tree_only = std::move(m);
            } else {
                b.current = std::move(m);
                b.tree_is_current = true;
            }
        }
    } else if (errno != ENOENT) {
        return errno_status(in_publication(layout::kManifest));
    }
    if (b.current) b.highest = std::max(b.highest, b.current->header.serial);
    if (b.tree_only) b.highest = std::max(b.highest, b.tree_only->header.serial);
    return b;
}

// Directories of tree/ opened by path without following any symlink (openat2
// RESOLVE_NO_SYMLINKS), so that a symlink planted in the tree can never carry a link, rename
// or removal out of it. The last one stays open: entries come in path order, so consecutive
// ones mostly share their parent.
class TreeDirs {
public:
    explicit TreeDirs(int tree_fd) : tree_fd_(tree_fd) {}
    // The directory holding `path`, and the last component in `name`; -1 and errno (ELOOP,
    // ENOTDIR, ENOENT...) when it cannot be reached through directories alone.
    int parent(const std::string& path, std::string& name) {
        auto slash = path.rfind('/');
        if (slash == std::string::npos) {
            name = path;
            return tree_fd_;
        }
        name = path.substr(slash + 1);
        std::string_view dir(path.data(), slash);
        if (fd_ && dir == dir_) return fd_.get();
        dir_.assign(dir);
        int fd = open_beneath(tree_fd_, dir_, O_RDONLY | O_DIRECTORY);
        int err = errno;
        fd_.reset(fd);
        errno = err;
        return fd;
    }
    void forget() { fd_.reset(); }

private:
    int tree_fd_;
    std::string dir_;
    UniqueFd fd_;
};

// Brings tree/ from `previous` (the release it was last brought to) to the new one, touching
// only what changed. Each path is replaced by rename, so a reader always finds a complete
// file. Every change goes through directory descriptors opened without following symlinks;
// tree/ is ssync's own, so a symlink or file found where the tree has a directory (planted,
// or a directory someone removed) is removed, unfollowed, and that directory made again with
// everything below it.
Status update_tree(FileSystem& fs, int pub_fd, const ObjectStore& store, const Manifest* previous,
                   const Manifest& next) {
    bool fresh = false;
    SSYNC_ASSIGN_OR_RETURN(UniqueFd tree, own_dir(fs, pub_fd, layout::kTree, store.in_publication(layout::kTree), true, &fresh));
    const Manifest* prev = fresh ? nullptr : previous;
    TreeDirs dirs(tree.get());
    std::string name;

    // Directories of the previous release that the tree no longer holds as directories: all
    // below them is made again, as if they were new.
    std::set<std::string, std::less<>> damaged;
    auto in_damaged = [&](std::string_view path) {
        if (damaged.empty()) return false;
        for (std::size_t at = path.size(); at != std::string_view::npos; at = path.rfind('/', at - 1)) {
            if (damaged.count(path.substr(0, at))) return true;
            if (at == 0) break;
        }
        return false;
    };
    if (prev) {
        for (const Entry& e : next.entries) {
            if (e.type != EntryType::dir) continue;
            const Entry* p = prev->find(e.path);
            if (!p || p->type != EntryType::dir || in_damaged(e.path)) continue;
            // Path order puts every parent before its children, and a directory of both
            // releases has parents of both, so the components this follows were found to be
            // directories just before. A stat only: nothing is written through this path.
            struct stat st;
            if (::fstatat(tree.get(), e.path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
                if (S_ISDIR(st.st_mode)) continue;
                int dir = dirs.parent(e.path, name);
                if (dir < 0) return errno_status(store.in_publication("tree/" + quote_path(e.path)));
                SSYNC_RETURN_IF_ERROR(remove_tree(fs, dir, name, store.in_publication("tree/" + quote_path(e.path))));
            } else if (errno != ENOENT) {
                return errno_status(store.in_publication("tree/" + quote_path(e.path)));
            }
            damaged.insert(e.path);
        }
    }

    auto same = [](const Entry& a, const Entry& b) {
        return a.type == b.type && (a.type != EntryType::file || a.sha256 == b.sha256);
    };
    // Removals first, deepest first, so directories empty out before they go.
    if (prev) {
        for (auto it = prev->entries.rbegin(); it != prev->entries.rend(); ++it) {
            if (it->type == EntryType::symlink) continue;  // never placed in the tree
            const Entry* n = next.find(it->path);
            if (n && same(*it, *n)) continue;
            if (n && n->type == EntryType::dir && it->type == EntryType::dir) continue;
            if (in_damaged(it->path)) continue;  // went with the non-directory in its place
            std::string display = store.in_publication("tree/" + quote_path(it->path));
            int dir = dirs.parent(it->path, name);
            if (dir < 0) {
                // Not reachable through directories: nothing of ours is there. The symlink or
                // file in the way is an entry above this one and goes when its turn comes.
                if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR) continue;
                return errno_status(display);
            }
            SSYNC_RETURN_IF_ERROR(remove_tree(fs, dir, name, display));
        }
    }
    dirs.forget();
    int tmp_dir = store.tmp_dir();
    for (const Entry& e : next.entries) {
        const Entry* p = prev ? prev->find(e.path) : nullptr;
        if (p && in_damaged(e.path)) p = nullptr;
        if (p && same(*p, e) && e.type != EntryType::symlink) continue;
        if (e.type == EntryType::symlink) continue;  // never placed in the tree
        std::string display = store.in_publication("tree/" + quote_path(e.path));
        int dir = dirs.parent(e.path, name);
        if (dir < 0) return errno_status(display);
        if (e.type == EntryType::dir) {
            if (fs.mkdirat(dir, name.c_str(), 0755) == 0) continue;
            if (errno != EEXIST) return errno_status(display);
            struct stat st;
            if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno_status(display);
            if (S_ISDIR(st.st_mode)) continue;
            // A symlink or file where the release has a directory: removed, never followed.
            SSYNC_RETURN_IF_ERROR(remove_tree(fs, dir, name, display));
            if (fs.mkdirat(dir, name.c_str(), 0755) != 0) return errno_status(display);
        } else if (e.type == EntryType::file) {
            int objects = store.fan_out(e.sha256);
            const char* object = e.sha256.c_str();
            // A fresh tree has nothing to replace: link straight into place.
            if (!p && fs.linkat(objects, object, dir, name.c_str()) == 0) continue;
            // Link under a temporary name outside the tree, then rename into place (a rename
            // replaces a symlink in the way, it does not follow it).
            std::string tmp = "link-" + std::to_string(::getpid());
            fs.unlinkat(tmp_dir, tmp.c_str(), 0);
            if (fs.linkat(objects, object, tmp_dir, tmp.c_str()) != 0) {
                if (errno != EMLINK) return errno_status(display);
                // Too many links to one object (thousands of identical files): a copy will do.
                UniqueFd src(fs.openat(objects, object, O_RDONLY | O_NOFOLLOW, 0));
                UniqueFd dst(fs.openat(tmp_dir, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0444));
                if (!src || !dst) return errno_status(display);
                auto d = hash_fd(src.get(), display, [&](const char* data, std::size_t size) {
                    return write_all(fs, dst.get(), std::string_view(data, size), display);
                });
                if (!d) return d.status();
            }
            if (fs.renameat2(tmp_dir, tmp.c_str(), dir, name.c_str(), 0) != 0) {
                int err = errno;
                fs.unlinkat(tmp_dir, tmp.c_str(), 0);
                return errno_status(display, err);
            }
        }
    }
    return Status::ok();
}

// A file the walk found, handed to the hashers before the walk is over.
struct FoundFile {
    std::size_t found = 0;
    std::string path;
    FileStat stat;
};

// How a file's digest was settled while the walk went on.
struct Outcome {
    enum Kind { unsettled, cached, hashed } kind = unsettled;
    std::string sha256;
    FileStat stat;      // hashed: at the time it was read
    std::int64_t mtime = 0;

    static Outcome from_stat(const struct stat& now, std::uint64_t size) {
        Outcome o;
        o.set_stat(now, size);
        return o;
    }
    // `size` is what was read, which is what counts if the file grew or shrank meanwhile.
    void set_stat(const struct stat& now, std::uint64_t size) {
        stat = file_stat(now);
        stat.size = size;
        mtime = now.st_mtim.tv_sec;
    }
    // What was read is what is published: its size and time, not the walk's.
    void apply_stat(ScannedEntry& se) const {
        se.entry.size = stat.size;
        se.entry.mtime = mtime;
        se.stat = stat;
    }
};

// A digest of the stat of objects/ and of its 256 fan-out directories (type, inode, mtime,
// ctime; "missing" for one that is not there). Adding, removing or renaming an object changes
// its directory's mtime and ctime, and nothing sets a ctime back: while the stamp stays the
// same, objects/ holds the same names. 257 fstatat calls, where listing the objects of a tree
// of 20,000 files takes ~70 ms. Empty when objects/ cannot be read.
std::string objects_stamp(int pub_fd) {
    UniqueFd objects(::openat(pub_fd, layout::kObjects, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!objects) return {};
    Sha256 h;
    auto add = [&h](std::string_view name, const struct stat* st) {
        std::string line(name);
        if (st) {
            for (std::uint64_t v : {std::uint64_t{st->st_mode}, static_cast<std::uint64_t>(st->st_ino),
                                    static_cast<std::uint64_t>(st->st_dev),
                                    static_cast<std::uint64_t>(st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec),
                                    static_cast<std::uint64_t>(st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec)}) {
                line += ' ';
                line += std::to_string(v);
            }
        } else {
            line += " missing";
        }
        line += '\n';
        h.update(line);
    };
    struct stat st;
    if (::fstat(objects.get(), &st) != 0) return {};
    add(".", &st);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 256; ++i) {
        char name[] = {hex[i >> 4], hex[i & 15], 0};
        add(name, ::fstatat(objects.get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? &st : nullptr);
    }
    return h.finish_hex();
}

// What the signer remembers of the last release it made (PUB/.ssync-signer/last-release):
// its serial, the SHA-256 of its manifest and the stamp of the walk that made it. When the
// next walk gives the same stamp, nothing the manifest describes has changed (tree_stamp()
// covers every path, type, mode, owner, target and file stat; a change of content changes at
// least a ctime), and the release is made from the previous manifest's entries part with a
// new header: no entries are built, written or checked again. Like the stat cache it only
// saves work: a missing, damaged or outdated record means the whole way is taken.
struct LastRelease {
    static constexpr const char* kFile = "last-release";
    std::uint64_t serial = 0;
    std::string manifest_sha256;
    std::string tree_stamp;
    std::string objects_stamp;  // of objects/ when the release was made: see objects_stamp()

    std::string format() const {
        return "ssync-signer last-release 2\nserial " + std::to_string(serial) + "\nmanifest " + manifest_sha256 +
               "\ntree " + tree_stamp + "\nobjects " + objects_stamp + "\n";
    }
    static std::optional<LastRelease> load(int signer_fd) {
        auto text = read_file_prefix(signer_fd, kFile, 512, kFile);
        if (!text) return std::nullopt;
        LastRelease r;
        std::string_view s = *text;
        auto line = [&s](std::string_view key) -> std::optional<std::string_view> {
            if (s.substr(0, key.size()) != key) return std::nullopt;
            auto end = s.find('\n');
            if (end == std::string_view::npos) return std::nullopt;
            std::string_view value = s.substr(key.size(), end - key.size());
            s.remove_prefix(end + 1);
            return value;
        };
        auto digest = [](std::optional<std::string_view> v) { return v && v->size() == 64 && is_lower_hex(*v); };
        if (!line("ssync-signer last-release 2")) return std::nullopt;
        auto serial = line("serial ");
        auto manifest = line("manifest ");
        auto tree = line("tree ");
        // Empty when objects/ could not be read: then it is listed.
        auto objects = line("objects ");
        if (!serial || !digest(manifest) || !digest(tree) || !objects || !s.empty()) return std::nullopt;
        if (!objects->empty() && !digest(objects)) return std::nullopt;
        auto n = layout::parse_serial(*serial);
        if (!n) return std::nullopt;
        r.serial = *n;
        r.manifest_sha256 = *manifest;
        r.tree_stamp = *tree;
        r.objects_stamp = *objects;
        return r;
    }
};

// Whether `current` may lend its entries part to the next release, as far as the publication
// tells without the walk: it is the release the record describes, the one `latest` names and
// tree/ was brought to, and nothing above it was started.
bool record_fits(const LastRelease& last, const Before& before) {
    return before.current && before.tree_is_current && before.highest == last.serial &&
           before.current->header.serial == last.serial && sha256_hex(before.current->bytes) == last.manifest_sha256;
}

// Whether every object the files of `current` need is in objects/. The digests are read
// straight from the entries part: `"sha256": "` occurs only as a key, as a string holding it
// would have its quotes escaped.
bool holds_every_object(const OwnManifest& current, const ObjectSet& objects) {
    std::string_view bytes = current.bytes;
    auto at = find_entries_part(bytes);
    if (!at) return false;
    constexpr std::string_view key = "\"sha256\": \"";
    for (std::size_t pos = bytes.find(key, *at); pos != std::string_view::npos; pos = bytes.find(key, pos)) {
        pos += key.size();
        if (!objects.has(bytes.substr(pos, 64))) return false;
    }
    return true;
}

// Whether PUB/tree is a directory: when it is not (removed, or something else in its place),
// the next run makes it afresh, whatever else it could skip.
bool tree_exists(int pub_fd) {
    struct stat st;
    return ::fstatat(pub_fd, layout::kTree, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

// The index of the release `latest` names; nullopt when it has none, or one that cannot be read
// or does not parse: its packs then count as gone and their objects are packed again, as the
// index only saves mirrors requests.
std::optional<PackIndex> previous_pack_index(int pub_fd, const Before& before) {
    if (!before.current || !before.current_is_release) return std::nullopt;
    std::uint64_t serial = before.current->header.serial;
    UniqueFd release(open_beneath(pub_fd, layout::release_dir(serial), O_RDONLY | O_DIRECTORY));
    if (!release) return std::nullopt;
    auto index = read_pack_index(release.get(), layout::pack_index_path(serial));
    if (!index) return std::nullopt;
    return std::move(index).value();
}

// The index of a release made from the previous one's entries: the previous index again, when
// packs/ (not through a symlink) still holds every pack it lists as listed. nullopt otherwise,
// and the whole way makes one. The packs are stat'ed, never read: this path must stay cheap.
std::optional<std::string> reusable_pack_index(int pub_fd, const Before& before) {
    std::optional<PackIndex> previous = previous_pack_index(pub_fd, before);
    if (!previous) return std::nullopt;
    UniqueFd packs(::openat(pub_fd, layout::kPacks, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!packs) return std::nullopt;
    for (const Pack& pack : previous->packs)
        if (!pack_present(packs.get(), pack)) return std::nullopt;
    // The parser takes only what format_pack_index() writes, so this is the file's text.
    return format_pack_index(*previous);
}

// Packs the small objects of the release `scanned` describes (in path order, their objects
// stored) that no pack of the previous release still in packs_fd holds, and returns the new
// release's index.
Result<std::string> make_packs(FileSystem& fs, int pub_fd, int packs_fd, const ObjectStore& store,
                               const std::string& publication, const Before& before,
                               const std::vector<ScannedEntry>& scanned, unsigned threads, PublishStats& stats) {
    std::vector<PackedObject> small;
    std::unordered_set<std::string_view> seen;
    for (const ScannedEntry& se : scanned) {
        const Entry& e = se.entry;
        if (e.type != EntryType::file || e.size > kPackMaxObjectSize) continue;
        if (seen.insert(e.sha256).second) small.push_back(PackedObject{e.sha256, e.size});
    }
    std::vector<Pack> usable;
    if (std::optional<PackIndex> previous = previous_pack_index(pub_fd, before)) {
        for (Pack& pack : previous->packs)
            if (pack_present(packs_fd, pack)) usable.push_back(std::move(pack));
    }
    PackPlan plan = plan_packs(small, usable);
    PackWriter writer(fs, store.tmp_dir(), packs_fd, [&store](std::string_view sha256) { return store.fan_out(sha256); },
                      publication);
    std::size_t fresh = plan.index.packs.size() - plan.first_new;
    SSYNC_RETURN_IF_ERROR(parallel_for(fresh, threads, [&](std::size_t k) {
        return writer.write_pack(plan.index.packs[plan.first_new + k]);
    }));
    for (std::size_t k = plan.first_new; k < plan.index.packs.size(); ++k) {
        stats.packs_written++;
        stats.bytes_packed += plan.index.packs[k].size;
    }
    return format_pack_index(plan.index);
}

// The header of the next release: the name kept, the serial above every one the publication
// has published or started.
Result<Manifest> next_header(const PublishOptions& options, const Before& before) {
    const Manifest* previous = before.current ? &before.current->header : nullptr;
    Manifest next;
    next.name = options.name;
    if (previous) {
        if (next.name.empty()) next.name = previous->name;
        if (next.name != previous->name) {
            return Status(Code::usage, "--name " + next.name + ": the publication holds \"" +
                                           previous->name + "\"; use a new publication directory");
        }
    }
    if (next.name.empty()) return Status(Code::usage, "--name is required for a new publication");
    if (!options.serial && before.highest == UINT64_MAX) {
        return Status(Code::bad_manifest, "the publication has used the largest serial there is");
    }
    next.serial = options.serial ? *options.serial : before.highest + 1;
    if (next.serial <= before.highest) {
        if (previous && previous->serial == before.highest) {
            return Status(Code::bad_manifest, "--serial " + std::to_string(next.serial) +
                                                  ": must be greater than the current serial " +
                                                  std::to_string(previous->serial));
        }
        return Status(Code::bad_manifest, "--serial " + std::to_string(next.serial) + ": must be greater than " +
                                              std::to_string(before.highest) +
                                              ", the highest serial the publication has published or started "
                                              "(in latest or releases/)");
    }
    next.created = options.now;
    next.expires = options.now + options.valid_for;
    return next;
}

// Writes releases/N (manifest, signature and, when set, the pack index), then switches `latest` and the top-level pair
// to it. The serial is above every name in releases/ (read_before), so releases/N is a new
// directory: sign never removes or rewrites a release, above all not the one `latest` names.
Status write_release(FileSystem& fs, int pub_fd, const std::string& publication, std::uint64_t serial,
                     std::string_view bytes, std::string_view signature, const std::optional<std::string>& pack_index) {
    std::string releases = join_path(publication, layout::kReleases);
    std::string release = join_path(publication, layout::release_dir(serial));
    std::string serial_name = std::to_string(serial);
    SSYNC_ASSIGN_OR_RETURN(UniqueFd releases_fd, own_dir(fs, pub_fd, layout::kReleases, releases, false));
    if (fs.mkdirat(releases_fd.get(), serial_name.c_str(), 0755) != 0) {
        if (errno == EEXIST) return Status(Code::bad_manifest, release + ": exists already; a release is never rewritten");
        return errno_status(release);
    }
    UniqueFd release_fd(fs.openat(releases_fd.get(), serial_name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0));
    if (!release_fd) return errno_status(release);
    SSYNC_RETURN_IF_ERROR(write_file_atomic(fs, release_fd.get(), layout::kManifest, bytes, 0644,
                                            release + "/" + layout::kManifest));
    SSYNC_RETURN_IF_ERROR(write_file_atomic(fs, release_fd.get(), layout::kSignature, signature,
                                            0644, release + "/" + layout::kSignature));
    if (pack_index) {
        SSYNC_RETURN_IF_ERROR(write_file_atomic(fs, release_fd.get(), layout::kPackIndex, *pack_index, 0644,
                                                release + "/" + layout::kPackIndex));
    }
    SSYNC_RETURN_IF_ERROR(sync_dir(fs, releases_fd.get(), releases));
    // The switch: from here on, readers that follow `latest` get the new release.
    SSYNC_RETURN_IF_ERROR(write_file_atomic(fs, pub_fd, layout::kLatest, serial_name + "\n", 0644,
                                            join_path(publication, layout::kLatest)));
    // The top-level pair is the release's pair again: second names for the same files.
    for (const char* name : {layout::kSignature, layout::kManifest}) {
        SSYNC_RETURN_IF_ERROR(replace_with_link(fs, release_fd.get(), name, pub_fd, name, join_path(publication, name)));
    }
    return sync_dir(fs, pub_fd, publication);
}
}  // namespace

Result<std::optional<std::string>> read_current_manifest(int pub_fd) {
    if (!exists_at(pub_fd, layout::kManifest)) return std::optional<std::string>();
    SSYNC_ASSIGN_OR_RETURN(std::string bytes,
                           read_file_bounded(pub_fd, layout::kManifest, ManifestLimits{}.max_bytes,
                                             layout::kManifest));
    return std::optional<std::string>(std::move(bytes));
}

namespace {
Result<PublishResult> publish_into(UniqueFd src_fd, const std::string& publication, const PublishOptions& options,
                                   const SignFunction& sign);
}  // namespace

Result<PublishResult> publish(const std::string& source, const std::string& publication,
                              const PublishOptions& options, const SignFunction& sign) {
    SSYNC_ASSIGN_OR_RETURN(UniqueFd src_fd, open_dir_trusted(source));
    // Checked before the publication is created: inside the source tree it would be published
    // into itself, and a source inside the publication would be rewritten by it.
    switch (dir_overlap(publication, src_fd.get())) {
    case Overlap::inside:
        return Status(Code::usage, publication + ": the publication cannot be the source tree or inside it");
    case Overlap::holds:
        return Status(Code::usage, publication + ": the publication cannot hold the source tree");
    case Overlap::apart:
        break;
    }
    bool created = ::mkdir(publication.c_str(), 0755) == 0;
    if (!created && errno != EEXIST) return errno_status(publication);
    auto result = publish_into(std::move(src_fd), publication, options, sign);
    // A first run that failed (a wrong key, a FIFO in the source) leaves no half-made
    // publication behind: until `latest` exists nothing in it was published, and all of it
    // was made by this run. Not when another signer holds the lock: it is working in there.
    if (!result && created && result.status().code() != Code::busy) {
        std::string latest = join_path(publication, layout::kLatest);
        struct stat st;
        if (::lstat(latest.c_str(), &st) != 0 && errno == ENOENT) {
            FileSystem& fs = options.fs ? *options.fs : system_fs();
            (void)remove_tree(fs, AT_FDCWD, publication, publication);  // best effort: the error stands
        }
    }
    return result;
}

namespace {
Result<PublishResult> publish_into(UniqueFd src_fd, const std::string& publication, const PublishOptions& options,
                                   const SignFunction& sign) {
    FileSystem& fs = options.fs ? *options.fs : system_fs();
    SSYNC_ASSIGN_OR_RETURN(UniqueFd pub_fd, open_dir_trusted(publication));
    SSYNC_ASSIGN_OR_RETURN(UniqueFd signer_fd,
                           own_dir(fs, pub_fd.get(), layout::kSignerDir, join_path(publication, layout::kSignerDir),
                                   false, nullptr, 0700));
    SSYNC_ASSIGN_OR_RETURN(FileLock lock, FileLock::acquire(signer_fd.get(), layout::kSignerLock,
                                                            publication + "/" + layout::kSignerDir));

    using Clock = std::chrono::steady_clock;
    auto lap_start = Clock::now();
    auto lap = [&lap_start] {
        auto now = Clock::now();
        double seconds = std::chrono::duration<double>(now - lap_start).count();
        lap_start = now;
        return seconds;
    };
    PublishStats::Phases phases;

    // A record of the last release: the walk will probably confirm it (see LastRelease).
    std::optional<LastRelease> last = options.rehash ? std::nullopt : LastRelease::load(signer_fd.get());

    // The previous manifest is read beside everything else (its header only).
    std::shared_future<Result<Before>> before_future =
        std::async(std::launch::async, [&] { return read_before(pub_fd.get(), publication); }).share();
    // Read beside the walk: the stat cache, which tells the hashers which files the
    // publication probably holds, and the listing of objects/. With a record of the last
    // release, only once the tree turns out to have changed (objects/ also when it changed
    // since that release); started at most once each.
    std::shared_future<StatCache> cache_future;
    std::shared_future<Result<ObjectSet>> objects_future;
    auto load_stat_cache = [&] {
        if (!cache_future.valid()) {
            cache_future = std::async(std::launch::async, [&] { return StatCache::load(signer_fd.get(), kCacheFile); }).share();
        }
    };
    auto list_objects = [&] {
        if (!objects_future.valid()) {
            objects_future = std::async(std::launch::async, [&] { return ObjectSet::list(pub_fd.get()); }).share();
        }
        return objects_future;
    };
    if (!last) {
        load_stat_cache();
        list_objects();
    }

    auto preflight_failed = [&]() -> std::optional<Status> {
        if (!options.preflight.valid() ||
            options.preflight.wait_for(std::chrono::seconds(0)) != std::future_status::ready ||
            options.preflight.get().is_ok()) {
            return std::nullopt;
        }
        return options.preflight.get();
    };
    ObjectStore store(fs, pub_fd.get(), publication);

    auto record_last_release = [&](std::uint64_t serial, const std::string& manifest_sha256,
                                   const std::string& stamp) {
        // Best effort, like the stat cache: without it the next run takes the whole way.
        LastRelease now{serial, manifest_sha256, stamp, objects_stamp(pub_fd.get())};
        (void)write_file_atomic(fs, signer_fd.get(), LastRelease::kFile, now.format(), 0600, LastRelease::kFile);
    };

    // The cron case: the tree has not changed since the last release. A walk that builds no
    // entries tells (stamp_tree), and when the publication still holds that release whole, it
    // is made again under a new header. Otherwise the whole way below, which walks again: a
    // tree that changed costs that second walk, a tenth of what signing its changes costs.
    if (last) {
        // The walk starts at once, beside reading the previous release and making the new one.
        std::future<std::optional<TreeStamp>> walk = std::async(std::launch::async, [&] {
            return stamp_tree(src_fd.get(), options.special, options.threads);
        });
        if (!before_future.get()) return before_future.get().status();
        const Before& before = before_future.get().value();
        if (record_fits(*last, before)) {
            if (auto failed = preflight_failed()) return *failed;
            SSYNC_ASSIGN_OR_RETURN(Manifest next, next_header(options, before));
            std::string bytes = rewrite_manifest_header(next, before.current->bytes);
            // Signed beside the walk: the gpg processes GPGME starts (the engine's version, the
            // key lookup, the signature) take about as long as the walk. If the walk finds a
            // change, the signature is thrown away unused.
            std::future<Result<std::string>> speculative = std::async(std::launch::async, [&]() -> Result<std::string> {
                if (options.preflight.valid()) SSYNC_RETURN_IF_ERROR(options.preflight.get());
                return sign(bytes);
            });
            std::optional<TreeStamp> quick = walk.get();
            auto objects_held = [&]() -> Result<bool> {
                if (!last->objects_stamp.empty() && objects_stamp(pub_fd.get()) == last->objects_stamp) return true;
                const Result<ObjectSet>& objects = list_objects().get();
                if (!objects) return objects.status();
                return holds_every_object(*before.current, *objects);
            };
            bool unchanged = quick && quick->stamp == last->tree_stamp;
            if (unchanged) {
                SSYNC_ASSIGN_OR_RETURN(bool held, objects_held());
                unchanged = held && tree_exists(pub_fd.get());
            }
            std::optional<std::string> pack_index;
            if (unchanged && options.packs) {
                pack_index = reusable_pack_index(pub_fd.get(), before);
                unchanged = pack_index.has_value();
            }
            if (unchanged) {
                phases.scan = lap();
                SSYNC_RETURN_IF_ERROR(store.prepare());  // removes what a run that died left in objects/tmp
                PublishResult result;
                result.stats.files = result.stats.files_cached = quick->files;
                result.stats.dirs = quick->dirs;
                result.stats.symlinks = quick->symlinks;
                result.stats.bytes = quick->bytes;
                result.stats.reused_entries = true;
                SSYNC_ASSIGN_OR_RETURN(std::string signature, speculative.get());
                phases.sign = lap();
                SSYNC_RETURN_IF_ERROR(
                    write_release(fs, pub_fd.get(), publication, next.serial, bytes, signature, pack_index));
                result.manifest_sha256 = sha256_hex(bytes);
                record_last_release(next.serial, result.manifest_sha256, quick->stamp);
                phases.write = lap();
                result.stats.phases = phases;
                result.header = std::move(next);
                result.manifest_bytes = std::move(bytes);
                return result;
            }
            speculative.wait();  // unused; `sign` is called once at a time
        }
        if (walk.valid()) walk.wait();  // not taken when the record did not fit
        load_stat_cache();
        list_objects();
    }

    // Opens a file the walk found, which must still be that file. `now` receives its stat at
    // open time: what is read is what is published, its size and time, not the walk's.
    auto open_found = [&](const std::string& path, const std::string& display, std::uint64_t ino,
                          struct stat& now) -> Result<UniqueFd> {
        UniqueFd fd(open_beneath(src_fd.get(), path, O_RDONLY));
        if (!fd) return errno_status(display);
        if (::fstat(fd.get(), &now) != 0) return errno_status(display);
        if (!S_ISREG(now.st_mode) || static_cast<std::uint64_t>(now.st_ino) != ino) {
            return Status(Code::io, display + ": replaced while it was being published; run again");
        }
        return fd;
    };

    // Phase one, while the walk goes on: a file the last run recorded in the stat cache is
    // settled by the cache (same stat) or by hashing it (same size, so probably the same
    // content), which reads and writes nothing in the publication. Whether the publication
    // really holds that content is checked after the walk; what it lacks, and every other
    // file, is stored in phase two, once the walk has succeeded: a walk that fails (a FIFO, an
    // unreadable directory) leaves the publication untouched.
    Progress progress("signing", 0, 0, options.progress);
    std::uint64_t files_found = 0, bytes_found = 0;
    std::mutex outcomes_mutex;
    std::vector<std::pair<std::size_t, Outcome>> outcomes;
    auto settle = [&](const StatCache& cache, const FoundFile& f) -> Result<Outcome> {
        Outcome o;
        const StatCache::Record* r = cache.find(f.path);
        if (!r) return o;
        if (!options.rehash && r->stat == f.stat) {
            o.kind = Outcome::cached;
            o.sha256 = std::string(r->sha256);
            progress.add(1, f.stat.size);
        } else if (r->stat.size == f.stat.size) {
            std::string display = quote_path(f.path);
            struct stat now;
            SSYNC_ASSIGN_OR_RETURN(UniqueFd fd, open_found(f.path, display, f.stat.ino, now));
            SSYNC_ASSIGN_OR_RETURN(FileDigest digest, hash_fd(fd.get(), display, {}, size_at_open(now)));
            SSYNC_RETURN_IF_ERROR(unchanged_since_open(fd.get(), now, display));
            o.kind = Outcome::hashed;
            o.sha256 = std::move(digest.sha256);
            o.set_stat(now, digest.size);
            progress.add(1, digest.size);
        }
        return o;
    };
    // Files go to the workers in batches: a wake-up per file costs more than a cache lookup.
    WorkQueue<std::vector<FoundFile>> early(options.threads, [&](std::vector<FoundFile>& batch) -> Status {
        if (auto failed = preflight_failed()) return *failed;
        const StatCache& cache = cache_future.get();
        std::vector<std::pair<std::size_t, Outcome>> settled;
        settled.reserve(batch.size());
        for (const FoundFile& f : batch) {
            SSYNC_ASSIGN_OR_RETURN(Outcome o, settle(cache, f));
            if (o.kind != Outcome::unsettled) settled.emplace_back(f.found, std::move(o));
        }
        std::lock_guard<std::mutex> hold(outcomes_mutex);
        for (auto& s : settled) outcomes.push_back(std::move(s));
        return Status::ok();
    });
    constexpr std::size_t kBatchFiles = 64;
    constexpr std::uint64_t kBatchBytes = 4 << 20;
    std::vector<FoundFile> batch;
    std::uint64_t batch_bytes = 0;
    auto send_batch = [&] {
        if (batch.empty()) return;
        early.push(std::move(batch));
        batch.clear();
        batch_bytes = 0;
    };
    ScanOptions scan_options;
    scan_options.special = options.special;
    scan_options.on_file = [&](const ScannedEntry& se) {
        progress.set_totals(++files_found, bytes_found += se.entry.size);
        batch.push_back(FoundFile{se.found, se.entry.path, se.stat});
        batch_bytes += se.entry.size;
        if (batch.size() >= kBatchFiles || batch_bytes >= kBatchBytes) send_batch();
    };
    auto scanned_result = scan_tree(src_fd.get(), scan_options);
    if (scanned_result) {
        send_batch();
    } else {
        early.cancel();
    }
    Status early_status = early.finish();
    SSYNC_ASSIGN_OR_RETURN(std::vector<ScannedEntry> scanned, std::move(scanned_result));
    // Of the walk, before what is hashed below updates any file's stat.
    std::string stamp = tree_stamp(scanned);
    for (const ScannedEntry& se : scanned) {
        // Said before anything is stored, in the manifest's terms, rather than as the kernel's
        // "File name too long" about a line of kilobytes when the file is opened.
        if (se.entry.path.size() > kMaxPathBytes) {
            return Status(Code::io, quote_path(se.entry.path.substr(0, 120)) + "...: path longer than " +
                                        std::to_string(kMaxPathBytes) + " bytes, more than a manifest may hold");
        }
    }
    if (!before_future.get()) return before_future.get().status();
    const Before& before = before_future.get().value();
    if (auto failed = preflight_failed()) return *failed;
    SSYNC_RETURN_IF_ERROR(early_status);
    SSYNC_ASSIGN_OR_RETURN(Manifest next, next_header(options, before));

    PublishResult result;
    phases.scan = lap();

    // Whether the publication holds an object: what objects/ held when the run began. What
    // this run stores meanwhile is not added; content met twice is stored twice, and the
    // second rename finds the first object there.
    SSYNC_ASSIGN_OR_RETURN(ObjectSet objects, objects_future.get());
    auto held = [&](std::string_view sha256) { return objects.has(sha256); };

    // Phase two: store what is new, the largest files first so that no core is left with one
    // big file at the end.
    std::vector<Outcome> by_found(files_found);
    for (auto& [found, o] : outcomes) by_found[found] = std::move(o);
    outcomes = {};
    struct ToStore {
        std::size_t index;
        bool known_new;  // hashed in phase one and not held: no need to hash before storing
        bool counted;    // already shown as done by the progress line in phase one
    };
    std::vector<ToStore> files;
    for (std::size_t i = 0; i < scanned.size(); ++i) {
        ScannedEntry& se = scanned[i];
        if (se.entry.type != EntryType::file) continue;
        Outcome& o = by_found[se.found];
        if (o.kind != Outcome::unsettled && !held(o.sha256)) {
            files.push_back({i, o.kind == Outcome::hashed, true});
            continue;
        }
        switch (o.kind) {
            case Outcome::cached:
                se.entry.sha256 = std::move(o.sha256);
                result.stats.files_cached++;
                break;
            case Outcome::hashed:
                se.entry.sha256 = std::move(o.sha256);
                o.apply_stat(se);
                result.stats.files_hashed++;
                result.stats.bytes_hashed += se.entry.size;
                break;
            case Outcome::unsettled: files.push_back({i, false, false}); break;
        }
    }
    std::sort(files.begin(), files.end(), [&](const ToStore& a, const ToStore& b) {
        return scanned[a.index].entry.size > scanned[b.index].entry.size;
    });
    SSYNC_RETURN_IF_ERROR(store.prepare());
    // Like objects/: refused, not replaced, when something else is in its place.
    UniqueFd packs_fd;
    if (options.packs) {
        SSYNC_ASSIGN_OR_RETURN(packs_fd, own_dir(fs, pub_fd.get(), layout::kPacks, join_path(publication, layout::kPacks),
                                                 false));
    }
    // Files the stat cache did not settle are compared with the previous release by path.
    const Manifest* previous_entries = nullptr;
    if (before.current && std::any_of(files.begin(), files.end(), [](const ToStore& f) { return !f.known_new; })) {
        SSYNC_ASSIGN_OR_RETURN(previous_entries, before.current->entries());
    }
    std::atomic<std::uint64_t> hashed{0}, bytes_hashed{0};
    Status st = parallel_for(files.size(), options.threads, [&](std::size_t k) -> Status {
        if (auto failed = preflight_failed()) return *failed;
        ScannedEntry& se = scanned[files[k].index];
        Entry& e = se.entry;
        std::string display = quote_path(e.path);
        struct stat now;
        SSYNC_ASSIGN_OR_RETURN(UniqueFd fd, open_found(e.path, display, se.stat.ino, now));
        FileDigest digest;
        const Entry* old = previous_entries && !files[k].known_new ? previous_entries->find(e.path) : nullptr;
        if (old && old->type == EntryType::file && old->size == e.size) {
            // Probably unchanged (no stat cache told us so): hash without writing, and store
            // only if the object is new.
            SSYNC_ASSIGN_OR_RETURN(digest, hash_fd(fd.get(), display, {}, size_at_open(now)));
            SSYNC_RETURN_IF_ERROR(unchanged_since_open(fd.get(), now, display));
            if (!held(digest.sha256)) {
                if (::lseek(fd.get(), 0, SEEK_SET) != 0) return errno_status(display);
                SSYNC_ASSIGN_OR_RETURN(digest, store.store(fd.get(), display, &digest.sha256, now, digest.size));
            }
        } else {
            SSYNC_ASSIGN_OR_RETURN(digest, store.store(fd.get(), display, nullptr, now, size_at_open(now)));
        }
        e.sha256 = std::move(digest.sha256);
        Outcome::from_stat(now, digest.size).apply_stat(se);
        hashed++;
        bytes_hashed += digest.size;
        if (!files[k].counted) progress.add(1, digest.size);
        return Status::ok();
    });
    progress.finish();
    SSYNC_RETURN_IF_ERROR(st);
    // Packs are content too: written with the objects, made durable by the same syncfs.
    std::optional<std::string> pack_index;
    if (options.packs) {
        SSYNC_ASSIGN_OR_RETURN(pack_index, make_packs(fs, pub_fd.get(), packs_fd.get(), store, publication, before,
                                                      scanned, options.threads, result.stats));
    }

    result.stats.files_hashed += hashed;
    result.stats.bytes_hashed += bytes_hashed;
    result.stats.objects_stored = store.objects_stored_;
    result.stats.bytes_stored = store.bytes_stored_;
    next.entries.reserve(scanned.size());
    std::vector<FileStat> stats;
    stats.reserve(scanned.size());
    for (ScannedEntry& se : scanned) {
        switch (se.entry.type) {
            case EntryType::file:
                result.stats.files++;
                result.stats.bytes += se.entry.size;
                break;
            case EntryType::dir: result.stats.dirs++; break;
            case EntryType::symlink: result.stats.symlinks++; break;
        }
        next.entries.push_back(std::move(se.entry));
        stats.push_back(se.stat);
    }
    scanned = {};
    // The cache only saves work (and every digest it gives is checked against the objects
    // held), so it is made and written while the release is checked and signed; failing to
    // write it must not fail a release. `next.entries` stays as it is until this is done.
    auto cache_written = std::async(std::launch::async, [&fs, &signer_fd, &next, stats = std::move(stats)] {
        std::string cache = StatCache::format(next.entries, stats);
        (void)write_file_atomic(fs, signer_fd.get(), kCacheFile, cache, 0600, kCacheFile);
    });
    SSYNC_RETURN_IF_ERROR(check_manifest(next).with_context("new manifest"));

    // Every object must be on disk before a signed manifest can point at it. syncfs flushes
    // the whole file system (other programs' data too), so only when something was stored.
    if ((store.objects_stored_ > 0 || result.stats.packs_written > 0) && ::syncfs(pub_fd.get()) != 0) {
        return errno_status(publication + ": syncfs");
    }

    phases.hash = lap();

    if (options.preflight.valid()) SSYNC_RETURN_IF_ERROR(options.preflight.get());
    std::string bytes = write_manifest(next);
    SSYNC_ASSIGN_OR_RETURN(std::string signature, sign(bytes));
    phases.sign = lap();

    SSYNC_RETURN_IF_ERROR(write_release(fs, pub_fd.get(), publication, next.serial, bytes, signature, pack_index));
    const OwnManifest* basis = before.tree_basis();
    // tree/ is at the previous release already when the entries are the same (a --rehash of
    // an unchanged tree): nothing to compare, and the previous entries need no parse.
    auto basis_at = basis ? find_entries_part(basis->bytes) : std::nullopt;
    auto next_at = find_entries_part(bytes);
    bool same_entries = basis_at && next_at && basis->bytes.substr(*basis_at) == std::string_view(bytes).substr(*next_at);
    if (!same_entries || !tree_exists(pub_fd.get())) {
        const Manifest* basis_entries = nullptr;
        if (basis) {
            SSYNC_ASSIGN_OR_RETURN(basis_entries, basis->entries());
        }
        SSYNC_RETURN_IF_ERROR(update_tree(fs, pub_fd.get(), store, basis_entries, next));
    }
    cache_written.wait();
    result.manifest_sha256 = sha256_hex(bytes);
    record_last_release(next.serial, result.manifest_sha256, stamp);

    phases.write = lap();
    result.stats.phases = phases;
    result.manifest_bytes = std::move(bytes);
    result.entries = std::move(next.entries);
    result.header = std::move(next);
    return result;
}
}  // namespace

}  // namespace ssync
