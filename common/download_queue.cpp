#include "ssync/download_queue.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace ssync {

DownloadQueue::DownloadQueue(const std::vector<Download>& downloads, const DownloadOptions& options,
                             std::size_t max_buffers)
    : downloads_(downloads),
      options_(options),
      max_buffers_(std::max<std::size_t>(1, max_buffers)),
      filling_(downloads.size(), nullptr) {
    worker_ = std::thread([this] { work(); });
}

DownloadQueue::~DownloadQueue() { cancel(); }

void DownloadQueue::cancel() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
        for (const Message& m : queue_) {
            if (m.buffer) {
                m.buffer->size = 0;
                free_.push_back(m.buffer);
                --queued_buffers_;
            }
        }
        queue_.clear();
    }
    work_cv_.notify_all();
    buffer_cv_.notify_all();
    if (worker_.joinable()) worker_.join();
}

DownloadQueue::Buffer* DownloadQueue::acquire() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        if (!free_.empty()) {
            Buffer* b = free_.back();
            free_.pop_back();
            return b;
        }
        // Only the worker frees buffers: with none queued for it, waiting would never end (every
        // buffer is being filled), so one more is made.
        if (buffers_.size() < max_buffers_ || queued_buffers_ == 0 || stopping_) {
            auto b = std::make_unique<Buffer>();
            b->bytes = std::make_unique<char[]>(kBufferSize);
            buffers_.push_back(std::move(b));
            return buffers_.back().get();
        }
        waiting_for_buffer_ = true;
        buffer_cv_.wait(lock);
        waiting_for_buffer_ = false;
    }
}

void DownloadQueue::post(Message message) {
    bool wake = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) {
            if (message.buffer) {
                message.buffer->size = 0;
                free_.push_back(message.buffer);
            }
            return;
        }
        if (message.buffer) ++queued_buffers_;
        queue_.push_back(message);
        wake = worker_idle_;
    }
    // Waking a thread is a system call: only when it sleeps (it looks again under the lock).
    if (wake) work_cv_.notify_one();
}

void DownloadQueue::append(std::size_t i, const char* data, std::size_t size) {
    while (size > 0) {
        Buffer*& b = filling_[i];
        if (!b) b = acquire();
        std::size_t n = std::min(size, kBufferSize - b->size);
        std::memcpy(b->bytes.get() + b->size, data, n);
        b->size += n;
        data += n;
        size -= n;
        if (b->size == kBufferSize) {
            post({i, Kind::data, b});
            b = nullptr;
        }
    }
}

void DownloadQueue::flush(std::size_t i) {
    if (Buffer* b = std::exchange(filling_[i], nullptr)) post({i, Kind::data, b});
}

void DownloadQueue::restart(std::size_t i) {
    if (filling_[i]) filling_[i]->size = 0;
    post({i, Kind::restart, nullptr});
}

void DownloadQueue::finish(std::size_t i) { post({i, Kind::finish, std::exchange(filling_[i], nullptr)}); }

void DownloadQueue::abandon(std::size_t i) {
    if (filling_[i]) filling_[i]->size = 0;
    post({i, Kind::abandon, nullptr});
}

std::vector<DownloadQueue::Verdict> DownloadQueue::take_verdicts(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (verdicts_.empty() && timeout.count() > 0) {
        waiting_for_verdict_ = true;
        verdict_cv_.wait_for(lock, timeout, [&] { return !verdicts_.empty(); });
        waiting_for_verdict_ = false;
    }
    return std::exchange(verdicts_, {});
}

void DownloadQueue::release(Buffer* buffer) {
    bool wake = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        buffer->size = 0;
        free_.push_back(buffer);
        --queued_buffers_;
        wake = waiting_for_buffer_;
    }
    if (wake) buffer_cv_.notify_one();
}

void DownloadQueue::report(std::size_t index, Status status) {
    if (!status.is_ok() && status.code() != Code::transport) failed_ = true;
    bool wake = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        verdicts_.push_back({index, std::move(status)});
        wake = waiting_for_verdict_;
    }
    if (wake) verdict_cv_.notify_one();
}

void DownloadQueue::work() {
    std::deque<Message> batch;
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            worker_idle_ = true;
            work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            worker_idle_ = false;
            if (stopping_) break;
            batch.swap(queue_);
        }
        // Handled outside the lock, so that the network thread keeps handing over meanwhile.
        for (const Message& m : batch) {
            handle(m);
            if (m.buffer) release(m.buffer);
        }
        batch.clear();
    }
    // Whatever is still open never verified.
    for (auto& [index, writer] : writers_) writer->discard();
    writers_.clear();
}

void DownloadQueue::handle(const Message& m) {
    auto it = writers_.find(m.index);
    if (m.kind == Kind::restart || m.kind == Kind::abandon) {
        if (it != writers_.end()) {
            it->second->discard();
            writers_.erase(it);
        }
        return;
    }
    if (failed_) return;  // the batch is over: at most remove files (above)
    if (it == writers_.end()) {
        FileSystem& fs = options_.fs ? *options_.fs : system_fs();
        auto writer = std::make_unique<DownloadWriter>(downloads_[m.index], fs);
        if (Status s = writer->open(); !s) return report(m.index, s);
        it = writers_.emplace(m.index, std::move(writer)).first;
    }
    DownloadWriter& writer = *it->second;
    if (m.buffer && m.buffer->size > 0) {
        if (Status s = writer.write(m.buffer->bytes.get(), m.buffer->size); !s) {
            writer.discard();
            writers_.erase(it);
            // The network side bounds every body, so a write past the size is not the
            // server's doing: fatal, like a failing disk.
            return report(m.index, s.code() == Code::transport ? Status(Code::internal, s.message()) : s);
        }
    }
    if (m.kind != Kind::finish) return;
    Status s = writer.finish(options_.on_verified);
    if (!s) writer.discard();
    writers_.erase(it);
    report(m.index, std::move(s));
}

}  // namespace ssync
