#include "ssync/scan.h"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <tuple>

#include "testutil.h"

namespace ssync {

namespace {
Result<std::vector<ScannedEntry>> scan(const std::string& dir, SpecialFiles special = SpecialFiles::refuse) {
    auto fd = open_dir_trusted(dir);
    REQUIRE(fd.is_ok());
    ScanOptions options;
    options.special = special;
    return scan_tree(fd->get(), options);
}
std::vector<std::string> paths(const std::vector<ScannedEntry>& entries) {
    std::vector<std::string> out;
    for (const auto& e : entries) out.push_back(e.entry.path);
    return out;
}
}  // namespace

TEST_SUITE("TreeScanner") {
    TEST_CASE("types, modes, symlink targets, bytewise order") {
        test::TempDir dir;
        test::write_file(dir / "a/b", "hello", 0640);
        test::write_file(dir / "a-b", "x", 04755);
        test::make_dirs(dir / "empty");
        ::chmod((dir / "empty").c_str(), 01777);
        REQUIRE(::symlink("../elsewhere", (dir / "a/link").c_str()) == 0);
        auto r = scan(dir.path());
        REQUIRE(r.is_ok());
        CHECK(paths(*r) == std::vector<std::string>{"a", "a-b", "a/b", "a/link", "empty"});
        const auto& e = *r;
        CHECK(e[0].entry.type == EntryType::dir);
        CHECK(e[1].entry.mode == 04755);
        CHECK(e[2].entry.type == EntryType::file);
        CHECK(e[2].entry.size == 5);
        CHECK(e[2].entry.mode == 0640);
        CHECK(e[2].entry.mtime.has_value());
        CHECK(e[2].stat.size == 5);
        CHECK(e[2].entry.user == user_name(::getuid()));
        CHECK(e[3].entry.type == EntryType::symlink);
        CHECK(e[3].entry.target == "../elsewhere");
        CHECK(e[4].entry.mode == 01777);
    }

    TEST_CASE("a FIFO is refused by name, or skipped, or included for auditors") {
        test::TempDir dir;
        test::write_file(dir / "ok", "x");
        test::make_dirs(dir / "d");
        REQUIRE(::mkfifo((dir / "d/pipe").c_str(), 0644) == 0);
        auto refused = scan(dir.path());
        REQUIRE_FALSE(refused.is_ok());
        CHECK(refused.status().message().find("d/pipe: is a FIFO") == 0);
        auto skipped = scan(dir.path(), SpecialFiles::skip);
        REQUIRE(skipped.is_ok());
        CHECK(paths(*skipped) == std::vector<std::string>{"d", "ok"});
        auto included = scan(dir.path(), SpecialFiles::include);
        REQUIRE(included.is_ok());
        REQUIRE(included->size() == 3);
        CHECK(std::string((*included)[1].special) == "a FIFO");
    }

    TEST_CASE("a socket is refused") {
        test::TempDir dir;
        int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::string p = dir / "sock";
        REQUIRE(p.size() < sizeof addr.sun_path);
        std::strcpy(addr.sun_path, p.c_str());
        REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        ::close(s);
        auto r = scan(dir.path());
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().message().find("sock: is a socket") == 0);
    }

    TEST_CASE("a file name that is not UTF-8 is refused, naming it readably") {
        test::TempDir dir;
        test::write_file(dir / "bad\xff", "x");
        auto r = scan(dir.path());
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().message().find("bad\\xff: file name is not valid UTF-8") == 0);
    }

    TEST_CASE("the top-level .ssync directory is not part of the tree") {
        test::TempDir dir;
        test::write_file(dir / ".ssync/manifest.json", "{}");
        test::write_file(dir / "sub/.ssync", "a file of that name deeper down is content");
        auto r = scan(dir.path());
        REQUIRE(r.is_ok());
        CHECK(paths(*r) == std::vector<std::string>{"sub", "sub/.ssync"});
    }
}

