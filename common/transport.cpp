#include "ssync/transport.h"

#include <unistd.h>

#include <algorithm>
#include <functional>
#include <utility>
#include <vector>

#include "ssync/fs.h"
#include "ssync/http_transport.h"
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
        // Errors reading a publication are the publication's (transport), not our disk's.
        if (!fd) {
            if (errno == ENOENT) return Status(Code::not_found, display + ": not found");
            return Status(Code::transport, errno_status(display).message());
        }
        struct stat st;
        if (::fstat(fd.get(), &st) != 0) return Status(Code::transport, errno_status(display).message());
        if (!S_ISREG(st.st_mode)) return Status(Code::transport, display + ": not a regular file");
        std::vector<char> buf(1 << 18);
        std::uint64_t total = 0;
        for (;;) {
            ssize_t got = ::read(fd.get(), buf.data(), buf.size());
            if (got < 0) {
                if (errno == EINTR) continue;
                return Status(Code::transport, errno_status(display).message());
            }
            if (got == 0) break;
            total += static_cast<std::uint64_t>(got);
            if (total > max_bytes) {
                return Status(Code::too_large, display + ": larger than the expected " +
                                            std::to_string(max_bytes) + " bytes");
            }
            SSYNC_RETURN_IF_ERROR(sink(buf.data(), static_cast<std::size_t>(got)));
        }
        return Status::ok();
    }

    std::string describe() const override { return root_; }
    int local_dir_fd() const override { return fd_.get(); }

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
    std::function<Result<std::unique_ptr<Transport>>(const std::string& url,
                                                     const TransportOptions& options)>
        open;
};

const std::vector<Scheme>& schemes() {
    static const std::vector<Scheme> table = {
        {"file://", [](const std::string& url, const TransportOptions&) { return open_local(url.substr(7)); }},
        {"http://", open_http_transport},
        {"https://", open_http_transport},
    };
    return table;
}

}  // namespace

Status DownloadWriter::open() {
    fd_.reset(fs_.openat(download_.dir_fd, download_.file_name.c_str(),
                         O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600));
    if (!fd_) return errno_status(display());
    written_ = 0;
    hash_ = std::make_unique<Sha256>();
    return Status::ok();
}

Status DownloadWriter::write(const char* data, std::size_t size) {
    if (written_ + size > download_.size) {
        return Status(Code::transport, download_.path + ": more than the expected " +
                                           std::to_string(download_.size) + " bytes");
    }
    hash_->update(data, size);
    written_ += size;
    return write_all(fs_, fd_.get(), std::string_view(data, size), display());
}

Status DownloadWriter::finish(const VerifiedHook& on_verified) {
    if (written_ != download_.size) {
        return Status(Code::transport, download_.path + ": short download, " + std::to_string(written_) +
                                           " of " + std::to_string(download_.size) + " bytes");
    }
    std::string got = hash_->finish_hex();
    if (got != download_.sha256) {
        return Status(Code::transport, download_.path + ": SHA-256 " + got +
                                           " does not match the manifest's " + download_.sha256);
    }
    // No fsync per file: the installer syncs the whole file system once before anything staged
    // is renamed into place (one syncfs instead of thousands of fsyncs).
    if (on_verified) SSYNC_RETURN_IF_ERROR(on_verified(download_, fd_.get()));
    fd_.reset();
    return Status::ok();
}

void DownloadWriter::discard() {
    fd_.reset();
    fs_.unlinkat(download_.dir_fd, download_.file_name.c_str(), 0);
}

Status Transport::download_all(const std::vector<Download>& downloads, const DownloadOptions& options) {
    for (const Download& d : downloads) {
        Status last;
        for (int attempt = 0; attempt < std::max(1, options.attempts); ++attempt) {
            DownloadWriter writer(d, options.fs ? *options.fs : system_fs());
            last = writer.open();
            if (!last) return last;
            last = fetch_to(d.path, d.size, [&](const char* p, std::size_t n) { return writer.write(p, n); });
            if (last) last = writer.finish(options.on_verified);
            if (last) break;
            writer.discard();
            if (last.code() == Code::io) return last;  // our own disk: retrying will not help
        }
        // A missing or oversized object is the publication failing us: a transport error.
        if (last.code() == Code::not_found || last.code() == Code::too_large) {
            return Status(Code::transport, last.message());
        }
        if (!last) return last;
        if (options.progress) options.progress(1, d.size);
    }
    return Status::ok();
}

Result<std::unique_ptr<Transport>> open_transport(const std::string& url,
                                                  const TransportOptions& options) {
    for (const Scheme& s : schemes()) {
        if (url.rfind(s.prefix, 0) == 0) return s.open(url, options);
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
