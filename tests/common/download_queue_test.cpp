// Tests for common/download_queue.cpp: the network thread's side is played by the test itself,
// handing bodies over in pieces and interleaved as HTTP/2 streams arrive.
#include "ssync/download_queue.h"

#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "ssync/fs.h"
#include "ssync/hash.h"
#include "testutil.h"

namespace ssync::test {
namespace {

using namespace std::chrono_literals;

struct Fixture {
    TempDir tmp;
    std::string staging = tmp / "stage";
    UniqueFd dir;
    std::vector<std::string> bodies;
    std::vector<Download> downloads;

    explicit Fixture(std::size_t files, std::size_t base_size = DownloadQueue::kBufferSize / 3) {
        make_dirs(staging);
        auto fd = open_dir_trusted(staging);
        REQUIRE(fd.is_ok());
        dir = std::move(fd).value();
        for (std::size_t i = 0; i < files; ++i) {
            // From a third of a buffer to several buffers: some files span many messages.
            bodies.push_back(pseudo_random_bytes(base_size * (1 + i % 7) + i, static_cast<unsigned>(i)));
            downloads.push_back(Download{"objects/" + std::to_string(i), bodies.back().size(),
                                         sha256_hex(bodies.back()), dir.get(), "f" + std::to_string(i)});
        }
    }

    std::string path_of(std::size_t i) const { return staging + "/" + downloads[i].file_name; }

