// Running independent work items on all cores.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "ssync/status.h"

namespace ssync {

// Calls work(i) for every i in [0, count) on up to `threads` threads (0: one per core). Items
// are taken in index order, so callers put the largest first for balance. After the first
// error no new item starts; that error is returned.
Status parallel_for(std::size_t count, unsigned threads,
                    const std::function<Status(std::size_t)>& work);

unsigned default_thread_count();

// A pipeline: `threads` workers take items while the producer is still making them, where
// parallel_for needs every item up front (a tree walk feeding the hashers). Items are taken in
// the order pushed. After the first error no new item starts and push() returns false.
template <typename Item>
class WorkQueue {
public:
    WorkQueue(unsigned threads, std::function<Status(Item&)> work) : work_(std::move(work)) {
        if (threads == 0) threads = default_thread_count();
        workers_.reserve(threads);
        for (unsigned t = 0; t < threads; ++t) {
            // A thread that cannot be started leaves its share to the others; with none, the
            // error leaves the constructor (no running std::thread is destroyed on the way).
            try {
                workers_.emplace_back([this] { run(); });
            } catch (...) {
                if (workers_.empty()) throw;
                break;
            }
        }
    }
    WorkQueue(const WorkQueue&) = delete;
    WorkQueue& operator=(const WorkQueue&) = delete;
    ~WorkQueue() { stop(); }

    bool push(Item item) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (failed_ || closed_) return false;
            items_.push_back(std::move(item));
        }
        ready_.notify_one();
        return true;
    }

    // Stops taking items: those not yet started are dropped (the producer failed).
    void cancel() {
        std::lock_guard<std::mutex> lock(mutex_);
        items_.clear();
        closed_ = true;
        ready_.notify_all();
    }

    // No more items: waits until the workers are done and returns the first error.
    Status finish() {
        stop();
        return first_error_;
    }

private:
    // Lets the workers finish what was pushed and joins them; allocates nothing (destructor).
    void stop() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            closed_ = true;
        }
        ready_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
    }

    void run() {
        for (;;) {
            Item item;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                ready_.wait(lock, [this] { return failed_ || closed_ || !items_.empty(); });
                if (failed_ || items_.empty()) return;
                item = std::move(items_.front());
                items_.pop_front();
            }
            Status s;
            try {
                s = work_(item);
            } catch (...) {  // an exception leaving a thread would end the process
                s = status_from_current_exception();
            }
            if (!s) {
                std::lock_guard<std::mutex> lock(mutex_);
                if (!failed_) first_error_ = std::move(s);
                failed_ = true;
                items_.clear();
                ready_.notify_all();
                return;
            }
        }
    }

    std::function<Status(Item&)> work_;
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<Item> items_;
    bool closed_ = false, failed_ = false;
    Status first_error_;
    std::vector<std::thread> workers_;
};

}  // namespace ssync
