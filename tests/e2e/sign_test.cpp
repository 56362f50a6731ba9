// ssync-signer sign against a publication someone tampered with: found by an adversarial test
// run, replayed here through the real binary, as a cron job would meet it.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "e2e.h"

namespace ssync::test {

TEST_SUITE("e2e sign") {
    TEST_CASE("a symlink planted in tree/ leads no write out of the publication") {
        Published p;
        REQUIRE(p.sign().exit_status == 0);
        std::string outside = p.dir / "outside";
        make_dirs(outside);
        REQUIRE(run({"rm", "-r", p.pub + "/tree/docs"}).exit_status == 0);
        // Relative, as in the report: pub/tree/docs -> pub/tree/../../outside.
        REQUIRE(::symlink("../../outside", (p.pub + "/tree/docs").c_str()) == 0);
        write_file(p.src + "/docs/new", "new\n");
        auto s = p.sign();
        CHECK_MESSAGE(s.exit_status == 0, s.err);
        CHECK_FALSE(exists(outside + "/new"));
        CHECK(run({"find", outside, "-mindepth", "1"}).out.empty());
        struct stat st;
        REQUIRE(::lstat((p.pub + "/tree/docs").c_str(), &st) == 0);
        CHECK(S_ISDIR(st.st_mode));
        CHECK(read_file(p.pub + "/tree/docs/new") == "new\n");
        CHECK(read_file(p.pub + "/tree/docs/deep/notes.md") == "# notes\n");
        auto a = p.audit(p.src);
        CHECK_MESSAGE(a.exit_status == 0, a.out << a.err);
    }

    TEST_CASE("sign packs by default and counts it in --json, --no-packs writes no index, gc reports packs") {
        Published p;
        auto first = p.sign({"--json"});
        REQUIRE_MESSAGE(first.exit_status == 0, first.err);
        auto j = nlohmann::json::parse(first.out);
        CHECK(j["packs_written"] == 1);
        CHECK(j["bytes_packed"].get<std::uint64_t>() > 0);
        std::string index = read_file(p.pub + "/releases/1/packs");
        CHECK(index.rfind("ssync-packs 1\npack ", 0) == 0);
        write_file(p.src + "/new-file", "new\n");
        auto second = p.sign({"--json", "--no-packs"});
        REQUIRE_MESSAGE(second.exit_status == 0, second.err);
        CHECK(nlohmann::json::parse(second.out)["packs_written"] == 0);
        CHECK_FALSE(exists(p.pub + "/releases/2/packs"));
        auto a = p.audit(p.src);
        CHECK_MESSAGE(a.exit_status == 0, a.out << a.err);
        // Release 2 lists no pack: with release 1 gone, so is its pack.
        auto gc = signer({"gc", "--out", p.pub, "--keep", "1", "--json"});
        REQUIRE_MESSAGE(gc.exit_status == 0, gc.err);
        auto g = nlohmann::json::parse(gc.out);
        CHECK(g["packs_removed"] == 1);
        CHECK(g["packs_kept"] == 0);
        CHECK(g["pack_bytes_removed"] == j["bytes_packed"]);
        CHECK(run({"find", p.pub + "/packs", "-type", "f"}).out.empty());
        CHECK(signer({"sign", "--help"}).out.find("--no-packs") != std::string::npos);
    }
}

}  // namespace ssync::test
