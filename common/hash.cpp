#include "ssync/hash.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

namespace ssync {

struct Sha256::Impl {
    EVP_MD_CTX* ctx = nullptr;
};

namespace {
// OpenSSL 3 looks EVP_sha256() up in its provider tables, under a lock, at every
// EVP_DigestInit_ex: twice per file, which two hashing threads measurably contend on over
// 20,000 small files. Fetched once instead, and kept for the life of the process.
const EVP_MD* sha256_md() {
    static const EVP_MD* const md = [] {
        const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
        return fetched ? fetched : EVP_sha256();
    }();
    return md;
}
}  // namespace

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
    impl_->ctx = EVP_MD_CTX_new();
    // Only memory running out makes these fail: reported like any allocation that failed
    // (cli::main turns it into "out of memory", exit status 5), not an abort.
    if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx, sha256_md(), nullptr) != 1) {
        EVP_MD_CTX_free(impl_->ctx);
        throw std::bad_alloc();
    }
}

Sha256::~Sha256() { EVP_MD_CTX_free(impl_->ctx); }

void Sha256::update(const void* data, std::size_t size) {
    EVP_DigestUpdate(impl_->ctx, data, size);
}

std::string Sha256::finish_hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(impl_->ctx, digest, &len);
    EVP_DigestInit_ex(impl_->ctx, sha256_md(), nullptr);
    static const char hex[] = "0123456789abcdef";
    std::string out(len * 2, '0');
    for (unsigned i = 0; i < len; ++i) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    return out;
}

std::string sha256_hex(std::string_view data) {
    Sha256 h;
    h.update(data);
    return h.finish_hex();
}

Result<FileDigest> hash_fd(int fd, const std::string& display, const ChunkSink& sink, std::uint64_t stop_at) {
    // 256 KiB reads: large enough to amortise the system call, small enough to stay in L2.
    constexpr std::size_t kChunk = 256 * 1024;
    thread_local std::vector<char> buffer(kChunk);
    Sha256 h;
    FileDigest digest;
    bool advised = false;
    while (digest.size < stop_at) {
        std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, stop_at - digest.size));
        ssize_t got = ::read(fd, buffer.data(), want);
        if (got < 0) {
            if (errno == EINTR) continue;
            return errno_status(display);
        }
        if (got == 0) break;
        // Read-ahead hints pay off only for files longer than one read; most files are not.
        if (!advised && static_cast<std::size_t>(got) == kChunk) {
            ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
            advised = true;
        }
        h.update(buffer.data(), static_cast<std::size_t>(got));
        digest.size += static_cast<std::uint64_t>(got);
        if (sink) SSYNC_RETURN_IF_ERROR(sink(buffer.data(), static_cast<std::size_t>(got)));
    }
    digest.sha256 = h.finish_hex();
    return digest;
}

}  // namespace ssync
