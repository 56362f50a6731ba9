#include "ssync/download_queue.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "ssync/parallel.h"

namespace ssync {

DownloadQueue::DownloadQueue(const std::vector<Download>& downloads, const DownloadOptions& options,
                             std::size_t max_buffers)
    : downloads_(downloads),
      options_(options),
      max_buffers_(std::max<std::size_t>(1, max_buffers)),
      filling_(downloads.size(), nullptr) {
    unsigned writers = options.writers ? options.writers : std::clamp(std::thread::hardware_concurrency(), 2u, 4u);
    for (unsigned i = 0; i < writers; ++i) writers_.push_back(std::make_unique<Writer>());
    // The threads get the records themselves, not writers_, which shrinks below when fewer
    // threads could start (fewer writers will do; none cannot).
    std::vector<Writer*> records;
    for (auto& w : writers_) records.push_back(w.get());
    threads_ = start_some_threads(writers, [this, records](unsigned i) { work(*records[i]); });
    writers_.resize(threads_.size());
}

DownloadQueue::~DownloadQueue() { cancel(); }

void DownloadQueue::cancel() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
        for (auto& w : writers_) {
            // Allocates nothing (this runs in the destructor): a queued buffer is left out of
            // free_, still owned by buffers_.
            for (const Message& m : w->queue) {
                if (m.buffer) {
                    m.buffer->size = 0;
                    --queued_buffers_;
                }
            }
            w->queue.clear();
        }
    }
    for (auto& w : writers_) w->cv.notify_all();
    buffer_cv_.notify_all();
    for (auto& t : threads_) {
        if (t.joinable()) t.join();
    }
}

DownloadQueue::Buffer* DownloadQueue::acquire() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        if (!free_.empty()) {
            Buffer* b = free_.back();
            free_.pop_back();
            return b;
        }
        // Only the writers free buffers: with none queued for them, waiting would never end
        // (every buffer is being filled), so one more is made.
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
    Writer* writer = nullptr;
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
        writer = writers_[message.index % writers_.size()].get();
        writer->queue.push_back(message);
        wake = writer->idle;
    }
    // Waking a thread is a system call: only when it sleeps (it looks again under the lock).
    if (wake) writer->cv.notify_one();
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
    if (!status.is_ok() && status.code() != Code::transport) failed_.store(true);
    bool wake = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        verdicts_.push_back({index, std::move(status)});
        wake = waiting_for_verdict_;
    }
    if (wake) verdict_cv_.notify_one();
}

void DownloadQueue::work(Writer& writer) {
    std::deque<Message> batch;
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            writer.idle = true;
            writer.cv.wait(lock, [&] { return stopping_ || !writer.queue.empty(); });
            writer.idle = false;
            if (stopping_) break;
            batch.swap(writer.queue);
        }
        // Handled outside the lock, so that the network thread keeps handing over meanwhile.
        for (const Message& m : batch) {
            try {
                handle(writer, m);
            } catch (...) {  // out of memory: this file fails, and with it the batch
                if (auto it = writer.files.find(m.index); it != writer.files.end()) {
                    it->second->discard();
                    writer.files.erase(it);
                }
                report(m.index, status_from_current_exception());
            }
            if (m.buffer) release(m.buffer);
        }
        batch.clear();
    }
    // Whatever is still open never verified.
    for (auto& [index, file] : writer.files) file->discard();
    writer.files.clear();
}

void DownloadQueue::handle(Writer& writer, const Message& m) {
    auto it = writer.files.find(m.index);
    if (m.kind == Kind::restart || m.kind == Kind::abandon) {
        if (it != writer.files.end()) {
            it->second->discard();
            writer.files.erase(it);
        }
        return;
    }
    if (failed_.load()) return;  // the batch is over: at most remove files (above)
    if (it == writer.files.end()) {
        FileSystem& fs = options_.fs ? *options_.fs : system_fs();
        auto file = std::make_unique<DownloadWriter>(downloads_[m.index], fs);
        if (Status s = file->open(); !s) return report(m.index, s);
        it = writer.files.emplace(m.index, std::move(file)).first;
    }
    DownloadWriter& file = *it->second;
    if (m.buffer && m.buffer->size > 0) {
        if (Status s = file.write(m.buffer->bytes.get(), m.buffer->size); !s) {
            file.discard();
            writer.files.erase(it);
            // The network side bounds every body, so a write past the size is not the
            // server's doing: fatal, like a failing disk.
            return report(m.index, s.code() == Code::transport ? Status(Code::internal, s.message()) : s);
        }
    }
    if (m.kind != Kind::finish) return;
    Status s = file.finish(options_.on_verified);
    if (!s) file.discard();
    writer.files.erase(it);
    report(m.index, std::move(s));
}

}  // namespace ssync
