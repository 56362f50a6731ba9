// Running independent work items on all cores.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <system_error>
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

// Starts up to `count` threads, thread i running body(i). A thread that cannot be started
// (memory, a thread limit) ends the starting: the caller gets fewer, possibly none, and gives
// their share to those it has. Never throws; the caller joins what it gets.
template <typename Body>
std::vector<std::thread> start_threads(unsigned count, Body body) {
    std::vector<std::thread> threads;
    try {
        threads.reserve(count);
        for (unsigned i = 0; i < count; ++i) threads.emplace_back(body, i);
    } catch (...) {  // std::system_error from the thread, bad_alloc from reserve
    }
    return threads;
}

// start_threads() for a pool that needs at least one thread: throws std::system_error ("cannot
// start a thread") when none started.
template <typename Body>
std::vector<std::thread> start_some_threads(unsigned count, Body body) {
    std::vector<std::thread> threads = start_threads(count, std::move(body));
    if (threads.empty()) {
        throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                                "cannot start a thread");
    }
    return threads;
}

// A pipeline: `threads` workers take items while the producer is still making them, where
// parallel_for needs every item up front (a tree walk feeding the hashers). Items are taken in
// the order pushed. After the first error no new item starts and push() returns false.
template <typename Item>
class WorkQueue {
public:
    WorkQueue(unsigned threads, std::function<Status(Item&)> work) : work_(std::move(work)) {
        if (threads == 0) threads = default_thread_count();
        workers_ = start_some_threads(threads, [this](unsigned) { run(); });
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
