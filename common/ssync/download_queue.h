// Downloads written on threads of their own. The network thread hands each file's body over in
// buffers as it arrives; writers write them through DownloadWriter (the one place where
// downloaded bytes are bounded and hashed), run the VerifiedHook, and report a verdict per
// file. This takes SHA-256, write() and the hook's system calls off the thread that decrypts
// and parses the responses. There are several writers, each file going to one of them by its
// index: copying a gigabyte into the page cache is the largest single cost of a first sync
// (perf: ~2/3 of a lone writer's time on the development VM), and it was one thread's.
//
// Memory is bounded: buffers of kBufferSize, at most `max_buffers` of them unless every buffer
// is held by a file still being received (then one more is made rather than wait forever);
// handing bytes over blocks while none is free. A file's messages are handled in the order they
// were handed over.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ssync/status.h"
#include "ssync/transport.h"

namespace ssync {

class DownloadQueue {
public:
    static constexpr std::size_t kBufferSize = 128 * 1024;

    // `downloads` and `options` must outlive the queue. Starts options.writers threads (0: one
    // per core, from 2 to 4).
    DownloadQueue(const std::vector<Download>& downloads, const DownloadOptions& options,
                  std::size_t max_buffers);
    // cancel().
    ~DownloadQueue();
    DownloadQueue(const DownloadQueue&) = delete;
    DownloadQueue& operator=(const DownloadQueue&) = delete;

    // The network thread's side; one thread only. `i` indexes `downloads`.
    // Appends bytes to download i's body (its size was checked by the caller). May wait for a
    // free buffer.
    void append(std::size_t i, const char* data, std::size_t size);
    // Hands over what is buffered for download i (its response ended; a resume may follow).
    void flush(std::size_t i);
    // Download i's body starts again from its first byte: what was handed over is dropped.
    void restart(std::size_t i);
    // Download i's body is complete: its writer checks it and reports a verdict.
    void finish(std::size_t i);
    // Download i is given up: its file is removed.
    void abandon(std::size_t i);

    // A finished download's verdict: ok (verified, hook run, file closed); transport when the
    // body was wrong (short, or the digest differs: the file is removed, a retry may follow);
    // any other code is fatal for the batch (the local disk, the hook) and may also name a
    // download that was not finished yet.
    struct Verdict {
        std::size_t index;
        Status status;
    };
    // The verdicts reported since the last call; waits up to `timeout` when there is none.
    std::vector<Verdict> take_verdicts(std::chrono::milliseconds timeout);

    // Stops the writers: what is still queued is dropped, every file not verified yet is removed,
    // verified ones stay. Waits for the writers. Idempotent.
    void cancel();

private:
    enum class Kind { data, restart, finish, abandon };
    struct Buffer {
        std::unique_ptr<char[]> bytes;
        std::size_t size = 0;
    };
    struct Message {
        std::size_t index;
        Kind kind;
        Buffer* buffer;  // data, or the last bytes of a finish; null otherwise
    };

    // One writer thread: its queue, and the open file of each download it is writing.
    struct Writer {
        std::deque<Message> queue;  // guarded by mutex_
        std::condition_variable cv;
        bool idle = false;          // guarded by mutex_: sleeping on cv
        std::unordered_map<std::size_t, std::unique_ptr<DownloadWriter>> files;  // its own
    };

    Buffer* acquire();                    // network thread
    void post(Message message);           // network thread
    void release(Buffer* buffer);         // writers
    void report(std::size_t index, Status status);  // writers
    void work(Writer& writer);            // a writer's loop
    void handle(Writer& writer, const Message& message);

    const std::vector<Download>& downloads_;
    const DownloadOptions& options_;
    const std::size_t max_buffers_;

    std::vector<Buffer*> filling_;  // network thread: per download, the buffer being filled

    std::mutex mutex_;  // guards what the writers and the network thread share, below
    std::condition_variable buffer_cv_, verdict_cv_;
    std::vector<std::unique_ptr<Buffer>> buffers_;  // all of them, owned here
    std::vector<Buffer*> free_;
    std::size_t queued_buffers_ = 0;  // buffers queued or being handled: the writers free them
    std::vector<Verdict> verdicts_;
    bool stopping_ = false;
    // Who sleeps on which condition variable: notified only then.
    bool waiting_for_buffer_ = false, waiting_for_verdict_ = false;
    // A fatal verdict was reported: every writer drops what comes after it.
    std::atomic<bool> failed_{false};

    std::vector<std::unique_ptr<Writer>> writers_;  // download i goes to writers_[i % size]
    std::vector<std::thread> threads_;              // threads_[i] runs writers_[i]
};

}  // namespace ssync
