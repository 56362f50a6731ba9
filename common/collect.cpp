#include "ssync/collect.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <unordered_set>

#include "ssync/manifest.h"
#include "ssync/pack_writer.h"
#include "ssync/publication.h"

namespace ssync {

namespace {

// A serial written as ssync writes it (no sign, no leading zero): what is not is not ours to
// judge, and is left alone.
std::optional<std::uint64_t> canonical_serial(std::string_view text) {
    auto serial = layout::parse_serial(text);
    if (!serial) return std::nullopt;
    std::string canonical = std::to_string(*serial);
    if (text != canonical && text != canonical + "\n") return std::nullopt;
    return serial;
}

// Opens the directory `name` (one component, a constant or a name gc has vetted) in dirfd,
// following no symlink. Unlike open_dir_beneath, errors carry `display`, the whole path with
// the publication's, so that an operator knows which directory of which publication failed.
Result<UniqueFd> open_subdir(int dirfd, const std::string& name, const std::string& display) {
    UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd) return fd;
    int e = errno;
    if (e == ELOOP || e == ENOTDIR) {
        return Status(Code::io, quote_path(display) + ": not a directory (a symlink or file is in the way)");
    }
    return errno_status(quote_path(display), e);
}

// The digests one kept release lists, and the packs its index lists; its manifest must parse
// and carry its serial, and its index (none is fine: it lists no pack) must parse.
Status add_release_digests(const std::string& publication, int releases_fd, std::uint64_t serial,
                           std::unordered_set<std::string>& digests, std::unordered_set<std::string>& packs) {
    std::string dir = std::to_string(serial);
    std::string dir_display = join_path(publication, layout::release_dir(serial));
    std::string display = join_path(dir_display, layout::kManifest);
    SSYNC_ASSIGN_OR_RETURN(UniqueFd release_fd, open_subdir(releases_fd, dir, dir_display));
    SSYNC_ASSIGN_OR_RETURN(std::string bytes,
                           read_file_bounded(release_fd.get(), layout::kManifest, ManifestLimits{}.max_bytes, display));
    auto manifest = parse_manifest(bytes);
    if (!manifest) return manifest.status().with_context(display);
    if (manifest->serial != serial) {
        return Status(Code::bad_manifest, display + ": serial " + std::to_string(manifest->serial) +
                                              " in a directory for serial " + std::to_string(serial));
    }
    for (const Entry& e : manifest->entries)
        if (e.type == EntryType::file) digests.insert(e.sha256);
    SSYNC_ASSIGN_OR_RETURN(std::optional<PackIndex> index,
                           read_pack_index(release_fd.get(), join_path(dir_display, layout::kPackIndex)));
    if (index) {
        for (const Pack& pack : index->packs) packs.insert(layout::pack_file_name(pack.sha256));
    }
    return Status::ok();
}

}  // namespace

