// Streaming SHA-256 through OpenSSL's EVP interface (which uses the CPU's SHA extensions).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "ssync/status.h"

namespace ssync {

class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;

    void update(const void* data, std::size_t size);
    void update(std::string_view data) { update(data.data(), data.size()); }
    // The digest as 64 lowercase hex digits; the object starts over afterwards.
    std::string finish_hex();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

std::string sha256_hex(std::string_view data);

struct FileDigest {
    std::uint64_t size = 0;
    std::string sha256;
};

// Called with each chunk as it is read, after it was hashed; an error stops the read.
using ChunkSink = std::function<Status(const char* data, std::size_t size)>;

// Reads the open file `fd` from its current offset to the end, hashing it and handing every
// chunk to `sink` (when set). `display` names the file in errors (code io).
// `stop_at`, when the caller knows the size from fstat at open, ends the read after that many
// bytes: no further read() just to find the end (one per small file), and the digest is of the
// file as fstat saw it should it grow meanwhile. A file that shrank still ends at its end.
Result<FileDigest> hash_fd(int fd, const std::string& display, const ChunkSink& sink = {},
                           std::uint64_t stop_at = UINT64_MAX);

}  // namespace ssync