TEST_SUITE("StatCache") {
    // A file written to the cache for `entries` (path, stat, digest).
    StatCache round_trip(const std::vector<std::tuple<std::string, FileStat, std::string>>& entries) {
        std::vector<ScannedEntry> scanned;
        for (const auto& [path, stat, sha256] : entries) {
            ScannedEntry se;
            se.entry.path = path;
            se.entry.sha256 = sha256;
            se.stat = stat;
            scanned.push_back(se);
        }
        test::TempDir dir;
        test::write_file(dir / "cache", StatCache::format(scanned));
        auto fd = open_dir_trusted(dir.path());
        REQUIRE(fd.is_ok());
        return StatCache::load(fd->get(), "cache");
    }

    TEST_CASE("round trip, and a changed stat misses") {
        FileStat st{1, 2, 3, 4, 5};
        std::string odd = "odd name\nwith newline and \xff";
        StatCache loaded = round_trip({{"a/b", st, std::string(64, 'c')}, {odd, st, std::string(64, 'd')}});
        CHECK(loaded.size() == 2);
        CHECK(loaded.lookup("a/b", st) == std::string(64, 'c'));
        CHECK(loaded.lookup(odd, st) == std::string(64, 'd'));
        FileStat touched = st;
        touched.ctime_ns = 6;
        CHECK(loaded.lookup("a/b", touched).empty());
        CHECK(loaded.lookup("missing", st).empty());
        // find() answers whatever the stat: the signer uses the recorded size as a hint.
        REQUIRE(loaded.find("a/b"));
        CHECK(loaded.find("a/b")->stat.size == 3);
        CHECK_FALSE(loaded.find("a"));
        CHECK_FALSE(loaded.find("a/b/c"));
    }

    TEST_CASE("records out of path order are found all the same") {
        FileStat st{1, 2, 3, 4, 5};
        std::vector<std::tuple<std::string, FileStat, std::string>> entries;
        for (int i = 99; i >= 0; --i) {
            FileStat s = st;
            s.size = static_cast<std::uint64_t>(i);
            entries.emplace_back("f" + std::to_string(i), s, std::string(64, 'a' + i % 6));
        }
        StatCache loaded = round_trip(entries);
        REQUIRE(loaded.size() == 100);
        for (int i = 0; i < 100; ++i) {
            const StatCache::Record* r = loaded.find("f" + std::to_string(i));
            REQUIRE(r);
            CHECK(r->stat.size == static_cast<std::uint64_t>(i));
            CHECK(r->sha256 == std::string(64, 'a' + i % 6));
        }
    }

    TEST_CASE("format writes the hashed files of a scan, which load reads back") {
        std::vector<ScannedEntry> scanned(4);
        scanned[0].entry.path = "dir";
        scanned[0].entry.type = EntryType::dir;
        scanned[1].entry.path = "dir/old";
        scanned[1].entry.sha256 = std::string(64, 'e');
        scanned[1].stat = {7, 8, 9, -1500000000, -1, };  // dated before 1970
        scanned[2].entry.path = "dir/unhashed";  // no digest: nothing to remember
        scanned[3].entry.path = "fifo";
        scanned[3].entry.sha256 = std::string(64, 'f');
        scanned[3].special = "a FIFO";
        test::TempDir dir;
        test::write_file(dir / "cache", StatCache::format(scanned));
        auto fd = open_dir_trusted(dir.path());
        StatCache loaded = StatCache::load(fd->get(), "cache");
        CHECK(loaded.size() == 1);
        CHECK(loaded.lookup("dir/old", scanned[1].stat) == std::string(64, 'e'));
    }

    TEST_CASE("a damaged cache is an empty cache") {
        test::TempDir dir;
        test::write_file(dir / "cache", std::string(64, 'c') + " 1 2 3 4 5 999 short\n");
        auto fd = open_dir_trusted(dir.path());
        CHECK(StatCache::load(fd->get(), "cache").size() == 0);
        CHECK(StatCache::load(fd->get(), "absent").size() == 0);
        // A length that runs past the end, and a record without its newline.
        test::write_file(dir / "cache2", std::string(64, 'c') + " 1 2 3 4 5 18446744073709551615 x\n");
        CHECK(StatCache::load(fd->get(), "cache2").size() == 0);
        test::write_file(dir / "cache3", std::string(64, 'c') + " 1 2 3 4 5 1 x");
        CHECK(StatCache::load(fd->get(), "cache3").size() == 0);
    }
}

}  // namespace ssync

