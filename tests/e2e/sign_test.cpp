// ssync-signer sign against a publication someone tampered with: found by an adversarial test
// run, replayed here through the real binary, as a cron job would meet it.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

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
}

}  // namespace ssync::test
