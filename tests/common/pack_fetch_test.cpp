// Tests for common/pack_fetch.cpp: small objects cut out of packs served by a local
// publication, each checked as if downloaded alone; whatever a pack does not deliver intact is
// handed back for fetching one by one.
#include "ssync/pack_fetch.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <set>

#include "common/fault_fs.h"
#include "ssync/fs.h"
#include "ssync/hash.h"
#include "testutil.h"

namespace ssync::test {
namespace {

// A publication with packs of small objects, and a staging directory to fetch them into.
struct Fixture {
    TempDir tmp;
    std::string pub = tmp / "pub";
    std::string staging = tmp / "staging";
    UniqueFd staging_fd;
    std::vector<std::string> bodies;  // by object number
    PackIndex index;

    Fixture() {
        make_dirs(pub + "/packs");
        make_dirs(staging);
        auto fd = open_dir_trusted(staging);
        REQUIRE(fd.is_ok());
        staging_fd = std::move(fd).value();
        // Objects 0-9, of sizes from 0 (object 0) to twice the DownloadQueue's buffer.
        for (unsigned i = 0; i < 10; ++i) {
            std::size_t size = i == 0 ? 0 : (i * 37'000) % 300'000 + 1;
            bodies.push_back(pseudo_random_bytes(size, 100 + i));
        }
    }

    // Writes a pack of these objects and lists it in the index; returns its bytes.
    std::string add_pack(const std::vector<unsigned>& objects) {
        Pack pack;
        std::string bytes;
        for (unsigned i : objects) {
            pack.objects.push_back({sha256_hex(bodies[i]), bodies[i].size()});
            bytes += bodies[i];
        }
        pack.size = bytes.size();
        pack.sha256 = sha256_hex(bytes);
        write_file(pub + "/" + layout::pack_path(pack.sha256), bytes);
        index.packs.push_back(std::move(pack));
        return bytes;
    }

    Download download_of(unsigned i) const {
        Download d;
        d.sha256 = sha256_hex(bodies[i]);
        d.path = "objects/" + d.sha256.substr(0, 2) + "/" + d.sha256;  // not served: no fallback here
        d.size = bodies[i].size();
        d.dir_fd = staging_fd.get();
        d.file_name = d.sha256;
        return d;
    }
    std::vector<Download> downloads_of(const std::vector<unsigned>& objects) const {
        std::vector<Download> out;
        for (unsigned i : objects) out.push_back(download_of(i));
        return out;
    }
    bool staged(unsigned i) const { return exists(staging + "/" + sha256_hex(bodies[i])); }
    std::size_t staged_count() const {
        auto list = list_dir(staging_fd.get(), staging);
        REQUIRE(list.is_ok());
        return list->size();
    }

    struct Outcome {
        Result<std::vector<Download>> rest;
        PackFetchStats stats;
        std::uint64_t progress_files = 0, progress_bytes = 0;
    };
    Outcome fetch(std::vector<Download> downloads, FileSystem* fs = nullptr) {
        auto transport = open_transport(pub);
        REQUIRE(transport.is_ok());
        std::atomic<std::uint64_t> files{0}, bytes{0};
        DownloadOptions options;
        options.fs = fs;
        options.progress = [&](std::uint64_t n, std::uint64_t b) {
            files += n;
            bytes += b;
        };
        PackFetchStats stats;
        auto rest = fetch_from_packs(**transport, index, std::move(downloads), options, &stats);
        return Outcome{std::move(rest), stats, files.load(), bytes.load()};
    }
};

std::set<std::string> digests_of(const std::vector<Download>& downloads) {
    std::set<std::string> out;
    for (const Download& d : downloads) out.insert(d.sha256);
    return out;
}

TEST_SUITE("fetch_from_packs") {
    TEST_CASE("every wanted object is cut out of its pack, verified, and counted") {
        Fixture f;
        std::string pack0 = f.add_pack({0, 1, 2, 3, 4});
        std::string pack1 = f.add_pack({5, 6, 7, 8, 9});
        auto out = f.fetch(f.downloads_of({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
        REQUIRE(out.rest.is_ok());
        CHECK(out.rest->empty());
        for (unsigned i = 0; i < 10; ++i) {
            CAPTURE(i);
            CHECK(read_file(f.staging + "/" + sha256_hex(f.bodies[i])) == f.bodies[i]);
        }
        CHECK(out.stats.packs == 2);
        CHECK(out.stats.objects == 10);
        CHECK(out.stats.bytes == pack0.size() + pack1.size());
        CHECK(out.stats.object_bytes == pack0.size() + pack1.size());
        CHECK(out.progress_files == 10);
        CHECK(out.progress_bytes == pack0.size() + pack1.size());
    }

    TEST_CASE("an empty object is delivered first, amid and last in a pack") {
        for (std::vector<unsigned> order : {std::vector<unsigned>{0, 1, 2}, {1, 0, 2}, {1, 2, 0}}) {
            Fixture f;
            f.add_pack(order);
            auto out = f.fetch(f.downloads_of({0, 1, 2}));
            REQUIRE(out.rest.is_ok());
            CHECK(out.rest->empty());
            CHECK(f.staged(0));
            CHECK(read_file(f.staging + "/" + sha256_hex(f.bodies[2])) == f.bodies[2]);
            CHECK(out.stats.objects == 3);
        }
    }

    TEST_CASE("a pack is fetched only when at least half of its bytes are wanted") {
        Fixture f;
        f.add_pack({1, 2, 3, 4});                 // wanted: 1 only, the smallest part
        std::string pack1 = f.add_pack({5, 6});   // wanted: 6, the larger part
        REQUIRE(f.bodies[1].size() * 2 < f.bodies[1].size() + f.bodies[2].size() + f.bodies[3].size() + f.bodies[4].size());
        REQUIRE(f.bodies[6].size() >= f.bodies[5].size());
        auto out = f.fetch(f.downloads_of({1, 6, 7}));
        REQUIRE(out.rest.is_ok());
        // 1 is left for a fetch of its own, and so is 7, in no pack.
        CHECK(digests_of(*out.rest) == digests_of(f.downloads_of({1, 7})));
        CHECK(f.staged(6));
        CHECK(f.staged_count() == 1);  // 5 came with the pack but is not wanted: not written
        CHECK(out.stats.packs == 1);
        CHECK(out.stats.bytes == pack1.size());
        CHECK(out.stats.objects == 1);
        CHECK(out.stats.object_bytes == f.bodies[6].size());
    }

    TEST_CASE("a lying index or a damaged pack only hands objects back") {
        SUBCASE("one object's bytes altered in the pack") {
            Fixture f;
            std::string bytes = f.add_pack({1, 2, 3});
            bytes[f.bodies[1].size() + 5] ^= 1;  // inside object 2
            write_file(f.pub + "/" + layout::pack_path(f.index.packs[0].sha256), bytes);
            auto out = f.fetch(f.downloads_of({1, 2, 3}));
            REQUIRE(out.rest.is_ok());
            CHECK(digests_of(*out.rest) == digests_of(f.downloads_of({2})));
            CHECK(f.staged(1));
            CHECK(f.staged(3));
            CHECK_FALSE(f.staged(2));  // the wrong body was removed
            CHECK(out.progress_files == 2);
        }
        SUBCASE("the index gives an object another size than the manifest") {
            Fixture f;
            f.add_pack({1, 2, 3});
            std::vector<Download> downloads = f.downloads_of({1, 2, 3});
            downloads[1].size += 1;  // what the signed manifest says wins: not cut from the pack
            auto out = f.fetch(downloads);
            REQUIRE(out.rest.is_ok());
            CHECK(digests_of(*out.rest) == digests_of(f.downloads_of({2})));
            CHECK(f.staged(1));
            CHECK(f.staged(3));
        }
        SUBCASE("the index's sizes are shifted: pieces cut in the wrong places fail their hashes") {
            Fixture f;
            f.add_pack({1, 2, 3});
            Pack& p = f.index.packs[0];
            p.objects[0].size -= 10;
            p.objects[1].size += 10;
            std::vector<Download> downloads = f.downloads_of({1, 2, 3});
            downloads[0].size -= 10;  // a manifest agreeing with the lie still gets nothing wrong
            downloads[1].size += 10;
            auto out = f.fetch(downloads);
            REQUIRE(out.rest.is_ok());
            CHECK(digests_of(*out.rest) == digests_of(f.downloads_of({1, 2})));
            CHECK(f.staged(3));
            CHECK(f.staged_count() == 1);
        }
        SUBCASE("the pack is missing") {
            Fixture f;
            f.add_pack({1, 2, 3});
            REQUIRE(::unlink((f.pub + "/" + layout::pack_path(f.index.packs[0].sha256)).c_str()) == 0);
            auto out = f.fetch(f.downloads_of({1, 2, 3}));
            REQUIRE(out.rest.is_ok());
            CHECK(out.rest->size() == 3);
            CHECK(f.staged_count() == 0);
        }
        SUBCASE("the pack is shorter than its index says") {
            Fixture f;
            std::string bytes = f.add_pack({1, 2, 3});
            write_file(f.pub + "/" + layout::pack_path(f.index.packs[0].sha256),
                       bytes.substr(0, f.bodies[1].size() + f.bodies[2].size() / 2));
            auto out = f.fetch(f.downloads_of({1, 2, 3}));
            REQUIRE(out.rest.is_ok());
            CHECK(digests_of(*out.rest) == digests_of(f.downloads_of({2, 3})));
            CHECK(f.staged(1));
            CHECK(f.staged_count() == 1);  // the piece cut short was removed
        }
        SUBCASE("the pack is longer than its index says") {
            Fixture f;
            std::string bytes = f.add_pack({1, 2});
            write_file(f.pub + "/" + layout::pack_path(f.index.packs[0].sha256), bytes + "trailing");
            auto out = f.fetch(f.downloads_of({1, 2}));
            REQUIRE(out.rest.is_ok());
            // Whatever was cut before the excess showed verified; the rest is handed back.
            for (const Download& d : *out.rest) CHECK_FALSE(exists(f.staging + "/" + d.file_name));
            CHECK(out.rest->size() + f.staged_count() == 2);
        }
    }

    TEST_CASE("a failing disk fails the batch with its error") {
        Fixture f;
        f.add_pack({1, 2, 3, 4, 5});
        FaultInjectingFs faulty;
        faulty.fail(FaultInjectingFs::Op::write, 2, ENOSPC, true);
        auto out = f.fetch(f.downloads_of({1, 2, 3, 4, 5}), &faulty);
        REQUIRE_FALSE(out.rest.is_ok());
        CHECK(out.rest.status().code() == Code::io);
        CHECK(out.rest.status().os_error() == ENOSPC);
        CHECK(out.rest.status().message().find("No space left on device") != std::string::npos);
    }

    TEST_CASE("nothing wanted from any pack costs no request") {
        Fixture f;
        f.add_pack({1, 2});
        auto out = f.fetch(f.downloads_of({3, 4}));
        REQUIRE(out.rest.is_ok());
        CHECK(out.rest->size() == 2);
        CHECK(out.stats.packs == 0);
        auto none = f.fetch({});
        REQUIRE(none.rest.is_ok());
        CHECK(none.rest->empty());
    }
}

}  // namespace
}  // namespace ssync::test