namespace ssync {
TEST_SUITE("TreeScanner") {
    // Regression: the walker listed a dup of the caller's descriptor, which shares the read
    // offset, so a second scan of the same descriptor found an empty tree (and the mirror's
    // stat cache came out empty).
    TEST_CASE("scanning the same descriptor twice gives the same entries") {
        test::TempDir dir;
        test::write_file(dir / "a", "1");
        test::write_file(dir / "b/c", "2");
        auto fd = open_dir_trusted(dir.path());
        auto first = scan_tree(fd->get());
        auto second = scan_tree(fd->get());
        REQUIRE(first.is_ok());
        REQUIRE(second.is_ok());
        CHECK(first->size() == 3);
        CHECK(second->size() == 3);
    }

    TEST_CASE("on_file sees each regular file as it is found, `found` numbers them in walk order") {
        test::TempDir dir;
        test::write_file(dir / "b/z", "1");
        test::write_file(dir / "a-b", "22");
        test::write_file(dir / "a/c", "333");
        REQUIRE(::symlink("a-b", (dir / "link").c_str()) == 0);
        REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
        auto fd = open_dir_trusted(dir.path());
        REQUIRE(fd.is_ok());
        std::vector<std::pair<std::size_t, std::string>> calls;
        ScanOptions options;
        options.special = SpecialFiles::include;
        options.on_file = [&](const ScannedEntry& se) { calls.emplace_back(se.found, se.entry.path); };
        auto scanned = scan_tree(fd->get(), options);
        REQUIRE(scanned.is_ok());
        // Walk order: names sorted per directory, a directory's contents right after it.
        REQUIRE(calls.size() == 3);
        CHECK(calls[0] == std::make_pair(std::size_t{0}, std::string("a/c")));
        CHECK(calls[1] == std::make_pair(std::size_t{1}, std::string("a-b")));
        CHECK(calls[2] == std::make_pair(std::size_t{2}, std::string("b/z")));
        // The sorted result carries the same numbers, so a caller can match them up.
        for (const ScannedEntry& se : *scanned) {
            if (se.entry.type != EntryType::file || se.special) continue;
            CHECK(calls.at(se.found).second == se.entry.path);
        }
    }
}

TEST_SUITE("stamp_tree") {
    namespace {
    std::optional<TreeStamp> stamp(const std::string& dir, SpecialFiles special, unsigned threads) {
        auto fd = open_dir_trusted(dir);
        REQUIRE(fd.is_ok());
        return stamp_tree(fd->get(), special, threads);
    }
    // A tree with every kind of entry, several levels deep, and a top-level .ssync to skip.
    void make_mixed_tree(const test::TempDir& dir) {
        test::write_file(dir / "a/b/c", "hello", 0640);
        test::write_file(dir / "a-b", "x", 04755);
        test::write_file(dir / "a/b-c/d", std::string(70000, 'd'));
        for (int i = 0; i < 40; ++i) test::write_file(dir / ("wide/f" + std::to_string(i)), std::to_string(i));
        test::make_dirs(dir / "empty");
        test::write_file(dir / ".ssync/state", "not part of the tree");
        test::write_file(dir / "sub/.ssync/kept", "only the top-level one is skipped");
        REQUIRE(::symlink("../elsewhere", (dir / "a/link").c_str()) == 0);
        REQUIRE(::symlink("dangling/target", (dir / "zlink").c_str()) == 0);
    }
    }  // namespace

    TEST_CASE("it is the stamp of the scan, with the scan's counts, on one thread or several") {
        test::TempDir dir;
        make_mixed_tree(dir);
        auto scanned = scan(dir.path());
        REQUIRE(scanned.is_ok());
        std::size_t files = 0, dirs = 0, symlinks = 0;
        std::uint64_t bytes = 0;
        for (const ScannedEntry& se : *scanned) {
            files += se.entry.type == EntryType::file;
            dirs += se.entry.type == EntryType::dir;
            symlinks += se.entry.type == EntryType::symlink;
            if (se.entry.type == EntryType::file) bytes += se.entry.size;
        }
        REQUIRE(files == 44);  // .ssync/state is not counted, sub/.ssync/kept is
        for (unsigned threads : {1u, 2u, 7u}) {
            CAPTURE(threads);
            auto quick = stamp(dir.path(), SpecialFiles::refuse, threads);
            REQUIRE(quick.has_value());
            CHECK(quick->stamp == tree_stamp(*scanned));
            CHECK(quick->files == files);
            CHECK(quick->dirs == dirs);
            CHECK(quick->symlinks == symlinks);
            CHECK(quick->bytes == bytes);
        }
    }

    TEST_CASE("any change to an entry changes it") {
        test::TempDir dir;
        make_mixed_tree(dir);
        auto before = stamp(dir.path(), SpecialFiles::refuse, 2);
        REQUIRE(before.has_value());
        SUBCASE("a file's content, same size") { test::write_file(dir / "a/b/c", "HELLO", 0640); }
        SUBCASE("a mode") { REQUIRE(::chmod((dir / "a/b").c_str(), 0700) == 0); }
        SUBCASE("a symlink's target") {
            REQUIRE(::unlink((dir / "zlink").c_str()) == 0);
            REQUIRE(::symlink("dangling/other", (dir / "zlink").c_str()) == 0);
        }
        SUBCASE("a new empty directory") { test::make_dirs(dir / "wide/new"); }
        SUBCASE("a rename") { REQUIRE(::rename((dir / "wide/f3").c_str(), (dir / "wide/g3").c_str()) == 0); }
        auto after = stamp(dir.path(), SpecialFiles::refuse, 2);
        REQUIRE(after.has_value());
        CHECK(after->stamp != before->stamp);
        auto scanned = scan(dir.path());
        REQUIRE(scanned.is_ok());
        CHECK(after->stamp == tree_stamp(*scanned));
    }

    TEST_CASE("what the scan refuses gives no stamp, what it skips or includes is the same") {
        test::TempDir dir;
        make_mixed_tree(dir);
        REQUIRE(::mkfifo((dir / "a/fifo").c_str(), 0600) == 0);
        CHECK_FALSE(stamp(dir.path(), SpecialFiles::refuse, 2).has_value());
        for (SpecialFiles special : {SpecialFiles::skip, SpecialFiles::include}) {
            auto scanned = scan(dir.path(), special);
            REQUIRE(scanned.is_ok());
            auto quick = stamp(dir.path(), special, 2);
            REQUIRE(quick.has_value());
            CHECK(quick->stamp == tree_stamp(*scanned));
        }
        REQUIRE(::unlink((dir / "a/fifo").c_str()) == 0);
        test::write_file(dir / "a/b/bad\xff", "x");
        CHECK_FALSE(stamp(dir.path(), SpecialFiles::skip, 2).has_value());
    }
}
}  // namespace ssync
