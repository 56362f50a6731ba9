#include "ssync/pack_writer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <unordered_set>

#include "ssync/hash.h"
#include "ssync/publication.h"

namespace ssync {

Result<std::optional<PackIndex>> read_pack_index(int release_fd, const std::string& display) {
    auto text = read_file_bounded(release_fd, layout::kPackIndex, kMaxPackIndexBytes, display);
    if (!text) {
        if (text.status().os_error() == ENOENT) return std::optional<PackIndex>();
        return text.status();
    }
    SSYNC_ASSIGN_OR_RETURN(PackIndex index, parse_pack_index(*text, display));
    return std::optional<PackIndex>(std::move(index));
}

bool pack_present(int packs_fd, const Pack& pack) {
    std::string name = layout::pack_file_name(pack.sha256);
    struct stat st;
    return ::fstatat(packs_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
           static_cast<std::uint64_t>(st.st_size) == pack.size;
}

PackPlan plan_packs(const std::vector<PackedObject>& small, const std::vector<Pack>& usable) {
    std::unordered_set<std::string_view> wanted;
    wanted.reserve(small.size());
    for (const PackedObject& o : small) wanted.insert(o.sha256);
    PackPlan plan;
    std::unordered_set<std::string_view> packed;
    for (const Pack& pack : usable) {
        bool used = false;
        for (const PackedObject& o : pack.objects) used = used || wanted.count(o.sha256) > 0;
        if (!used) continue;
        plan.index.packs.push_back(pack);
        for (const PackedObject& o : pack.objects) packed.insert(o.sha256);
    }
    plan.first_new = plan.index.packs.size();
    Pack* open = nullptr;
    for (const PackedObject& o : small) {
        // Inserted as it goes: a digest met twice is packed once.
        if (!packed.insert(o.sha256).second) continue;
        if (!open) {
            plan.index.packs.emplace_back();
            open = &plan.index.packs.back();
        }
        open->objects.push_back(o);
        open->size += o.size;
        if (open->size >= kPackTargetSize) open = nullptr;
    }
    return plan;
}

std::string PackWriter::in_publication(std::string_view relative) const {
    return join_path(publication_, std::string(relative));
}

Status PackWriter::write_pack(Pack& pack) {
    std::string tmp = "p" + std::to_string(::getpid()) + "-" + std::to_string(counter_++);
    const std::string tmp_display = in_publication(std::string("objects/tmp/") + tmp);
    UniqueFd out(fs_.openat(tmp_fd_, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444));
    if (!out) return errno_status(tmp_display);
    auto fail = [&](Status s) {
        fs_.unlinkat(tmp_fd_, tmp.c_str(), 0);
        return s;
    };

    // Objects are copied into one buffer and written a few megabytes at a time: one read per
    // object (they are at most kPackMaxObjectSize) and few writes, no fsync (the caller's
    // syncfs covers the packs with the objects).
    constexpr std::size_t kBuffer = 4 << 20;
    static_assert(kBuffer >= kPackMaxObjectSize);
    std::unique_ptr<char[]> buffer(new char[kBuffer]);
    std::size_t used = 0;
    Sha256 hash;
    auto flush = [&]() -> Status {
        hash.update(buffer.get(), used);
        Status s = write_all(fs_, out.get(), std::string_view(buffer.get(), used), tmp_display);
        used = 0;
        return s;
    };
    for (const PackedObject& o : pack.objects) {
        const std::string display = in_publication(layout::object_path(o.sha256));
        if (kBuffer - used < o.size) {
            if (Status s = flush(); !s) return fail(s);
        }
        UniqueFd in(::openat(fan_out_(o.sha256), o.sha256.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
        if (!in) return fail(errno_status(display));
        struct stat st;
        if (::fstat(in.get(), &st) != 0) return fail(errno_status(display));
        if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) != o.size) {
            return fail(Status(Code::io, display + ": not a regular file of " + std::to_string(o.size) +
                                             " bytes, as the manifest says; remove it and sign again"));
        }
        std::size_t got = 0;
        while (got < o.size) {
            ssize_t n = ::read(in.get(), buffer.get() + used + got, o.size - got);
            if (n < 0) {
                if (errno == EINTR) continue;
                return fail(errno_status(display));
            }
            if (n == 0) return fail(Status(Code::io, display + ": shorter than the manifest says"));
            got += static_cast<std::size_t>(n);
        }
        used += got;
    }
    if (Status s = flush(); !s) return fail(s);
    out.reset();
    pack.sha256 = hash.finish_hex();

    std::string name = layout::pack_file_name(pack.sha256);
    const std::string final_display = in_publication(layout::pack_path(pack.sha256));
    // As for objects: the same name is the same bytes, so a regular file of the right size
    // there is kept; anything else there (a symlink, a damaged file) is removed, unfollowed,
    // and the rename tried again.
    for (int attempt = 0;; ++attempt) {
        if (fs_.renameat2(tmp_fd_, tmp.c_str(), packs_fd_, name.c_str(), RENAME_NOREPLACE) == 0) break;
        int e = errno;
        if (e != EEXIST || attempt == 2) return fail(errno_status(final_display, e));
        if (pack_present(packs_fd_, pack)) {
            fs_.unlinkat(tmp_fd_, tmp.c_str(), 0);
            return Status::ok();
        }
        if (Status removed = remove_tree(fs_, packs_fd_, name, final_display); !removed) return fail(removed);
    }
    return Status::ok();
}

}  // namespace ssync
