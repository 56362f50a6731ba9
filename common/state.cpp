#include "ssync/state.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ssync/manifest.h"

namespace ssync {

Result<StateStore> StateStore::open(FileSystem& fs, const std::string& dir) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return errno_status(dir);
    SSYNC_ASSIGN_OR_RETURN(UniqueFd fd, open_dir_trusted(dir));
    return StateStore(fs, dir, std::move(fd));
}

Result<std::optional<SyncState>> StateStore::load(const std::string& name) const {
    std::string file = name + ".state";
    std::string display = join_path(dir_, file);
    struct stat st;
    if (::fstatat(fd_.get(), file.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return std::optional<SyncState>();
        return errno_status(display);
    }
    SSYNC_ASSIGN_OR_RETURN(std::string text, read_file_bounded(fd_.get(), file, 1 << 20, display));
    auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    auto damaged = [&](const char* why) {
        return Status(Code::io, display + ": damaged state file (" + why +
                                    "); fix or remove it knowingly: it guards against rollbacks");
    };
    if (j.is_discarded() || !j.is_object()) return damaged("not a JSON object");
    SyncState s;
    try {
        s.name = j.at("name").get<std::string>();
        // get<uint64_t> would turn -1 into 2^64-1 and 1.5 into 1.
        if (!j.at("serial").is_number_unsigned()) return damaged("serial is not a non-negative integer");
        s.serial = j.at("serial").get<std::uint64_t>();
        s.manifest_sha256 = j.at("manifest_sha256").get<std::string>();
        s.signature_sha256 = j.at("signature_sha256").get<std::string>();
        auto expires = parse_rfc3339(j.at("expires").get<std::string>());
        if (!expires) return damaged("bad expires");
        s.expires = *expires;
        s.dest = j.value("dest", "");
        s.keyring_sha256 = j.value("keyring_sha256", "");
        if (j.contains("verified_until")) {
            if (!j.at("verified_until").is_number_integer()) return damaged("verified_until is not an integer");
            s.verified_until = j.at("verified_until").get<std::int64_t>();
        }
    } catch (const nlohmann::json::exception&) {
        return damaged("missing or mistyped field");
    }
    if (s.name != name) return damaged("holds another name");
    for (const std::string* digest : {&s.manifest_sha256, &s.signature_sha256}) {
        if (digest->size() != 64 || !is_lower_hex(*digest)) return damaged("a digest is not 64 hex digits");
    }
    return std::optional<SyncState>(std::move(s));
}

Status StateStore::save(const SyncState& s) const {
    nlohmann::json j = {{"name", s.name},
                        {"serial", s.serial},
                        {"manifest_sha256", s.manifest_sha256},
                        {"signature_sha256", s.signature_sha256},
                        {"expires", format_rfc3339(s.expires)},
                        {"dest", s.dest},
                        {"keyring_sha256", s.keyring_sha256},
                        {"verified_until", s.verified_until}};
    std::string file = s.name + ".state";
    return write_file_atomic(*fs_, fd_.get(), file, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                             0600, join_path(dir_, file));
}

Status StateStore::check_writable() const {
    std::string probe = ".probe-" + std::to_string(::getpid());
    UniqueFd fd(fs_->openat(fd_.get(), probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600));
    if (!fd) return errno_status(dir_ + ": state directory not writable");
    if (fs_->unlinkat(fd_.get(), probe.c_str(), 0) != 0) return errno_status(join_path(dir_, probe));
    return Status::ok();
}

}  // namespace ssync
