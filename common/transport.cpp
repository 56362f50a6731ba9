#include "ssync/transport.h"

#include <unistd.h>

#include <functional>
#include <utility>
#include <vector>

#include "ssync/fs.h"
#include "ssync/manifest.h"

namespace ssync {

namespace {

// A publication on a local or mounted file system. Paths from the caller are checked like
// manifest paths and opened without following symlinks, so a hostile publication directory
// cannot make us read elsewhere.
class LocalTransport : public Transport {
public:
    LocalTransport(std::string root, UniqueFd fd) : root_(std::move(root)), fd_(std::move(fd)) {}

    Result<std::string> fetch(const std::string& path, std::uint64_t max_bytes) override {
        std::string data;
        SSYNC_RETURN_IF_ERROR(fetch_to(path, max_bytes, [&](const char* p, std::size_t n) {
            data.append(p, n);
            return Status::ok();
        }));
        return data;
    }

    Status fetch_to(const std::string& path, std::uint64_t max_bytes, const ChunkSink& sink) override {
        std::string display = join_path(root_, path);
        if (Status s = check_relative(path); !s) return s.with_context(display);
        UniqueFd fd(open_beneath(fd_.get(), path, O_RDONLY));
        if (!fd) {
            if (errno == ENOENT) return Status(Code::not_found, display + ": not found");
            return errno_status(display);
        }
        struct stat st;
        if (::fstat(fd.get(), &st) != 0) return errno_status(display);
        if (!S_ISREG(st.st_mode)) return Status(Code::io, display + ": not a regular file");
        std::vector<char> buf(1 << 18);
        std::uint64_t total = 0;
        for (;;) {
            ssize_t got = ::read(fd.get(), buf.data(), buf.size());
            if (got < 0) {
                if (errno == EINTR) continue;
                return errno_status(display);
            }
            if (got == 0) break;
            total += static_cast<std::uint64_t>(got);
            if (total > max_bytes) {
                return Status(Code::io, display + ": larger than the expected " +
                                            std::to_string(max_bytes) + " bytes");
            }
            SSYNC_RETURN_IF_ERROR(sink(buf.data(), static_cast<std::size_t>(got)));
        }
        return Status::ok();
    }

    std::string describe() const override { return root_; }

private:
    static Status check_relative(const std::string& path) {
        // The same rules as manifest paths, except that ".ssync" is allowed: a mirror keeps its
        // manifest there.
        if (path.rfind(".ssync/", 0) == 0) return check_entry_path(path.substr(7));
        return check_entry_path(path);
    }
    std::string root_;
    UniqueFd fd_;
};

Result<std::unique_ptr<Transport>> open_local(const std::string& path) {
    SSYNC_ASSIGN_OR_RETURN(UniqueFd fd, open_dir_trusted(path));
    return std::unique_ptr<Transport>(new LocalTransport(path, std::move(fd)));
}

struct Scheme {
    const char* prefix;
    std::function<Result<std::unique_ptr<Transport>>(const std::string& url)> open;
};

const std::vector<Scheme>& schemes() {
    static const std::vector<Scheme> table = {
        {"file://", [](const std::string& url) { return open_local(url.substr(7)); }},
    };
    return table;
}

}  // namespace

Result<std::unique_ptr<Transport>> open_transport(const std::string& url) {
    for (const Scheme& s : schemes()) {
        if (url.rfind(s.prefix, 0) == 0) return s.open(url);
    }
    auto colon = url.find("://");
    if (colon != std::string::npos) {
        std::string supported;
        for (const Scheme& s : schemes()) supported += std::string(supported.empty() ? "" : ", ") + s.prefix;
        return Status(Code::usage, url + ": unsupported URL scheme (supported: " + supported +
                                       ", or a local path)");
    }
    return open_local(url);
}

}  // namespace ssync
