#include "ssync/collect.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "fault_fs.h"
#include "ssync/hash.h"
#include "ssync/manifest.h"
#include "ssync/packs.h"
#include "ssync/publication.h"
#include "testutil.h"

namespace ssync {

namespace {

Result<std::string> fake_sign(std::string_view bytes) { return "SIG " + sha256_hex(bytes); }

// A publication of `releases` releases: "shared" is in all of them, "v" changes every time,
// "only-N" exists only in release N.
struct History {
    test::TempDir src, pub;
    explicit History(int releases) {
        test::write_file(src / "shared", "the same in every release");
        for (int n = 1; n <= releases; ++n) {
            test::write_file(src / "v", "version " + std::to_string(n));
            if (n > 1) REQUIRE(::unlink((src / ("only-" + std::to_string(n - 1))).c_str()) == 0);
            test::write_file(src / ("only-" + std::to_string(n)), "only in " + std::to_string(n));
            PublishOptions o;
            o.name = "site";
            o.now = 1700000000 + n;
            REQUIRE(publish(src.path(), pub.path(), o, fake_sign).is_ok());
        }
    }
    // The packs release `serial` lists.
    std::vector<std::string> packs_of(std::uint64_t serial) const {
        auto index = parse_pack_index(test::read_file(pub / layout::pack_index_path(serial)), "index");
        REQUIRE(index.is_ok());
        std::vector<std::string> names;
        for (const Pack& p : index->packs) names.push_back(p.sha256);
        return names;
    }
    bool has_pack(const std::string& sha256) const { return test::exists(pub / layout::pack_path(sha256)); }
    bool has_object(const std::string& content) const {
        return test::exists(pub / layout::object_path(sha256_hex(content)));
    }
    // Every file of the current release has its object.
    void current_is_whole() const {
        auto m = parse_manifest(test::read_file(pub / "manifest.json"));
        REQUIRE(m.is_ok());
        for (const Entry& e : m->entries) {
            if (e.type == EntryType::file) CHECK_MESSAGE(test::exists(pub / layout::object_path(e.sha256)), e.path);
        }
    }
};

}  // namespace

TEST_SUITE("Collect") {
    TEST_CASE("keeps the newest releases and their objects, removes the rest") {
        History h(4);
        CollectOptions o;
        o.keep = 2;
        auto r = collect_garbage(h.pub.path(), o);
        REQUIRE(r.is_ok());
        CHECK(r->kept == std::vector<std::uint64_t>{4, 3});
        CHECK(r->removed_releases == std::vector<std::uint64_t>{2, 1});
        CHECK_FALSE(test::exists(h.pub / "releases/1"));
        CHECK_FALSE(test::exists(h.pub / "releases/2"));
        CHECK(test::exists(h.pub / "releases/3/manifest.json"));
        CHECK(test::exists(h.pub / "releases/4/manifest.json.asc"));
        // Objects: version 1, 2 and only-1, only-2 went; 3 and 4 and the shared one stayed.
        CHECK(r->objects_removed == 4);
        CHECK(r->bytes_removed == 2 * std::string("version 1").size() + 2 * std::string("only in 1").size());
        CHECK(r->objects_kept == 5);
        CHECK_FALSE(h.has_object("version 1"));
        CHECK_FALSE(h.has_object("only in 2"));
        CHECK(h.has_object("version 3"));
        CHECK(h.has_object("only in 3"));
        CHECK(h.has_object("the same in every release"));
        h.current_is_whole();
        CHECK(test::read_file(h.pub / "latest") == "4\n");

        // Nothing left to do the second time; keep=1 then drops release 3 alone.
        auto again = collect_garbage(h.pub.path(), o);
        REQUIRE(again.is_ok());
        CHECK(again->removed_releases.empty());
        CHECK(again->objects_removed == 0);
        o.keep = 1;
        auto one = collect_garbage(h.pub.path(), o);
        REQUIRE(one.is_ok());
        CHECK(one->removed_releases == std::vector<std::uint64_t>{3});
        CHECK(one->objects_removed == 2);
        h.current_is_whole();

        // The signer carries on: the next release reuses what is left and stores what is not.
        test::write_file(h.src / "v", "version 3");  // content gc removed comes back
        PublishOptions p;
        p.now = 1700000100;
        auto next = publish(h.src.path(), h.pub.path(), p, fake_sign);
        REQUIRE(next.is_ok());
        CHECK(next->stats.objects_stored == 1);
        h.current_is_whole();
    }

    // Each release packs its new v and only-N; the first pack holds "shared" too, so every
    // release lists it.
    TEST_CASE("keeps the packs a kept release lists, removes the others, and names it does not write stay") {
        History h(4);
        std::vector<std::string> listed1 = h.packs_of(1), listed2 = h.packs_of(2);
        std::vector<std::string> listed3 = h.packs_of(3), listed4 = h.packs_of(4);
        REQUIRE(listed1.size() == 1);
        REQUIRE(listed2 == std::vector<std::string>{listed1[0], listed2[1]});
        REQUIRE(listed3 == std::vector<std::string>{listed1[0], listed3[1]});
        REQUIRE(listed4 == std::vector<std::string>{listed1[0], listed4[1]});
        std::uint64_t pack2_size = test::read_file(h.pub / layout::pack_path(listed2[1])).size();
        // Names sign does not write in packs/, and a pack's name held by a symlink.
        test::write_file(h.pub / "packs/README", "not a pack");
        test::write_file(h.pub / ("packs/" + std::string(64, 'a') + ".pack.old"), "not a pack name");
        std::string linked = std::string(64, 'b') + ".pack";
        REQUIRE(::symlink("/etc/passwd", (h.pub / ("packs/" + linked)).c_str()) == 0);
        CollectOptions o;
        o.keep = 2;
        o.dry_run = true;
        std::string before = test::run({"find", h.pub.path(), "-printf", "%P %s\\n"}).out;
        auto dry = collect_garbage(h.pub.path(), o);
        REQUIRE(dry.is_ok());
        CHECK(dry->packs_removed == 1);
        CHECK(dry->pack_bytes_removed == pack2_size);
        CHECK(test::run({"find", h.pub.path(), "-printf", "%P %s\\n"}).out == before);
        o.dry_run = false;
        auto r = collect_garbage(h.pub.path(), o);
        REQUIRE(r.is_ok());
        CHECK(r->packs_kept == 3);
        CHECK(r->packs_removed == 1);
        CHECK(r->pack_bytes_removed == pack2_size);
        CHECK(h.has_pack(listed1[0]));
        CHECK_FALSE(h.has_pack(listed2[1]));
        CHECK(h.has_pack(listed3[1]));
        CHECK(h.has_pack(listed4[1]));
        CHECK(test::exists(h.pub / "packs/README"));
        CHECK(test::exists(h.pub / ("packs/" + std::string(64, 'a') + ".pack.old")));
        CHECK(test::exists(h.pub / ("packs/" + linked)));
        // keep=1: the pack only release 3 listed goes; the one all list stays.
        o.keep = 1;
        auto one = collect_garbage(h.pub.path(), o);
        REQUIRE(one.is_ok());
        CHECK(one->packs_removed == 1);
        CHECK_FALSE(h.has_pack(listed3[1]));
        CHECK(h.has_pack(listed1[0]));
        CHECK(h.has_pack(listed4[1]));
    }

    TEST_CASE("a kept release without a pack index is fine, a pack temporary goes, a symlink at packs/ is refused") {
        History h(2);
        // Release 2 as --no-packs makes it: no index, so it holds no pack.
        std::vector<std::string> listed1 = h.packs_of(1), listed2 = h.packs_of(2);
        REQUIRE(::unlink((h.pub / layout::pack_index_path(2)).c_str()) == 0);
        test::write_file(h.pub / "objects/tmp/p123-0", "half a pack");
        CollectOptions o;
        o.keep = 2;
        auto r = collect_garbage(h.pub.path(), o);
        REQUIRE_MESSAGE(r.is_ok(), r.status().message());
        CHECK(r->temporaries_removed == 1);
        CHECK_FALSE(test::exists(h.pub / "objects/tmp/p123-0"));
        CHECK(r->packs_kept == 1);
        CHECK(h.has_pack(listed1[0]));
        CHECK_FALSE(h.has_pack(listed2[1]));

        test::TempDir outside;
        REQUIRE(::rename((h.pub / "packs").c_str(), (outside / "packs").c_str()) == 0);
        REQUIRE(::symlink((outside / "packs").c_str(), (h.pub / "packs").c_str()) == 0);
        o.keep = 1;
        auto refused = collect_garbage(h.pub.path(), o);
        REQUIRE_FALSE(refused.is_ok());
        CHECK(refused.status().code() == Code::io);
        CHECK(refused.status().message() == h.pub / "packs: not a directory (a symlink or file is in the way)");
        CHECK(h.has_pack(listed1[0]));
    }

    TEST_CASE("a dry run reports the same and removes nothing") {
        History h(3);
        std::string before = test::run({"find", h.pub.path(), "-printf", "%P %s\\n"}).out;
        CollectOptions o;
        o.keep = 1;
        o.dry_run = true;
        auto r = collect_garbage(h.pub.path(), o);
        REQUIRE(r.is_ok());
        CHECK(r->removed_releases == std::vector<std::uint64_t>{2, 1});
        CHECK(r->objects_removed == 4);
        CHECK(test::run({"find", h.pub.path(), "-printf", "%P %s\\n"}).out == before);
    }

    TEST_CASE("unpublished releases above latest and temporaries go, names ssync does not write stay") {
        History h(2);
        test::make_dirs(h.pub / "releases/3");
        test::write_file(h.pub / "releases/3/manifest.json", "half-written");
        test::make_dirs(h.pub / "releases/notes");
        test::write_file(h.pub / "releases/007", "not a serial ssync writes");
        test::write_file(h.pub / "objects/tmp/t123-0", "partial");
        test::write_file(h.pub / "objects/ab/README", "not a digest");
        test::write_file(h.pub / "objects/zz", "not a fan-out directory");
        std::string stray(64, 'c');  // a digest-named file in the wrong fan-out directory
        test::write_file(h.pub / ("objects/ab/" + stray), "misplaced");
        CollectOptions o;
        o.keep = 5;
        auto r = collect_garbage(h.pub.path(), o);
        REQUIRE(r.is_ok());
        CHECK(r->kept == std::vector<std::uint64_t>{2, 1});
        CHECK(r->removed_releases == std::vector<std::uint64_t>{3});
        CHECK(r->temporaries_removed == 1);
        CHECK(r->objects_removed == 0);
        CHECK_FALSE(test::exists(h.pub / "releases/3"));
        CHECK_FALSE(test::exists(h.pub / "objects/tmp/t123-0"));
        CHECK(test::exists(h.pub / "objects/tmp"));
        CHECK(test::exists(h.pub / "releases/notes"));
        CHECK(test::exists(h.pub / "releases/007"));
        CHECK(test::exists(h.pub / "objects/ab/README"));
        CHECK(test::exists(h.pub / "objects/zz"));
        CHECK(test::exists(h.pub / ("objects/ab/" + stray)));
    }

    TEST_CASE("a kept manifest that cannot be read or parsed stops the run before anything is removed") {
        History h(3);
        std::string before = test::run({"find", h.pub.path(), "-printf", "%P %s\\n"}).out;
        CollectOptions o;
        o.keep = 2;
        SUBCASE("truncated") {
            test::write_file(h.pub / "releases/2/manifest.json", "{\"format\": ");
            before = test::run({"find", h.pub.path(), "-printf", "%P %s\\n"}).out;
            auto r = collect_garbage(h.pub.path(), o);
            REQUIRE_FALSE(r.is_ok());
            CHECK(r.status().code() == Code::bad_manifest);
            CHECK(r.status().message().find(h.pub / "releases/2/manifest.json") == 0);
        }
        SUBCASE("another release's manifest") {
            test::write_file(h.pub / "releases/2/manifest.json", test::read_file(h.pub / "releases/1/manifest.json"));
            before = test::run({"find", h.pub.path(), "-printf", "%P %s\\n"}).out;
            auto r = collect_garbage(h.pub.path(), o);
            REQUIRE_FALSE(r.is_ok());
            CHECK(r.status().message().find("serial 1 in a directory for serial 2") != std::string::npos);
        }
        SUBCASE("missing") {
            REQUIRE(::unlink((h.pub / "releases/3/manifest.json").c_str()) == 0);
            before = test::run({"find", h.pub.path(), "-printf", "%P %s\\n"}).out;
            auto r = collect_garbage(h.pub.path(), o);
            REQUIRE_FALSE(r.is_ok());
            CHECK(r.status().message().find(h.pub / "releases/3/manifest.json") == 0);
        }
        SUBCASE("a pack index that does not parse") {
            test::write_file(h.pub / "releases/2/packs", "ssync-packs 1\npack\n");
            before = test::run({"find", h.pub.path(), "-printf", "%P %s\\n"}).out;
            auto r = collect_garbage(h.pub.path(), o);
            REQUIRE_FALSE(r.is_ok());
            CHECK(r.status().code() == Code::bad_manifest);
            CHECK(r.status().message().find(h.pub / "releases/2/packs: line 2: ") == 0);
        }
        SUBCASE("a pack index that cannot be read") {
            REQUIRE(::unlink((h.pub / "releases/3/packs").c_str()) == 0);
            REQUIRE(::symlink("/etc/passwd", (h.pub / "releases/3/packs").c_str()) == 0);
            before = test::run({"find", h.pub.path(), "-printf", "%P %s\\n"}).out;
            auto r = collect_garbage(h.pub.path(), o);
            REQUIRE_FALSE(r.is_ok());
            CHECK(r.status().code() == Code::io);
            CHECK(r.status().message().find(h.pub / "releases/3/packs: ") == 0);
        }
        CHECK(test::run({"find", h.pub.path(), "-printf", "%P %s\\n"}).out == before);
    }

    TEST_CASE("errors name the directory with the publication's path") {
        History h(2);
        CollectOptions o;
        SUBCASE("objects/tmp is a file") {
            REQUIRE(test::run({"rm", "-r", h.pub / "objects/tmp"}).exit_status == 0);
            test::write_file(h.pub / "objects/tmp", "not a directory");
            auto r = collect_garbage(h.pub.path(), o);
            CHECK(r.status().code() == Code::io);
            CHECK(r.status().message() == h.pub / "objects/tmp: not a directory (a symlink or file is in the way)");
        }
        SUBCASE("a fan-out directory is a symlink") {
            // sign makes all 256 fan-out directories: an empty one gives way to the symlink.
            std::string fanout;
            for (int i = 0; i < 256 && fanout.empty(); ++i) {
                static const char hex[] = "0123456789abcdef";
                const std::string name = {hex[i >> 4], hex[i & 15]};
                if (::rmdir((h.pub / ("objects/" + name)).c_str()) == 0) fanout = name;
            }
            REQUIRE_FALSE(fanout.empty());
            REQUIRE(::symlink("/", (h.pub / ("objects/" + fanout)).c_str()) == 0);
            auto r = collect_garbage(h.pub.path(), o);
            CHECK(r.status().code() == Code::io);
            CHECK(r.status().message().find(h.pub / "objects/" + fanout + ": not a directory") == 0);
        }
        SUBCASE("a kept release directory is a file") {
            std::string rel = h.pub / "releases/1";
            REQUIRE(test::run({"rm", "-r", rel}).exit_status == 0);
            test::write_file(rel, "");
            auto r = collect_garbage(h.pub.path(), o);
            CHECK(r.status().code() == Code::io);
            CHECK(r.status().message().find(rel + ": not a directory") == 0);
        }
        SUBCASE(".ssync-signer is a file: an I/O error, not 'not a publication'") {
            REQUIRE(test::run({"rm", "-r", h.pub / layout::kSignerDir}).exit_status == 0);
            test::write_file(h.pub / layout::kSignerDir, "");
            auto r = collect_garbage(h.pub.path(), o);
            CHECK(r.status().code() == Code::io);
            CHECK(r.status().message().find(h.pub / ".ssync-signer: not a directory") == 0);
        }
    }

    TEST_CASE("refusals: keep 0, not a publication, nothing published, a bad latest, a sign running") {
        History h(1);
        CollectOptions o;
        o.keep = 0;
        CHECK(collect_garbage(h.pub.path(), o).status().code() == Code::usage);
        o.keep = 2;
        auto plain = collect_garbage(h.src.path(), o);
        CHECK(plain.status().code() == Code::usage);
        CHECK(plain.status().message().find("not a publication") != std::string::npos);

        test::write_file(h.pub / "latest", "9\n");
        CHECK(collect_garbage(h.pub.path(), o).status().message().find("no releases/ directory") != std::string::npos);
        test::write_file(h.pub / "latest", "01\n");
        CHECK(collect_garbage(h.pub.path(), o).status().message().find("latest: not a serial number") !=
              std::string::npos);
        test::write_file(h.pub / "latest", "1\n");

        auto signer_dir = open_dir_trusted(h.pub / layout::kSignerDir);
        REQUIRE(signer_dir.is_ok());
        auto lock = FileLock::acquire(signer_dir->get(), layout::kSignerLock, "lock");
        REQUIRE(lock.is_ok());
        CHECK(collect_garbage(h.pub.path(), o).status().code() == Code::busy);
    }

    TEST_CASE("a failing unlink stops the run with its error, and the next run finishes") {
        History h(3);
        test::FaultInjectingFs faulty;
        CollectOptions o;
        o.keep = 1;
        o.fs = &faulty;
        // Releases 2 and 1 take four unlinks each (three files, then the directory): 1-8 remove
        // them, 9 on are objects.
        SUBCASE("while removing a release") {
            faulty.fail(test::FaultInjectingFs::Op::unlink, 2, EIO);
            auto r = collect_garbage(h.pub.path(), o);
            REQUIRE_FALSE(r.is_ok());
            CHECK(r.status().code() == Code::io);
            CHECK(r.status().message().find(h.pub / "releases/2/") == 0);  // the newest goes first
        }
        SUBCASE("while removing an object") {
            faulty.fail(test::FaultInjectingFs::Op::unlink, 9, EIO);
            auto r = collect_garbage(h.pub.path(), o);
            REQUIRE_FALSE(r.is_ok());
            CHECK(r.status().message().find(h.pub / "objects/") == 0);
            CHECK_FALSE(test::exists(h.pub / "releases/1"));
            CHECK_FALSE(test::exists(h.pub / "releases/2"));
        }
        h.current_is_whole();
        o.fs = nullptr;
        auto again = collect_garbage(h.pub.path(), o);
        REQUIRE(again.is_ok());
        CHECK_FALSE(h.has_object("version 1"));
        CHECK_FALSE(h.has_object("version 2"));
        h.current_is_whole();
    }
}

}  // namespace ssync
