// Tests for common/http_transport.cpp against a real nginx (HTTPS with a throwaway CA, HTTP/2)
// and, for what nginx will not do, a scripted server that truncates, trickles, streams without
// end or drops a connection halfway.
#include "ssync/http_transport.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "fault_fs.h"
#include "servers.h"
#include "ssync/download_queue.h"
#include "ssync/fs.h"
#include "ssync/hash.h"
#include "ssync/transport.h"
#include "testutil.h"

namespace ssync::test {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

std::size_t count(const std::string& haystack, const std::string& needle) {
    std::size_t n = 0;
    for (std::size_t at = haystack.find(needle); at != std::string::npos;
         at = haystack.find(needle, at + 1))
        ++n;
    return n;
}

// How often `needle` occurs in the server's access log once it holds at least `expected` of
// them or two seconds have passed: nginx writes a line just after the response, so a client
// that has its answer may look before the line is there.
std::size_t logged(const NginxServer& server, const std::string& needle, std::size_t expected) {
    auto deadline = Clock::now() + std::chrono::seconds(2);
    std::size_t n = count(server.access_log(), needle);
    while (n < expected && Clock::now() < deadline) {
        ::usleep(10'000);
        n = count(server.access_log(), needle);
    }
    return n;
}

std::unique_ptr<Transport> open_or_fail(const std::string& url, const TransportOptions& options) {
    auto t = open_transport(url, options);
    REQUIRE_MESSAGE(t.is_ok(), t.status().message());
    return std::move(t).value();
}

// A publication directory served by nginx, and a staging directory to download into.
struct Fixture {
    TempDir tmp;
    std::string pub = tmp / "pub";
    std::map<std::string, std::string> files;  // publication path -> content

    Fixture() { make_dirs(pub); }

    void add(const std::string& path, const std::string& data) {
        files[path] = data;
        write_file(pub + "/" + path, data);
    }

    TransportOptions options(const NginxServer& server) const {
        TransportOptions o;
        o.ca_file = server.ca_file();
        return o;
    }

    // One Download per file, into `staging` (created), named after the path's position.
    std::vector<Download> downloads(const std::string& staging, UniqueFd& dir) {
        make_dirs(staging);
        auto fd = open_dir_trusted(staging);
        REQUIRE(fd.is_ok());
        dir = std::move(fd).value();
        std::vector<Download> out;
        for (const auto& [path, data] : files) {
            out.push_back(Download{path, data.size(), sha256_hex(data), dir.get(),
                                   "f" + std::to_string(out.size())});
        }
        return out;
    }

    // After a failed batch: every file left in `staging` is whole and verified (none half
    // written). Returns how many there are.
    std::size_t check_only_verified_left(const std::string& staging, const std::vector<Download>& downloads) {
        std::size_t left = 0;
        for (const Download& d : downloads) {
            if (!exists(staging + "/" + d.file_name)) continue;
            ++left;
            CHECK_MESSAGE(read_file(staging + "/" + d.file_name) == files[d.path], d.path);
        }
        return left;
    }

    // Downloads every added file into tmp/stage through `t` and checks each one arrived whole.
    void download_and_check(Transport& t, const DownloadOptions& options) {
        UniqueFd dir;
        auto downloads = this->downloads(tmp / "stage", dir);
        Status s = t.download_all(downloads, options);
        REQUIRE_MESSAGE(s.is_ok(), s.message());
        check_downloaded(tmp / "stage", downloads);
    }

    void check_downloaded(const std::string& staging, const std::vector<Download>& downloads) {
        for (const Download& d : downloads) {
            REQUIRE_MESSAGE(exists(staging + "/" + d.file_name), d.path);
            CHECK_MESSAGE(read_file(staging + "/" + d.file_name) == files[d.path], d.path);
        }
    }
};

TEST_SUITE("HttpTransport") {
    TEST_CASE("fetch and fetch_to over HTTPS with the test CA") {
        Fixture f;
        f.add("a.txt", "hello\n");
        f.add("dir/with space+plus%.bin", pseudo_random_bytes(100'000, 1));
        f.add(".ssync/manifest.json", "{}\n");
        NginxServer server(f.pub);
        auto t = open_or_fail(server.https_url(), f.options(server));
        CHECK(t->describe() == server.https_url());

        for (const auto& [path, data] : f.files) {
            auto got = t->fetch(path, data.size());
            REQUIRE_MESSAGE(got.is_ok(), got.status().message());
            CHECK(*got == data);
            std::string streamed;
            Status s = t->fetch_to(path, data.size(), [&](const char* p, std::size_t n) {
                streamed.append(p, n);
                return Status::ok();
            });
            REQUIRE_MESSAGE(s.is_ok(), s.message());
            CHECK(streamed == data);
        }
        // Also without the trailing slash in the URL.
        std::string url = server.https_url();
        url.pop_back();
        auto t2 = open_or_fail(url, f.options(server));
        auto got = t2->fetch("a.txt", 100);
        REQUIRE_MESSAGE(got.is_ok(), got.status().message());
        CHECK(*got == "hello\n");
    }

    TEST_CASE("TLS verification fails without the test CA, and is not retried") {
        Fixture f;
        f.add("a.txt", "hello\n");
        NginxServer server(f.pub);
        auto t = open_or_fail(server.https_url(), TransportOptions{});
        auto start = Clock::now();
        auto got = t->fetch("a.txt", 100);
        REQUIRE_FALSE(got.is_ok());
        CHECK(got.status().code() == Code::transport);
        const std::string m = got.status().message();
        CHECK_MESSAGE(m.find(server.https_url() + "a.txt: ") == 0, m);
        CHECK_MESSAGE(m.find("certificate") != std::string::npos, m);
        CHECK(m.find('\n') == std::string::npos);
        CHECK(seconds_since(start) < 0.5);  // not retried: that would wait 0.2 + 0.4 s
        // Nothing reached HTTP: the only request logged is a later one made with the CA.
        CHECK_FALSE(
            open_or_fail(server.https_url(), f.options(server))->fetch("sentinel", 10).is_ok());
        CHECK(logged(server, "GET /sentinel ", 1) == 1);
        CHECK(count(server.access_log(), "GET ") == 1);

        // A CA file that does not exist is refused when opening.
        TransportOptions missing;
        missing.ca_file = f.tmp / "no-such-ca.pem";
        auto bad = open_transport(server.https_url(), missing);
        REQUIRE_FALSE(bad.is_ok());
        CHECK(bad.status().message().find("no-such-ca.pem") != std::string::npos);
    }

    TEST_CASE("a missing file is not_found, without retries") {
        Fixture f;
        NginxServer server(f.pub);
        auto t = open_or_fail(server.https_url(), f.options(server));
        auto got = t->fetch("missing.txt", 100);
        REQUIRE_FALSE(got.is_ok());
        CHECK(got.status().code() == Code::not_found);
        CHECK_MESSAGE(
            got.status().message() == server.https_url() + "missing.txt: not found (HTTP 404)",
            got.status().message());
        CHECK(logged(server, "GET /missing.txt", 1) == 1);
    }

    TEST_CASE("a file larger than max_bytes is refused by its Content-Length, without retries") {
        Fixture f;
        f.add("big", pseudo_random_bytes(1 << 20, 2));
        NginxServer server(f.pub);
        auto t = open_or_fail(server.https_url(), f.options(server));
        auto got = t->fetch("big", 1000);
        REQUIRE_FALSE(got.is_ok());
        CHECK(got.status().code() == Code::too_large);
        CHECK_MESSAGE(got.status().message().find(
                          "Content-Length 1048576 is larger than the expected 1000 bytes") !=
                          std::string::npos,
                      got.status().message());
        std::size_t delivered = 0;
        Status s = t->fetch_to("big", (1 << 20) - 1, [&](const char*, std::size_t n) {
            delivered += n;
            return Status::ok();
        });
        CHECK_FALSE(s.is_ok());
        CHECK(delivered == 0);
        CHECK(logged(server, "GET /big", 2) == 2);
    }

    TEST_CASE("an endless response is cut off at max_bytes") {
        ScriptedHttpServer server(ScriptedHttpServer::endless());
        TransportOptions options;
        auto t = open_or_fail(server.url(), options);
        auto start = Clock::now();
        std::size_t delivered = 0;
        Status s = t->fetch_to("stream", 100'000, [&](const char*, std::size_t n) {
            delivered += n;
            return Status::ok();
        });
        REQUIRE_FALSE(s.is_ok());
        CHECK(s.code() == Code::too_large);
        CHECK_MESSAGE(s.message() == server.url() + "stream: larger than the expected 100000 bytes",
                      s.message());
        CHECK(delivered <= 100'000);
        CHECK(server.requests().size() == 1);
        CHECK(seconds_since(start) < 2);
    }

    TEST_CASE("a truncated body is a transport error after every attempt") {
        ScriptedHttpServer server(ScriptedHttpServer::truncated(pseudo_random_bytes(1000, 3), 500));
        TransportOptions options;
        options.attempts = 2;
        auto t = open_or_fail(server.url(), options);
        auto got = t->fetch("short", 1000);
        REQUIRE_FALSE(got.is_ok());
        CHECK(got.status().code() == Code::transport);
        const std::string m = got.status().message();
        CHECK_MESSAGE(m.find(server.url() + "short: ") == 0, m);
        CHECK_MESSAGE(m.find("500 bytes remaining") != std::string::npos, m);
        CHECK_MESSAGE(m.find("(2 attempts)") != std::string::npos, m);
        CHECK(server.requests().size() == 2);
    }

    TEST_CASE("a trickling server is dropped within the low-speed window") {
        ScriptedHttpServer server(ScriptedHttpServer::trickle());
        TransportOptions options;
        options.low_speed_time = 2;
        options.attempts = 1;
        auto t = open_or_fail(server.url(), options);
        auto start = Clock::now();
        auto got = t->fetch("slow", 1 << 20);
        double took = seconds_since(start);
        REQUIRE_FALSE(got.is_ok());
        CHECK(got.status().code() == Code::transport);
        CHECK_MESSAGE(got.status().message().find("too slow") != std::string::npos,
                      got.status().message());
        CHECK(took >= 1.5);
        CHECK(took < 5);
    }

    TEST_CASE("download_all fetches 200 files over HTTP/2 and verifies each") {
        Fixture f;
        for (unsigned i = 0; i < 200; ++i)
            f.add("d" + std::to_string(i % 7) + "/file" + std::to_string(i), pseudo_random_bytes(i * 97, i));
        NginxServer server(f.pub);
        auto t = open_or_fail(server.https_url(), f.options(server));
        UniqueFd dir;
        auto downloads = f.downloads(f.tmp / "stage", dir);
        std::uint64_t files = 0, bytes = 0;
        DownloadOptions options;
        options.progress = [&](std::uint64_t n, std::uint64_t b) {
            files += n;
            bytes += b;
        };
        Status s = t->download_all(downloads, options);
        REQUIRE_MESSAGE(s.is_ok(), s.message());
        f.check_downloaded(f.tmp / "stage", downloads);
        CHECK(files == 200);
        std::uint64_t total = 0;
        for (const auto& d : downloads) total += d.size;
        CHECK(bytes == total);
        CHECK(logged(server, "HTTP/2.0\" 200", 200) == 200);
    }

    TEST_CASE("download_all: files larger than the queue's buffers, more than its buffers hold at once") {
        Fixture f;
        // 12 files of 1.5 buffers to 3.5 buffers each: every file spans several buffers, and
        // together they are more than the queue's buffers (the network thread must wait).
        for (unsigned i = 0; i < 12; ++i)
            f.add("big/" + std::to_string(i), pseudo_random_bytes(DownloadQueue::kBufferSize * (3 + i % 5) / 2 + i, 100 + i));
        NginxServer server(f.pub);
        auto t = open_or_fail(server.https_url(), f.options(server));
        DownloadOptions options;
        options.max_parallel = 2;
        f.download_and_check(*t, options);
    }

    TEST_CASE("the verified hook runs once per file, on the whole file still open, its error ends the batch") {
        Fixture f;
        for (unsigned i = 0; i < 60; ++i) f.add("file" + std::to_string(i), pseudo_random_bytes(1000 + 300 * i, i));
        NginxServer server(f.pub);
        auto t = open_or_fail(server.https_url(), f.options(server));
        UniqueFd dir;
        auto downloads = f.downloads(f.tmp / "stage", dir);
        std::mutex mutex;  // the hook runs on several writer threads at once
        std::map<std::string, int> calls;
        std::set<std::thread::id> threads;
        DownloadOptions options;
        options.writers = 2;
        options.on_verified = [&](const Download& d, int fd) -> Status {
            struct stat st;
            bool whole = ::fstat(fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) == d.size;
            std::lock_guard<std::mutex> lock(mutex);
            CHECK_MESSAGE(whole, d.path);
            calls[d.path]++;
            threads.insert(std::this_thread::get_id());
            return Status::ok();
        };
        Status s = t->download_all(downloads, options);
        REQUIRE_MESSAGE(s.is_ok(), s.message());
        CHECK(calls.size() == 60);
        for (const auto& [path, n] : calls) CHECK_MESSAGE(n == 1, path);
        CHECK(threads.size() == 2);  // both writers wrote
        CHECK(threads.count(std::this_thread::get_id()) == 0);

        UniqueFd dir2;
        auto again = f.downloads(f.tmp / "stage2", dir2);
        // One writer, so that "nothing after the failure" is exact: with more, another file's
        // hook may be running when the failure is reported.
        options.writers = 1;
        int seen = 0;
        options.on_verified = [&](const Download& d, int) -> Status {
            if (++seen == 10) return Status(Code::io, d.path + ": chmod: Operation not permitted");
            return Status::ok();
        };
        s = t->download_all(again, options);
        REQUIRE_FALSE(s.is_ok());
        CHECK(s.code() == Code::io);
        CHECK_MESSAGE(s.message().find(": chmod: Operation not permitted") != std::string::npos, s.message());
        CHECK(seen == 10);  // nothing after the failure
        // Nine verified files may stay (the hook accepted them); nothing else does.
        CHECK(f.check_only_verified_left(f.tmp / "stage2", again) <= 9);
    }

    TEST_CASE("a disk failing mid-batch ends download_all with its error, no partial file is left") {
        Fixture f;
        for (unsigned i = 0; i < 80; ++i) f.add("file" + std::to_string(i), pseudo_random_bytes(40'000 + i, i));
        NginxServer server(f.pub);
        auto t = open_or_fail(server.https_url(), f.options(server));
        UniqueFd dir;
        auto downloads = f.downloads(f.tmp / "stage", dir);
        FaultInjectingFs fs;
        fs.fail(FaultInjectingFs::Op::write, 25, ENOSPC, /*sticky=*/true);
        DownloadOptions options;
        options.fs = &fs;
        options.max_parallel = 8;
        std::uint64_t done = 0;
        options.progress = [&](std::uint64_t n, std::uint64_t) { done += n; };
        Status s = t->download_all(downloads, options);
        REQUIRE_FALSE(s.is_ok());
        CHECK(s.code() == Code::io);
        CHECK_MESSAGE(s.message().find("No space left on device") != std::string::npos, s.message());
        // Named after the file (DownloadWriter's path in staging).
        CHECK_MESSAGE(s.message().rfind("f", 0) == 0, s.message());
        CHECK(done < 80);
        // Every file left verified; at least the ones reported done. Not exactly those: with
        // several writers, one may verify a file while another reports the failure that ends
        // the batch, and that file's verdict is never taken (verified files stay, by design).
        // Asserting equality failed about one run in ten under load.
        std::size_t left = f.check_only_verified_left(f.tmp / "stage", downloads);
        CHECK(left >= done);
        CHECK(left < 80);
        // Not retried (the disk, not the server, failed), and the batch stopped.
        CHECK(logged(server, "GET /", 80) < 80);
        for (unsigned i = 0; i < 80; ++i) CHECK(count(server.access_log(), "GET /file" + std::to_string(i) + " ") <= 1);
    }

    TEST_CASE("download_all returns as soon as the last file is verified, not after a poll timeout") {
        // Regression: with every transfer done and a verdict outstanding, the loop slept in
        // curl_multi_poll for its whole second.
        Fixture f;
        f.add("one", pseudo_random_bytes(5000, 7));
        NginxServer server(f.pub);
        auto t = open_or_fail(server.http_url(), TransportOptions{});
        double fastest = 10;
        for (int run = 0; run < 3; ++run) {
            UniqueFd dir;
            auto downloads = f.downloads(f.tmp / ("stage" + std::to_string(run)), dir);
            DownloadOptions options;
            // A slow last verdict: it arrives after the transfer has ended.
            options.on_verified = [](const Download&, int) {
                ::usleep(100'000);
                return Status::ok();
            };
            auto start = Clock::now();
            Status s = t->download_all(downloads, options);
            REQUIRE_MESSAGE(s.is_ok(), s.message());
            fastest = std::min(fastest, seconds_since(start));
        }
        CHECK(fastest < 0.6);
    }

    TEST_CASE("over HTTP/1.1, many transfers in flight still open at most 8 connections") {
        Fixture f;
        for (unsigned i = 0; i < 120; ++i) f.add("file" + std::to_string(i), pseudo_random_bytes(20'000 + i, i));
        NginxServer server(f.pub);
        auto t = open_or_fail(server.http_url(), TransportOptions{});
        DownloadOptions options;
        options.max_parallel = 64;
        f.download_and_check(*t, options);
        REQUIRE(logged(server, "HTTP/1.1\" 200", 120) == 120);
        std::set<std::string> connections;
        std::string log = server.access_log();
        for (auto at = log.find("conn="); at != std::string::npos; at = log.find("conn=", at + 1))
            connections.insert(log.substr(at, log.find('\n', at) - at));
        CHECK(connections.size() <= 8);
        CHECK(connections.size() >= 2);  // but more than one: they run in parallel
    }

    TEST_CASE("download_all over plain HTTP") {
        Fixture f;
        for (unsigned i = 0; i < 30; ++i) f.add("file" + std::to_string(i), pseudo_random_bytes(5000 + i, i));
        NginxServer server(f.pub);
        auto t = open_or_fail(server.http_url(), TransportOptions{});
        f.download_and_check(*t, DownloadOptions{});
        CHECK(logged(server, "HTTP/1.1\" 200", 30) == 30);
    }

    TEST_CASE(
        "a wrong byte on the server is retried, then fails the batch naming the file, which is "
        "removed") {
        Fixture f;
        for (unsigned i = 0; i < 20; ++i) f.add("file" + std::to_string(i), pseudo_random_bytes(3000, i));
        NginxServer server(f.pub);
        std::string bad = f.files["file7"];
        bad[1234] ^= 1;
        write_file(f.pub + "/file7", bad);

        auto t = open_or_fail(server.https_url(), f.options(server));
        UniqueFd dir;
        auto downloads = f.downloads(f.tmp / "stage", dir);
        DownloadOptions options;
        options.attempts = 3;
        Status s = t->download_all(downloads, options);
        REQUIRE_FALSE(s.is_ok());
        CHECK(s.code() == Code::transport);
        CHECK_MESSAGE(s.message().find("file7: SHA-256 ") == 0, s.message());
        CHECK_MESSAGE(s.message().find("(3 attempts)") != std::string::npos, s.message());
        CHECK(logged(server, "GET /file7 ", 3) == 3);
        const Download& d7 = *std::find_if(downloads.begin(), downloads.end(),
                                           [](const Download& d) { return d.path == "file7"; });
        CHECK_FALSE(exists(f.tmp / "stage/" + d7.file_name));
    }

    TEST_CASE("nginx stopped mid-batch fails the batch, after start() a new batch succeeds") {
        Fixture f;
        for (unsigned i = 0; i < 100; ++i) f.add("file" + std::to_string(i), pseudo_random_bytes(32 * 1024, i));
        NginxServer server(f.pub);
        auto t = open_or_fail(server.https_url(), f.options(server));
        UniqueFd dir;
        auto downloads = f.downloads(f.tmp / "stage", dir);
        DownloadOptions options;
        options.progress = [&](std::uint64_t, std::uint64_t) { server.stop(); };
        Status s = t->download_all(downloads, options);
        REQUIRE_FALSE(s.is_ok());
        CHECK(s.code() == Code::transport);
        CHECK_MESSAGE(s.message().find(server.https_url()) != std::string::npos, s.message());

        server.start();
        UniqueFd dir2;
        auto again = f.downloads(f.tmp / "stage2", dir2);
        s = t->download_all(again, DownloadOptions{});
        REQUIRE_MESSAGE(s.is_ok(), s.message());
        f.check_downloaded(f.tmp / "stage2", again);
    }

    // The scripted server drops the first connection halfway through `body`, then answers the
    // second request with `second`.
    ScriptedHttpServer::Handler drop_then(
        const std::string& body,
        std::function<void(const ScriptedHttpServer::Request&, ScriptedHttpServer::Connection&)>
            second) {
        return [=](const ScriptedHttpServer::Request& request, std::size_t index,
                   ScriptedHttpServer::Connection& out) {
            if (index == 0) {
                if (out.send(
                        ScriptedHttpServer::head(200, static_cast<std::int64_t>(body.size())))) {
                    out.send(std::string_view(body).substr(0, body.size() / 2));
                }
            } else if (index == 1) {
                second(request, out);
            } else if (out.send(
                           ScriptedHttpServer::head(200, static_cast<std::int64_t>(body.size())))) {
                out.send(body);
            }
        };
    }

    struct ResumeFixture {
        TempDir tmp;
        std::string body = pseudo_random_bytes(200'000, 4);
        UniqueFd dir;
        std::vector<Download> downloads;

        ResumeFixture() {
            make_dirs(tmp / "stage");
            dir = std::move(open_dir_trusted(tmp / "stage")).value();
            downloads.push_back(
                Download{"obj/file", body.size(), sha256_hex(body), dir.get(), "file"});
        }
        Status run(const ScriptedHttpServer& server) {
            auto t = open_or_fail(server.url(), TransportOptions{});
            return t->download_all(downloads, DownloadOptions{});
        }
    };

    TEST_CASE("a dropped transfer resumes with a Range request") {
        ResumeFixture f;
        const std::size_t half = f.body.size() / 2;
        ScriptedHttpServer server(drop_then(f.body, [&](const auto&, auto& out) {
            std::string range = "Content-Range: bytes " + std::to_string(half) + "-" +
                                std::to_string(f.body.size() - 1) + "/" +
                                std::to_string(f.body.size()) + "\r\n";
            if (out.send(ScriptedHttpServer::head(
                    206, static_cast<std::int64_t>(f.body.size() - half), range))) {
                out.send(std::string_view(f.body).substr(half));
            }
        }));
        Status s = f.run(server);
        REQUIRE_MESSAGE(s.is_ok(), s.message());
        CHECK(read_file(f.tmp / "stage/file") == f.body);
        auto requests = server.requests();
        REQUIRE(requests.size() == 2);
        CHECK(requests[0].path == "/obj/file");
        CHECK(requests[0].header("Range").empty());
        CHECK(requests[1].header("range") == "bytes=" + std::to_string(half) + "-");
    }

    TEST_CASE("a resume answered with the whole file starts over") {
        ResumeFixture f;
        ScriptedHttpServer server(drop_then(f.body, [&](const auto&, auto& out) {
            if (out.send(ScriptedHttpServer::head(200, static_cast<std::int64_t>(f.body.size()))))
                out.send(f.body);
        }));
        Status s = f.run(server);
        REQUIRE_MESSAGE(s.is_ok(), s.message());
        CHECK(read_file(f.tmp / "stage/file") == f.body);
        auto requests = server.requests();
        REQUIRE(requests.size() == 2);
        CHECK_FALSE(requests[1].header("Range").empty());
    }

    TEST_CASE("a resume answered with the wrong range is retried from scratch") {
        ResumeFixture f;
        ScriptedHttpServer server(drop_then(f.body, [&](const auto&, auto& out) {
            std::string range =
                "Content-Range: bytes 0-99/" + std::to_string(f.body.size()) + "\r\n";
            if (out.send(ScriptedHttpServer::head(206, 100, range)))
                out.send(std::string_view(f.body).substr(0, 100));
        }));
        Status s = f.run(server);
        REQUIRE_MESSAGE(s.is_ok(), s.message());
        CHECK(read_file(f.tmp / "stage/file") == f.body);
        auto requests = server.requests();
        REQUIRE(requests.size() == 3);
        CHECK(requests[2].header("Range").empty());
    }

    TEST_CASE(
        "fetch_to hands every byte to the sink once across a resume answered with the whole file") {
        std::string body = pseudo_random_bytes(50'000, 5);
        ScriptedHttpServer server(drop_then(body, [&](const auto&, auto& out) {
            if (out.send(ScriptedHttpServer::head(200, static_cast<std::int64_t>(body.size()))))
                out.send(body);
        }));
        auto t = open_or_fail(server.url(), TransportOptions{});
        std::string got;
        Status s = t->fetch_to("x", body.size(), [&](const char* p, std::size_t n) {
            got.append(p, n);
            return Status::ok();
        });
        REQUIRE_MESSAGE(s.is_ok(), s.message());
        CHECK(got == body);
        CHECK(server.requests().size() == 2);
    }

    TEST_CASE("a sink error stops fetch_to at once and is returned as it is") {
        Fixture f;
        f.add("a", pseudo_random_bytes(100'000, 6));
        NginxServer server(f.pub);
        auto t = open_or_fail(server.https_url(), f.options(server));
        Status s = t->fetch_to(
            "a", 100'000, [](const char*, std::size_t) { return Status(Code::io, "disk full"); });
        CHECK(s.code() == Code::io);
        CHECK(s.message() == "disk full");
        CHECK(logged(server, "GET /a ", 1) == 1);
    }

    TEST_CASE(
        "redirects: followed within https, never to http or another protocol, never in a loop") {
        Fixture f;
        f.add("a.txt", "hello\n");
        NginxServer server(
            f.pub,
            "location = /moved { return 302 https://127.0.0.1:@HTTPS_PORT@/a.txt; }\n"
            "location = /down { return 302 http://127.0.0.1:@HTTP_PORT@/a.txt; }\n"
            "location = /ftp { return 302 ftp://127.0.0.1/a.txt; }\n"
            "location = /loop { return 302 /loop; }\n");
        auto t = open_or_fail(server.https_url(), f.options(server));
        auto got = t->fetch("moved", 100);
        REQUIRE_MESSAGE(got.is_ok(), got.status().message());
        CHECK(*got == "hello\n");
        for (const char* path : {"down", "ftp", "loop"}) {
            auto start = Clock::now();
            got = t->fetch(path, 100);
            REQUIRE_FALSE(got.is_ok());
            CHECK(got.status().code() == Code::transport);
            CHECK(seconds_since(start) < 0.5);  // not retried
        }
        CHECK(logged(server, "GET /loop ", 6) == 6);
    }

    TEST_CASE("paths that could leave the publication are refused without a request") {
        Fixture f;
        NginxServer server(f.pub);
        auto t = open_or_fail(server.https_url(), f.options(server));
        for (const char* path : {"../etc/passwd", "/etc/passwd", "a/./b", "a//b", ""}) {
            auto got = t->fetch(path, 100);
            CHECK_FALSE(got.is_ok());
        }
        CHECK_FALSE(t->fetch("sentinel", 10).is_ok());
        CHECK(logged(server, "GET /sentinel ", 1) == 1);
        CHECK(count(server.access_log(), "GET ") == 1);
    }

    TEST_CASE("URLs with a query, a fragment or bad syntax are usage errors") {
        for (const char* url : {"https://example.org/pub?x=1", "https://example.org/pub#f",
                                "https://exa mple.org/"}) {
            auto t = open_transport(url, TransportOptions{});
            REQUIRE_FALSE(t.is_ok());
            CHECK_MESSAGE(t.status().code() == Code::usage, t.status().message());
        }
    }

}  // TEST_SUITE

}  // namespace
}  // namespace ssync::test