Result<CollectResult> collect_garbage(const std::string& publication, const CollectOptions& options) {
    if (options.keep == 0) return Status(Code::usage, "--keep: must be at least 1 (the current release)");
    FileSystem& fs = options.fs ? *options.fs : system_fs();
    SSYNC_ASSIGN_OR_RETURN(UniqueFd pub_fd, open_dir_trusted(publication));
    const std::string signer_display = join_path(publication, layout::kSignerDir);
    UniqueFd signer_fd(::openat(pub_fd.get(), layout::kSignerDir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!signer_fd) {
        // Only a directory that is not there says "not a publication" (a usage error: the
        // wrong --out). One that cannot be opened (permissions, a file in its place) is the
        // file system's answer about a real publication, and reported as such.
        int e = errno;
        if (e == ENOENT) {
            return Status(Code::usage, quote_path(publication) + ": not a publication made by ssync-signer (no " +
                                           layout::kSignerDir + "/)");
        }
        if (e == ELOOP || e == ENOTDIR) {
            return Status(Code::io, quote_path(signer_display) + ": not a directory (a symlink or file is in the way)");
        }
        return errno_status(quote_path(signer_display), e);
    }
    SSYNC_ASSIGN_OR_RETURN(FileLock lock, FileLock::acquire(signer_fd.get(), layout::kSignerLock, signer_display));

    SSYNC_ASSIGN_OR_RETURN(std::string latest_text, read_file_bounded(pub_fd.get(), layout::kLatest, 32,
                                                                      join_path(publication, layout::kLatest)));
    auto latest = canonical_serial(latest_text);
    if (!latest) {
        return Status(Code::bad_manifest, join_path(publication, layout::kLatest) + ": not a serial number");
    }

    // Which releases stay: `latest` and the newest keep-1 below it. Directories above it were
    // written by a sign that failed before its switch: never published, so they go.
    const std::string releases_display = join_path(publication, layout::kReleases);
    SSYNC_ASSIGN_OR_RETURN(UniqueFd releases_fd, open_subdir(pub_fd.get(), layout::kReleases, releases_display));
    SSYNC_ASSIGN_OR_RETURN(std::vector<DirChild> release_dirs, list_dir(releases_fd.get(), releases_display));
    std::vector<std::uint64_t> serials;
    for (const DirChild& c : release_dirs)
        if (auto s = canonical_serial(c.name)) serials.push_back(*s);
    if (std::find(serials.begin(), serials.end(), *latest) == serials.end()) {
        return Status(Code::bad_manifest, quote_path(publication) + ": `latest` names serial " + std::to_string(*latest) +
                                              ", which has no releases/ directory");
    }
    std::sort(serials.rbegin(), serials.rend());
    CollectResult result;
    for (std::uint64_t s : serials) {
        bool keep = s <= *latest && result.kept.size() < options.keep;
        (keep ? result.kept : result.removed_releases).push_back(s);
    }

    // Everything that must survive is known before anything is removed: a kept manifest that
    // cannot be read stops the run with the publication untouched.
    std::unordered_set<std::string> wanted, wanted_packs;
    for (std::uint64_t s : result.kept) {
        SSYNC_RETURN_IF_ERROR(add_release_digests(publication, releases_fd.get(), s, wanted, wanted_packs));
    }

    // Releases first, then objects and packs: a run cut short leaves only unreferenced ones,
    // which the next run removes.
    if (!options.dry_run) {
        for (std::uint64_t s : result.removed_releases) {
            std::string name = std::to_string(s);
            SSYNC_RETURN_IF_ERROR(remove_tree(fs, releases_fd.get(), name, join_path(publication, layout::release_dir(s))));
        }
    }

    const std::string objects_display = join_path(publication, layout::kObjects);
    SSYNC_ASSIGN_OR_RETURN(UniqueFd objects_fd, open_subdir(pub_fd.get(), layout::kObjects, objects_display));
    SSYNC_ASSIGN_OR_RETURN(std::vector<DirChild> fanout, list_dir(objects_fd.get(), objects_display));
    for (const DirChild& d : fanout) {
        std::string sub_display = join_path(objects_display, d.name);
        if (d.name == "tmp") {
            // Temporaries of runs that died; we hold the lock, so no sign is writing them.
            SSYNC_ASSIGN_OR_RETURN(UniqueFd tmp_fd, open_subdir(objects_fd.get(), d.name, sub_display));
            SSYNC_ASSIGN_OR_RETURN(std::vector<DirChild> leftovers, list_dir(tmp_fd.get(), sub_display));
            for (const DirChild& t : leftovers) {
                if (!options.dry_run) {
                    SSYNC_RETURN_IF_ERROR(remove_tree(fs, tmp_fd.get(), t.name, sub_display + "/" + t.name));
                }
                ++result.temporaries_removed;
            }
            continue;
        }
        if (d.name.size() != 2 || !is_lower_hex(d.name)) continue;
        SSYNC_ASSIGN_OR_RETURN(UniqueFd sub_fd, open_subdir(objects_fd.get(), d.name, sub_display));
        SSYNC_ASSIGN_OR_RETURN(std::vector<DirChild> objects, list_dir(sub_fd.get(), sub_display));
        for (const DirChild& o : objects) {
            if (o.name.size() != 64 || !is_lower_hex(o.name) || o.name.compare(0, 2, d.name) != 0) continue;
            if (wanted.count(o.name)) {
                ++result.objects_kept;
                continue;
            }
            std::string display = sub_display + "/" + o.name;
            struct stat st;
            if (::fstatat(sub_fd.get(), o.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno_status(display);
            if (!S_ISREG(st.st_mode)) continue;
            if (!options.dry_run && fs.unlinkat(sub_fd.get(), o.name.c_str(), 0) != 0) return errno_status(display);
            ++result.objects_removed;
            result.bytes_removed += static_cast<std::uint64_t>(st.st_size);
        }
    }

    // A publication signed only with --no-packs (or before packs) has no packs/.
    const std::string packs_display = join_path(publication, layout::kPacks);
    Result<UniqueFd> packs_fd = open_subdir(pub_fd.get(), layout::kPacks, packs_display);
    if (!packs_fd) {
        if (packs_fd.status().os_error() == ENOENT) return result;
        return packs_fd.status();
    }
    SSYNC_ASSIGN_OR_RETURN(std::vector<DirChild> packs, list_dir(packs_fd->get(), packs_display));
    for (const DirChild& p : packs) {
        if (!layout::is_pack_file_name(p.name)) continue;
        if (wanted_packs.count(p.name)) {
            ++result.packs_kept;
            continue;
        }
        std::string display = join_path(packs_display, p.name);
        struct stat st;
        if (::fstatat(packs_fd->get(), p.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno_status(display);
        if (!S_ISREG(st.st_mode)) continue;
        if (!options.dry_run && fs.unlinkat(packs_fd->get(), p.name.c_str(), 0) != 0) return errno_status(display);
        ++result.packs_removed;
        result.pack_bytes_removed += static_cast<std::uint64_t>(st.st_size);
    }
    return result;
}

}  // namespace ssync