    // Hands every body over in pieces of `piece` bytes, one piece of each file in turn, and
    // finishes each file after its last piece.
    void hand_over_interleaved(DownloadQueue& queue, std::size_t piece) {
        std::vector<std::size_t> at(bodies.size(), 0);
        for (bool more = true; more;) {
            more = false;
            for (std::size_t i = 0; i < bodies.size(); ++i) {
                if (at[i] == bodies[i].size() + 1) continue;
                if (at[i] == bodies[i].size()) {
                    queue.finish(i);
                    at[i]++;
                    continue;
                }
                std::size_t n = std::min(piece, bodies[i].size() - at[i]);
                queue.append(i, bodies[i].data() + at[i], n);
                at[i] += n;
                more = true;
            }
        }
    }
};

// Collects verdicts until `count` have come or `patience` has passed.
std::map<std::size_t, Status> verdicts(DownloadQueue& queue, std::size_t count,
                                       std::chrono::milliseconds patience = 5s) {
    std::map<std::size_t, Status> out;
    auto deadline = std::chrono::steady_clock::now() + patience;
    while (out.size() < count && std::chrono::steady_clock::now() < deadline) {
        for (DownloadQueue::Verdict& v : queue.take_verdicts(100ms)) out.emplace(v.index, std::move(v.status));
    }
    return out;
}

TEST_SUITE("DownloadQueue") {
    TEST_CASE("several writers write interleaved bodies each in order, and every file verifies") {
        for (unsigned writers : {1u, 2u, 3u}) {
            CAPTURE(writers);
            Fixture f(40);
            std::mutex mutex;
            std::set<std::thread::id> threads;
            DownloadOptions options;
            options.on_verified = [&](const Download&, int) -> Status {
                std::lock_guard<std::mutex> lock(mutex);
                threads.insert(std::this_thread::get_id());
                return Status::ok();
            };
            options.writers = writers;
            DownloadQueue queue(f.downloads, options, 8);
            // Pieces that do not divide a buffer: buffers fill across pieces and files.
            f.hand_over_interleaved(queue, 10'007);
            auto got = verdicts(queue, f.downloads.size());
            REQUIRE(got.size() == f.downloads.size());
            for (std::size_t i = 0; i < f.downloads.size(); ++i) {
                CHECK_MESSAGE(got[i].is_ok(), got[i].message());
                CHECK_MESSAGE(read_file(f.path_of(i)) == f.bodies[i], f.downloads[i].path);
            }
            CHECK(threads.size() == writers);
        }
    }

    TEST_CASE("a restart drops what was handed over, and the file is written afresh") {
        Fixture f(4, DownloadQueue::kBufferSize);
        DownloadOptions options;  // the queue keeps a reference
        options.writers = 2;
        DownloadQueue queue(f.downloads, options, 8);
        for (std::size_t i = 0; i < 4; ++i) {
            // Garbage first (more than a buffer), then the real body from its first byte.
            std::string junk = pseudo_random_bytes(f.bodies[i].size() / 2 + DownloadQueue::kBufferSize, 999);
            junk.resize(std::min(junk.size(), f.bodies[i].size()));
            queue.append(i, junk.data(), junk.size());
            queue.flush(i);
            queue.restart(i);
            queue.append(i, f.bodies[i].data(), f.bodies[i].size());
            queue.finish(i);
        }
        auto got = verdicts(queue, 4);
        REQUIRE(got.size() == 4);
        for (std::size_t i = 0; i < 4; ++i) {
            CHECK_MESSAGE(got[i].is_ok(), got[i].message());
            CHECK(read_file(f.path_of(i)) == f.bodies[i]);
        }
    }

    TEST_CASE("a wrong or short body is a transport verdict and its file is removed") {
        Fixture f(3);
        DownloadOptions options;  // the queue keeps a reference
        options.writers = 2;
        DownloadQueue queue(f.downloads, options, 8);
        std::string wrong = f.bodies[0];
        wrong[wrong.size() / 2] ^= 1;
        queue.append(0, wrong.data(), wrong.size());
        queue.finish(0);
        queue.append(1, f.bodies[1].data(), f.bodies[1].size() - 1);
        queue.finish(1);
        queue.append(2, f.bodies[2].data(), f.bodies[2].size());
        queue.finish(2);
        auto got = verdicts(queue, 3);
        REQUIRE(got.size() == 3);
        CHECK(got[0].code() == Code::transport);
        CHECK_MESSAGE(got[0].message().find("does not match the manifest's") != std::string::npos, got[0].message());
        CHECK(got[1].code() == Code::transport);
        CHECK_MESSAGE(got[1].message().find("short download") != std::string::npos, got[1].message());
        CHECK(got[2].is_ok());
        CHECK_FALSE(exists(f.path_of(0)));
        CHECK_FALSE(exists(f.path_of(1)));
        CHECK(read_file(f.path_of(2)) == f.bodies[2]);
    }

    TEST_CASE("a fatal verdict from one writer stops every writer: later files are not written") {
        Fixture f(12);
        DownloadOptions options;
        options.on_verified = [&](const Download& d, int) -> Status {
            if (d.file_name == "f0") return Status(Code::io, "f0: chmod: Operation not permitted");
            return Status::ok();
        };
        options.writers = 2;
        DownloadQueue queue(f.downloads, options, 8);
        queue.append(0, f.bodies[0].data(), f.bodies[0].size());
        queue.finish(0);
        auto first = verdicts(queue, 1);
        REQUIRE(first.size() == 1);
        CHECK(first[0].code() == Code::io);
        // Files 1..11 go to both writers (by index) after the failure: none is written.
        for (std::size_t i = 1; i < 12; ++i) {
            queue.append(i, f.bodies[i].data(), f.bodies[i].size());
            queue.finish(i);
        }
        CHECK(verdicts(queue, 1, 300ms).empty());  // no verdict comes
        queue.cancel();
        for (std::size_t i = 1; i < 12; ++i) CHECK_MESSAGE(!exists(f.path_of(i)), f.downloads[i].file_name);
    }

    TEST_CASE("cancel removes every file not verified yet and keeps the verified ones") {
        Fixture f(6, DownloadQueue::kBufferSize);
        DownloadOptions options;  // the queue keeps a reference
        options.writers = 3;
        DownloadQueue queue(f.downloads, options, 8);
        for (std::size_t i = 0; i < 3; ++i) {
            queue.append(i, f.bodies[i].data(), f.bodies[i].size());
            queue.finish(i);
        }
        auto got = verdicts(queue, 3);
        REQUIRE(got.size() == 3);
        // Three more, each handed over in part only (flushed, so their files exist).
        for (std::size_t i = 3; i < 6; ++i) {
            queue.append(i, f.bodies[i].data(), f.bodies[i].size() / 2);
            queue.flush(i);
        }
        for (std::size_t i = 3; i < 6; ++i) {
            // Wait until the writer has made the file, so that cancel has one to remove.
            auto deadline = std::chrono::steady_clock::now() + 5s;
            while (!exists(f.path_of(i)) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
            REQUIRE(exists(f.path_of(i)));
        }
        queue.cancel();
        for (std::size_t i = 0; i < 3; ++i) CHECK(read_file(f.path_of(i)) == f.bodies[i]);
        for (std::size_t i = 3; i < 6; ++i) CHECK_FALSE(exists(f.path_of(i)));
    }
}

}  // namespace
}  // namespace ssync::test
