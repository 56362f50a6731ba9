// A FileSystem that forwards to the kernel and fails chosen calls: for proving that a failed
// write, fsync or rename leaves nothing half-done.
#pragma once

#include <cerrno>
#include <mutex>
#include <string>

#include "ssync/fs.h"

namespace ssync::test {

class FaultInjectingFs : public FileSystem {
public:
    enum class Op { none, write, fsync, rename, link, mkdir, open_create, unlink };
    // Fails the `nth` (1-based) call of `op` with `err`, and every later one if `sticky`.
    void fail(Op op, int nth, int err, bool sticky = false) {
        std::lock_guard<std::mutex> lock(mutex_);
        op_ = op;
        nth_ = nth;
        err_ = err;
        sticky_ = sticky;
        count_ = 0;
    }
    int failures() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return failures_;
    }

    int openat(int dirfd, const char* path, int flags, mode_t mode) override {
        if ((flags & O_CREAT) && hit(Op::open_create)) return -1;
        return FileSystem::openat(dirfd, path, flags, mode);
    }
    ssize_t write(int fd, const void* buf, size_t count) override {
        if (hit(Op::write)) return -1;
        return FileSystem::write(fd, buf, count);
    }
    int fsync(int fd) override {
        if (hit(Op::fsync)) return -1;
        return FileSystem::fsync(fd);
    }
    int renameat2(int a, const char* b, int c, const char* d, unsigned flags) override {
        if (hit(Op::rename)) return -1;
        return FileSystem::renameat2(a, b, c, d, flags);
    }
    int linkat(int a, const char* b, int c, const char* d) override {
        if (hit(Op::link)) return -1;
        return FileSystem::linkat(a, b, c, d);
    }
    int mkdirat(int dirfd, const char* path, mode_t mode) override {
        if (hit(Op::mkdir)) return -1;
        return FileSystem::mkdirat(dirfd, path, mode);
    }

    int unlinkat(int dirfd, const char* path, int flags) override {
        if (hit(Op::unlink)) return -1;
        return FileSystem::unlinkat(dirfd, path, flags);
    }

private:
    // Downloads are written on several threads at once.
    bool hit(Op op) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (op != op_) return false;
        ++count_;
        if (count_ == nth_ || (sticky_ && count_ > nth_)) {
            ++failures_;
            errno = err_;
            return true;
        }
        return false;
    }
    mutable std::mutex mutex_;
    Op op_ = Op::none;
    int nth_ = 0, count_ = 0, err_ = 0, failures_ = 0;
    bool sticky_ = false;
};

}  // namespace ssync::test
