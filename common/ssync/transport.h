// Reading a publication from wherever it is served. One small interface; the implementation is
// chosen by the URL's scheme from a table (local paths and file:// now; https://, rsync:// and
// ssh:// join the table as they land). Every request carries a size limit.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ssync/fs.h"
#include "ssync/hash.h"
#include "ssync/status.h"

namespace ssync {

// One file to download into a directory the caller created (staging): `path` in the
// publication, written to `file_name` below `dir_fd`, which must hold exactly `size` bytes
// hashing to `sha256` once complete. `display` names the local file in errors of the local
// disk (a full disk must say which one); empty: file_name.
struct Download {
    std::string path;
    std::uint64_t size = 0;
    std::string sha256;
    int dir_fd = -1;
    std::string file_name;
    std::string display;
};

// Called once for each download that verified, with its file still open for writing, before it
// is closed: the moment to set metadata or start writeback without opening it again. Runs on
// whichever thread wrote the file, on several threads at once; an error fails the batch as it
// is.
using VerifiedHook = std::function<Status(const Download& download, int fd)>;

struct DownloadOptions {
    int attempts = 3;                    // tries per file before the batch fails
    // Transfers in flight where the transport can. Over HTTP/2 they share one connection, and
    // many keep the server's output and our input full, so that neither side sleeps between
    // small files (on a busy or virtual machine each wake-up costs a scheduling delay).
    int max_parallel = 64;
    // Threads that hash and write the bodies where the transport receives on a thread of its own
    // (DownloadQueue); 0: one per core, from 2 to 4.
    unsigned writers = 0;
    std::function<void(std::uint64_t files, std::uint64_t bytes)> progress;  // any thread
    VerifiedHook on_verified;            // optional
    FileSystem* fs = nullptr;            // what downloads are written through; null: system_fs()
};

class Transport {
public:
    virtual ~Transport() = default;

    // Fetches the file at `path` (relative to the publication root, '/'-separated) whole.
    // Errors: not_found when the publication has no such file; transport (or io for a local
    // publication) when it cannot be read or is larger than max_bytes.
    virtual Result<std::string> fetch(const std::string& path, std::uint64_t max_bytes) = 0;

    // Streams the file to `sink` chunk by chunk, stopping with an error as soon as more than
    // max_bytes arrive. The sink sees every byte exactly once.
    virtual Status fetch_to(const std::string& path, std::uint64_t max_bytes,
                            const ChunkSink& sink) = 0;

    // Downloads every file, streaming each through SHA-256 and stopping it the moment it
    // exceeds its size. A short, long or wrong download is removed and retried; when a file
    // still fails after options.attempts, the error names it (code transport, or io for the
    // local disk) and files already completed stay in place. The default implementation
    // fetches one file at a time through fetch_to(); transports that can do better override.
    virtual Status download_all(const std::vector<Download>& downloads, const DownloadOptions& options);

    // The URL as given, for messages.
    virtual std::string describe() const = 0;

    // The publication's directory when it is on this machine (a path or file:// URL), so that
    // a destination overlapping it can be refused; -1 otherwise.
    virtual int local_dir_fd() const { return -1; }
};

// Writes one Download to its file, hashing as it goes and refusing bytes beyond its size: the
// one place where downloaded bytes are checked, shared by every transport.
class DownloadWriter {
public:
    explicit DownloadWriter(const Download& download, FileSystem& fs = system_fs())
        : download_(download), fs_(fs) {}
    Status open();                                   // (re)creates the file, empty
    Status write(const char* data, std::size_t size);  // transport error past `size`
    // Transport error when short or the digest differs (the file stays open for discard());
    // else runs `on_verified` (when set) on the open file and closes it.
    Status finish(const VerifiedHook& on_verified = {});
    void discard();   // removes the file
    std::uint64_t written() const { return written_; }

private:
    const std::string& display() const { return download_.display.empty() ? download_.file_name : download_.display; }

    const Download& download_;
    FileSystem& fs_;
    UniqueFd fd_;
    std::uint64_t written_ = 0;
    std::unique_ptr<Sha256> hash_;
};

struct TransportOptions {
    std::string ca_file;            // https: trust this CA bundle instead of the system's
    long connect_timeout = 20;      // seconds to establish a connection
    long low_speed_time = 30;       // abort a transfer slower than low_speed_limit for this long
    long low_speed_limit = 1024;    // bytes per second
    int attempts = 3;               // tries per request
};

// Opens a transport for `url`: a local directory path or file:///path (and the schemes of
// the table in transport.cpp). Errors: usage for an unknown scheme, listing the supported ones.
Result<std::unique_ptr<Transport>> open_transport(const std::string& url,
                                                  const TransportOptions& options = {});

}  // namespace ssync
