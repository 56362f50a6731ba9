// Reading a publication from wherever it is served. One small interface; the implementation is
// chosen by the URL's scheme from a table (local paths and file:// now; https://, rsync:// and
// ssh:// join the table as they land). Every request carries a size limit.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ssync/hash.h"
#include "ssync/status.h"

namespace ssync {

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

    // The URL as given, for messages.
    virtual std::string describe() const = 0;
};

// Opens a transport for `url`: a local directory path or file:///path. Errors: usage for an
// unknown scheme, listing the supported ones.
Result<std::unique_ptr<Transport>> open_transport(const std::string& url);

}  // namespace ssync
