#include "ssync/parallel.h"

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace ssync {

unsigned default_thread_count() {
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 2 : n;
}

Status parallel_for(std::size_t count, unsigned threads,
                    const std::function<Status(std::size_t)>& work) {
    if (threads == 0) threads = default_thread_count();
    if (threads > count) threads = static_cast<unsigned>(count);
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex error_mutex;
    Status first_error;
    auto run = [&] {
        for (;;) {
            if (failed.load(std::memory_order_relaxed)) return;
            std::size_t i = next.fetch_add(1, std::memory_order_relaxed);
            if (i >= count) return;
            Status s;
            try {
                s = work(i);
            } catch (...) {  // an exception leaving a thread would end the process
                s = status_from_current_exception();
            }
            if (!s) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!failed.exchange(true)) first_error = s;
                return;
            }
        }
    };
    if (threads <= 1) {
        run();
        return first_error;
    }
    std::vector<std::thread> pool = start_threads(threads - 1, [&](unsigned) { run(); });
    run();
    for (auto& t : pool) t.join();
    return first_error;
}

}  // namespace ssync
