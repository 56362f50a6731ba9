#include "ssync/fs.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <dirent.h>

#include <algorithm>
#include <unistd.h>

#include "fault_fs.h"
#include "testutil.h"

namespace ssync {

using test::FaultInjectingFs;

namespace {
std::vector<std::string> listing(const std::string& dir) {
    auto r = test::run({"ls", "-A", dir});
    std::vector<std::string> names;
    std::string line;
    for (char c : r.out) {
        if (c == '\n') names.push_back(line), line.clear();
        else line += c;
    }
    return names;
}
}  // namespace

TEST_SUITE("FileSystem") {
    TEST_CASE("write_file_atomic replaces the file and leaves no temporary") {
        test::TempDir dir;
        test::write_file(dir / "f", "old");
        auto fd = open_dir_trusted(dir.path());
        REQUIRE(fd.is_ok());
        REQUIRE(write_file_atomic(system_fs(), fd->get(), "f", "new", 0640, "f").is_ok());
        CHECK(test::read_file(dir / "f") == "new");
        CHECK(listing(dir.path()) == std::vector<std::string>{"f"});
        struct stat st;
        REQUIRE(::stat((dir / "f").c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0640);
    }

    TEST_CASE("a failure at any step leaves the old file and no temporary") {
        using Op = FaultInjectingFs::Op;
        for (Op op : {Op::write, Op::fsync, Op::rename, Op::open_create}) {
            CAPTURE(static_cast<int>(op));
            test::TempDir dir;
            test::write_file(dir / "f", "old");
            auto fd = open_dir_trusted(dir.path());
            FaultInjectingFs fs;
            fs.fail(op, 1, ENOSPC);
            Status s = write_file_atomic(fs, fd->get(), "f", "new", 0644, "f");
            CHECK_FALSE(s.is_ok());
            CHECK(s.code() == Code::io);
            CHECK(fs.failures() == 1);
            CHECK(test::read_file(dir / "f") == "old");
            CHECK(listing(dir.path()) == std::vector<std::string>{"f"});
        }
    }

    TEST_CASE("open_dir_beneath follows no symlink and refuses ..") {
        test::TempDir dir;
        test::make_dirs(dir / "real/sub");
        REQUIRE(::symlink((dir / "real").c_str(), (dir / "link").c_str()) == 0);
        auto root = open_dir_trusted(dir.path());
        CHECK(open_dir_beneath(root->get(), "real/sub").is_ok());
        auto through_link = open_dir_beneath(root->get(), "link/sub");
        REQUIRE_FALSE(through_link.is_ok());
        CHECK(through_link.status().message().find("not a directory") != std::string::npos);
        CHECK_FALSE(open_dir_beneath(root->get(), "real/../real").is_ok());
    }

    TEST_CASE("open_beneath refuses a symlink in any component and at the end") {
        test::TempDir dir;
        test::write_file(dir / "real/file", "x");
        REQUIRE(::symlink((dir / "real").c_str(), (dir / "dirlink").c_str()) == 0);
        REQUIRE(::symlink("file", (dir / "real/filelink").c_str()) == 0);
        REQUIRE(::symlink("/etc/passwd", (dir / "abs").c_str()) == 0);
        auto root = open_dir_trusted(dir.path());
        UniqueFd ok(open_beneath(root->get(), "real/file", O_RDONLY));
        CHECK(ok);
        CHECK(open_beneath(root->get(), "dirlink/file", O_RDONLY) < 0);
        CHECK(open_beneath(root->get(), "real/filelink", O_RDONLY) < 0);
        CHECK(open_beneath(root->get(), "abs", O_RDONLY) < 0);
        CHECK(open_beneath(root->get(), "../etc/passwd", O_RDONLY) < 0);
    }

    TEST_CASE("make_dirs does not create through a symlink") {
        test::TempDir dir;
        test::TempDir outside;
        REQUIRE(::symlink(outside.path().c_str(), (dir / "evil").c_str()) == 0);
        auto root = open_dir_trusted(dir.path());
        CHECK_FALSE(make_dirs(system_fs(), root->get(), "evil/new", 0755, "evil/new").is_ok());
        CHECK_FALSE(test::exists(outside / "new"));
        CHECK(make_dirs(system_fs(), root->get(), "a/b/c", 0755, "a/b/c").is_ok());
        CHECK(test::exists(dir / "a/b/c"));
    }

    TEST_CASE("remove_tree removes a tree but not what a symlink in it points to") {
        test::TempDir dir;
        test::TempDir outside;
        test::write_file(outside / "keep", "precious");
        test::write_file(dir / "t/a/b", "x");
        REQUIRE(::symlink(outside.path().c_str(), (dir / "t/a/link").c_str()) == 0);
        ::chmod((dir / "t/a").c_str(), 0555);
        auto root = open_dir_trusted(dir.path());
        REQUIRE(remove_tree(system_fs(), root->get(), "t", "t").is_ok());
        CHECK_FALSE(test::exists(dir / "t"));
        CHECK(test::read_file(outside / "keep") == "precious");
        CHECK(remove_tree(system_fs(), root->get(), "t", "t").is_ok());  // missing is fine
    }

    TEST_CASE("read_file_bounded enforces its limit") {
        test::TempDir dir;
        test::write_file(dir / "f", std::string(100, 'x'));
        CHECK(read_file_bounded(dir / "f", 100).is_ok());
        auto r = read_file_bounded(dir / "f", 99);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().message().find("larger than the limit of 99 bytes") != std::string::npos);
    }

    TEST_CASE("read_file_bounded follows a symlink the user names, not one below ssync's own directories") {
        test::TempDir dir;
        test::write_file(dir / "f", "data");
        REQUIRE(::symlink("f", (dir / "link").c_str()) == 0);
        CHECK(*read_file_bounded(dir / "link", 100) == "data");
        auto fd = open_dir_trusted(dir.path());
        REQUIRE(fd.is_ok());
        CHECK(*read_file_bounded(fd->get(), "f", 100, "f") == "data");
        auto through = read_file_bounded(fd->get(), "link", 100, "link");
        REQUIRE_FALSE(through.is_ok());
        CHECK(through.status().message().find("link: ") == 0);
    }

    TEST_CASE("read_file_prefix reads at most its limit of a file of any size, not through a symlink") {
        test::TempDir dir;
        test::write_file(dir / "f", std::string(200000, 'x') + "tail");
        test::write_file(dir / "short", "abc");
        REQUIRE(::symlink("f", (dir / "link").c_str()) == 0);
        auto fd = open_dir_trusted(dir.path());
        REQUIRE(fd.is_ok());
        auto head = read_file_prefix(fd->get(), "f", 100000, "f");
        REQUIRE(head.is_ok());
        CHECK(*head == std::string(100000, 'x'));
        auto all = read_file_prefix(fd->get(), "short", 100000, "short");
        REQUIRE(all.is_ok());
        CHECK(*all == "abc");
        CHECK(read_file_prefix(fd->get(), "f", 0, "f")->empty());
        CHECK(read_file_prefix(fd->get(), "link", 10, "link").status().code() == Code::io);
        CHECK(read_file_prefix(fd->get(), "missing", 10, "missing").status().message() ==
              "missing: No such file or directory");
    }

    TEST_CASE("a FIFO where a file is expected is refused at once, not waited on") {
        // Opening a FIFO for reading blocks until a writer comes: before O_NONBLOCK, each of
        // these hung (ctest's timeout is what fails this test if it comes back).
        test::TempDir dir;
        REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
        auto fd = open_dir_trusted(dir.path());
        REQUIRE(fd.is_ok());
        CHECK(read_file_bounded(dir / "fifo", 100).status().message().find("not a regular file") !=
              std::string::npos);
        CHECK(read_file_prefix(fd->get(), "fifo", 100, "fifo").status().message() == "fifo: not a regular file");
        CHECK(open_regular_file(fd->get(), "fifo", 0, 100, "fifo").status().message() == "fifo: not a regular file");
        UniqueFd opened(open_beneath(fd->get(), "fifo", O_RDONLY));
        CHECK(opened);
    }

    TEST_CASE("list_dir returns every name once, over many getdents calls, whatever the offset") {
        test::TempDir dir;
        std::vector<std::string> made;
        for (int i = 0; i < 1500; ++i) {  // names of ~60 bytes: far more than one 32 KiB read
            std::string n = "entry-" + std::to_string(i) + "-" + std::string(50, 'n');
            test::write_file(dir / n, "");
            made.push_back(n);
        }
        REQUIRE(::mkdir((dir / "sub").c_str(), 0755) == 0);
        made.push_back("sub");
        std::sort(made.begin(), made.end());
        auto fd = open_dir_trusted(dir.path());
        REQUIRE(fd.is_ok());
        for (int pass = 0; pass < 2; ++pass) {  // the second listing starts at the end offset
            auto listing = list_dir(fd->get(), "dir");
            REQUIRE(listing.is_ok());
            std::vector<std::string> names;
            for (const DirChild& c : *listing) {
                names.push_back(c.name);
                if (c.name == "sub") CHECK(c.type == DT_DIR);
            }
            std::sort(names.begin(), names.end());
            CHECK(names == made);
        }
        auto file = ::open((dir / "sub").c_str(), O_RDONLY);
        REQUIRE(file >= 0);
        UniqueFd sub(file);
        CHECK(list_dir(sub.get(), "sub")->empty());
        UniqueFd regular(::open((dir / made[0]).c_str(), O_RDONLY));
        CHECK(list_dir(regular.get(), "f").status().message() == "f: Not a directory");
    }

    TEST_CASE("split_path") {
        auto check = [](const std::string& path, const std::string& parent, const std::string& name) {
            CAPTURE(path);
            PathParts p = split_path(path);
            CHECK(p.parent == parent);
            CHECK(p.name == name);
        };
        check("a/b", "a", "b");
        check("a/b//", "a", "b");
        check("b", ".", "b");
        check("/b", "/", "b");
        check("/", "/", "/");
        check("//", "/", "/");
        check("a/..", "a", "..");
        check("", ".", "");
    }

    TEST_CASE("dir_within and dir_overlap see through other spellings and symlinks") {
        test::TempDir dir;
        REQUIRE(::mkdir((dir / "pub").c_str(), 0755) == 0);
        REQUIRE(::mkdir((dir / "pub/sub").c_str(), 0755) == 0);
        REQUIRE(::mkdir((dir / "other").c_str(), 0755) == 0);
        REQUIRE(::symlink("pub/sub", (dir / "alias").c_str()) == 0);
        auto pub = open_dir_trusted(dir / "pub");
        auto sub = open_dir_trusted(dir / "pub/sub");
        auto other = open_dir_trusted(dir / "other");
        REQUIRE((pub.is_ok() && sub.is_ok() && other.is_ok()));
        CHECK(dir_within(pub->get(), pub->get()));
        CHECK(dir_within(sub->get(), pub->get()));
        CHECK_FALSE(dir_within(pub->get(), sub->get()));
        CHECK_FALSE(dir_within(other->get(), pub->get()));

        CHECK(dir_overlap(dir / "pub", pub->get()) == Overlap::inside);
        CHECK(dir_overlap(dir / "pub/", pub->get()) == Overlap::inside);
        CHECK(dir_overlap(dir / "other/../pub/sub", pub->get()) == Overlap::inside);
        CHECK(dir_overlap(dir / "alias", pub->get()) == Overlap::inside);
        CHECK(dir_overlap(dir / "alias/new", pub->get()) == Overlap::inside);  // not there yet
        CHECK(dir_overlap(dir.path(), pub->get()) == Overlap::holds);
        CHECK(dir_overlap("/", pub->get()) == Overlap::holds);
        CHECK(dir_overlap(dir / "other", pub->get()) == Overlap::apart);
        CHECK(dir_overlap(dir / "new", pub->get()) == Overlap::apart);
        CHECK(dir_overlap(dir / "missing/new", pub->get()) == Overlap::apart);
        CHECK_FALSE(test::exists(dir / "alias/new"));
    }

    TEST_CASE("MappedFile maps exactly the file, bounded, and refuses symlinks and directories") {
        test::TempDir dir;
        std::string content(10000, 'x');
        content[9999] = 'y';
        test::write_file(dir / "f", content);
        test::write_file(dir / "empty", "");
        REQUIRE(::symlink("f", (dir / "link").c_str()) == 0);
        REQUIRE(::mkdir((dir / "d").c_str(), 0755) == 0);
        auto fd = open_dir_trusted(dir.path());
        REQUIRE(fd.is_ok());
        auto m = MappedFile::open(fd->get(), "f", 10000, "f");
        REQUIRE(m.is_ok());
        CHECK(m->bytes() == content);
        MappedFile moved = std::move(m).value();
        CHECK(moved.bytes().size() == 10000);
        auto empty = MappedFile::open(fd->get(), "empty", 10, "empty");
        REQUIRE(empty.is_ok());
        CHECK(empty->bytes().empty());
        auto big = MappedFile::open(fd->get(), "f", 9999, "f");
        REQUIRE_FALSE(big.is_ok());
        CHECK(big.status().code() == Code::too_large);
        CHECK(big.status().message() == "f: larger than the limit of 9999 bytes");
        CHECK(MappedFile::open(fd->get(), "link", 10000, "link").status().code() == Code::io);
        CHECK(MappedFile::open(fd->get(), "d", 10000, "d").status().message() == "d: not a regular file");
        CHECK(MappedFile::open(fd->get(), "missing", 10, "missing").status().message() ==
              "missing: No such file or directory");
    }

    TEST_CASE("FileLock excludes a second holder") {
        test::TempDir dir;
        auto root = open_dir_trusted(dir.path());
        auto first = FileLock::acquire(root->get(), "lock", "dest");
        REQUIRE(first.is_ok());
        auto second = FileLock::acquire(root->get(), "lock", "dest");
        REQUIRE_FALSE(second.is_ok());
        CHECK(second.status().code() == Code::busy);
        CHECK(second.status().message() == "dest is locked by another process; try again later");
    }

    TEST_CASE("quote_path escapes control characters and invalid UTF-8") {
        CHECK(quote_path("a\nb") == "a\\x0ab");
        CHECK(quote_path("caf\xc3\xa9") == "caf\xc3\xa9");
        CHECK(quote_path("bad\xff") == "bad\\xff");
    }
}

}  // namespace ssync
