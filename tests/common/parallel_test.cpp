// Tests for common/parallel.h: parallel_for and the WorkQueue pipeline.
#include "ssync/parallel.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>

namespace ssync {

TEST_SUITE("WorkQueue") {
    TEST_CASE("every item pushed is worked exactly once, also those pushed after the workers idle") {
        std::mutex mutex;
        std::multiset<int> seen;
        WorkQueue<int> queue(3, [&](int& item) -> Status {
            std::lock_guard<std::mutex> lock(mutex);
            seen.insert(item);
            return Status::ok();
        });
        for (int i = 0; i < 500; ++i) CHECK(queue.push(i));
        // The workers have emptied the queue and wait: a producer may be slow.
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        for (int i = 500; i < 1000; ++i) CHECK(queue.push(i));
        REQUIRE(queue.finish().is_ok());
        CHECK(seen.size() == 1000);
        for (int i = 0; i < 1000; ++i) CHECK(seen.count(i) == 1);
        CHECK_FALSE(queue.push(1000));  // finished: nothing more is taken
    }

    TEST_CASE("the first error is returned, no item starts after it, and push says so") {
        std::atomic<int> worked{0};
        WorkQueue<int> queue(1, [&](int& item) -> Status {
            ++worked;
            if (item == 3) return Status(Code::io, "item 3: failed");
            return Status::ok();
        });
        for (int i = 0; i < 4; ++i) CHECK(queue.push(i));
        // One worker takes items in order: 0..3 run, 3 fails; give it time to get there.
        for (int tries = 0; tries < 1000 && worked < 4; ++tries) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        bool accepted = true;
        for (int i = 4; i < 100 && accepted; ++i) accepted = queue.push(i);
        CHECK_FALSE(accepted);
        Status s = queue.finish();
        CHECK(s.code() == Code::io);
        CHECK(s.message() == "item 3: failed");
        CHECK(worked == 4);
    }

    TEST_CASE("cancel drops the items not yet started") {
        std::atomic<bool> release{false};
        std::atomic<int> worked{0};
        WorkQueue<int> queue(1, [&](int&) -> Status {
            while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            ++worked;
            return Status::ok();
        });
        for (int i = 0; i < 50; ++i) CHECK(queue.push(i));
        // The worker is held inside the first item (or has not begun): the rest are queued.
        queue.cancel();
        release = true;
        CHECK(queue.finish().is_ok());
        CHECK(worked <= 1);
        CHECK_FALSE(queue.push(0));
    }

    TEST_CASE("destroying an unfinished queue waits for its workers") {
        std::atomic<int> worked{0};
        {
            WorkQueue<std::string> queue(2, [&](std::string& s) -> Status {
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
                worked += static_cast<int>(s.size());
                return Status::ok();
            });
            for (int i = 0; i < 20; ++i) queue.push("ab");
        }
        CHECK(worked == 40);
    }
}

TEST_SUITE("parallel_for") {
    TEST_CASE("every index once, the first error stops new items") {
        std::mutex mutex;
        std::multiset<std::size_t> seen;
        REQUIRE(parallel_for(300, 2, [&](std::size_t i) -> Status {
                    std::lock_guard<std::mutex> lock(mutex);
                    seen.insert(i);
                    return Status::ok();
                }).is_ok());
        CHECK(seen.size() == 300);
        CHECK(seen.count(0) == 1);
        CHECK(seen.count(299) == 1);
        std::atomic<std::size_t> started{0};
        Status s = parallel_for(1000, 1, [&](std::size_t i) -> Status {
            ++started;
            return i == 10 ? Status(Code::io, "ten") : Status::ok();
        });
        CHECK(s.message() == "ten");
        CHECK(started == 11);
    }
}

}  // namespace ssync
