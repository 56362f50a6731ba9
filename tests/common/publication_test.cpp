#include "ssync/publication.h"

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <mutex>

#include "fault_fs.h"
#include "ssync/hash.h"
#include "ssync/packs.h"
#include "ssync/scan.h"
#include "testutil.h"

namespace ssync {

namespace {

// Signing is tested with real GnuPG in signature_test.cpp and the end-to-end tests; here a
// stand-in that is still bound to the bytes lets the layout be checked on its own.
Result<std::string> fake_sign(std::string_view bytes) { return "SIG " + sha256_hex(bytes); }

// The entry at `path` of the release a publish() call made (nullopt if there is none), read
// from the bytes it signed.
std::optional<Entry> entry_of(const PublishResult& r, std::string_view path) {
    auto m = parse_manifest(r.manifest_bytes);
    REQUIRE(m.is_ok());
    const Entry* e = m->find(path);
    return e ? std::optional<Entry>(*e) : std::nullopt;
}

PublishOptions options(std::int64_t now = 1700000000) {
    PublishOptions o;
    o.name = "site";
    o.now = now;
    return o;
}

void make_source(const std::string& src) {
    test::write_file(src + "/index.html", "<h1>hi</h1>");
    test::write_file(src + "/bin/tool", "#!/bin/sh\necho tool\n", 0755);
    test::write_file(src + "/copy.html", "<h1>hi</h1>");
    REQUIRE(::symlink("index.html", (src + "/home.html").c_str()) == 0);
}

// Rewrites the end of a source file in place on the first write into the publication (the
// first chunk of the file's object): the file changes while it is being read.
class EditDuringStore : public FileSystem {
public:
    explicit EditDuringStore(std::string path) : path_(std::move(path)) {}
    ssize_t write(int fd, const void* buf, size_t count) override {
        if (!done_) {
            done_ = true;
            UniqueFd src(::open(path_.c_str(), O_WRONLY | O_CLOEXEC));
            struct stat st;
            REQUIRE(src);
            REQUIRE(::fstat(src.get(), &st) == 0);
            REQUIRE(::pwrite(src.get(), "B", 1, st.st_size - 1) == 1);
        }
        return FileSystem::write(fd, buf, count);
    }

private:
    std::string path_;
    bool done_ = false;
};

ino_t inode(const std::string& path) {
    struct stat st;
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    return st.st_ino;
}

}  // namespace

TEST_SUITE("Publication") {
    TEST_CASE("a path longer than a manifest may hold is refused by its beginning, publishing nothing") {
        test::TempDir src, pub;
        test::write_file(src / "ok", "fine");
        // 20 levels of 250-byte names: made one level at a time, as no single path may be
        // this long.
        std::string name(250, 'd');
        auto dir = open_dir_trusted(src.path());
        REQUIRE(dir.is_ok());
        UniqueFd current = std::move(dir).value();
        for (int i = 0; i < 20; ++i) {
            REQUIRE(::mkdirat(current.get(), name.c_str(), 0755) == 0);
            auto next = open_dir_beneath(current.get(), name);
            REQUIRE(next.is_ok());
            current = std::move(next).value();
        }
        UniqueFd file(::openat(current.get(), "f", O_WRONLY | O_CREAT | O_EXCL, 0644));
        REQUIRE(file);
        auto r = publish(src.path(), pub / "new", options(), fake_sign);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == Code::io);
        CHECK(r.status().message().find(name.substr(0, 120) + "...: path longer than 4096 bytes") == 0);
        CHECK(r.status().message().size() < 300);
        CHECK_FALSE(test::exists(pub / "new"));  // a first run removes what it made
        // The walk itself, as sync and audit use it, still lists such paths (to remove them).
        auto scanned = scan_tree(open_dir_trusted(src.path())->get());
        REQUIRE(scanned.is_ok());
        CHECK(scanned->size() == 22);
    }

    TEST_CASE("layout: latest, release directory, objects, tree") {
        test::TempDir src, pub;
        make_source(src.path());
        auto r = publish(src.path(), pub.path(), options(), fake_sign);
        REQUIRE(r.is_ok());
        CHECK(r->header.serial == 1);
        CHECK(r->stats.files == 3);
        CHECK(r->stats.objects_stored == 2);  // index.html and copy.html share one object
        CHECK(test::read_file(pub / "latest") == "1\n");
        std::string bytes = test::read_file(pub / "manifest.json");
        CHECK(test::read_file(pub / "releases/1/manifest.json") == bytes);
        CHECK(test::read_file(pub / "manifest.json.asc") == "SIG " + sha256_hex(bytes));
        CHECK(test::read_file(pub / "releases/1/manifest.json.asc") == "SIG " + sha256_hex(bytes));
        std::string h = sha256_hex("<h1>hi</h1>");
        std::string object = pub / layout::object_path(h);
        CHECK(test::read_file(object) == "<h1>hi</h1>");
        struct stat st;
        REQUIRE(::stat(object.c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0444);
        // The plain tree shares storage with the objects and holds no symlinks.
        CHECK(inode(pub / "tree/index.html") == inode(object));
        CHECK(inode(pub / "tree/copy.html") == inode(object));
        CHECK(test::read_file(pub / "tree/bin/tool") == "#!/bin/sh\necho tool\n");
        CHECK_FALSE(test::exists(pub / "tree/home.html"));
        std::optional<Entry> tool = entry_of(*r, "bin/tool");
        REQUIRE(tool);
        CHECK(tool->mode == 0755);
    }

    TEST_CASE("serials increase, a lower serial, another name, or no name are refused") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        auto second = publish(src.path(), pub.path(), options(), fake_sign);
        REQUIRE(second.is_ok());
        CHECK(second->header.serial == 2);
        PublishOptions o = options();
        o.serial = 2;
        auto low = publish(src.path(), pub.path(), o, fake_sign);
        REQUIRE_FALSE(low.is_ok());
        CHECK(low.status().message() == "--serial 2: must be greater than the current serial 2");
        o = options();
        o.name = "other";
        CHECK(publish(src.path(), pub.path(), o, fake_sign).status().code() == Code::usage);
        test::TempDir pub2;
        o = options();
        o.name = "";
        CHECK(publish(src.path(), pub2.path(), o, fake_sign).status().message() ==
              "--name is required for a new publication");
        o.serial = 40;
        o.name = "x";
        auto explicit_serial = publish(src.path(), pub2.path(), o, fake_sign);
        REQUIRE(explicit_serial.is_ok());
        CHECK(explicit_serial->header.serial == 40);
    }

    // Found by an adversarial test run: a sign that failed after switching `latest` to N left
    // the top-level manifest at N-1, and the next sign computed N again and rewrote
    // releases/N, which mirrors may already have applied.
    TEST_CASE("after a run that failed past its switch the next serial is above it, its release untouched") {
        test::TempDir src, pub;
        test::write_file(src / "index.html", "v1");
        REQUIRE(publish(src.path(), pub.path(), options(1700000001), fake_sign).is_ok());
        test::write_file(src / "index.html", "version 2");
        // The top-level signature cannot be replaced: the run fails after `latest` says 2.
        REQUIRE(::unlink((pub / "manifest.json.asc").c_str()) == 0);
        REQUIRE(::mkdir((pub / "manifest.json.asc").c_str(), 0755) == 0);
        REQUIRE_FALSE(publish(src.path(), pub.path(), options(1700000002), fake_sign).is_ok());
        REQUIRE(test::read_file(pub / "latest") == "2\n");
        std::string release2 = test::read_file(pub / "releases/2/manifest.json");
        auto again = publish(src.path(), pub.path(), options(1700000003), fake_sign);
        REQUIRE_FALSE(again.is_ok());
        CHECK(test::read_file(pub / "latest") == "3\n");
        CHECK(test::read_file(pub / "releases/2/manifest.json") == release2);
        REQUIRE(::rmdir((pub / "manifest.json.asc").c_str()) == 0);
        auto ok = publish(src.path(), pub.path(), options(1700000004), fake_sign);
        REQUIRE_MESSAGE(ok.is_ok(), ok.status().message());
        CHECK(ok->header.serial == 4);
        CHECK(test::read_file(pub / "latest") == "4\n");
        CHECK(test::read_file(pub / "releases/2/manifest.json") == release2);
        // tree/ was still at release 1 (updated after the top-level pair): it catches up,
        // though index.html is the same in releases 2, 3 and 4.
        CHECK(test::read_file(pub / "tree/index.html") == "version 2");
        CHECK(test::read_file(pub / "manifest.json") == test::read_file(pub / "releases/4/manifest.json"));
    }

    TEST_CASE("without the top-level pair the serial still comes from latest and releases/, never back") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(1700000001), fake_sign).is_ok());
        REQUIRE(publish(src.path(), pub.path(), options(1700000002), fake_sign).is_ok());
        std::string release1 = test::read_file(pub / "releases/1/manifest.json");
        std::string release2 = test::read_file(pub / "releases/2/manifest.json");
        auto drop_pair = [&] {
            REQUIRE(::unlink((pub / "manifest.json").c_str()) == 0);
            REQUIRE(::unlink((pub / "manifest.json.asc").c_str()) == 0);
        };
        drop_pair();
        // The name is checked against the release `latest` names.
        PublishOptions other = options(1700000003);
        other.name = "other";
        auto renamed = publish(src.path(), pub.path(), other, fake_sign);
        CHECK(renamed.status().code() == Code::usage);
        auto r = publish(src.path(), pub.path(), options(1700000003), fake_sign);
        REQUIRE_MESSAGE(r.is_ok(), r.status().message());
        CHECK(r->header.serial == 3);
        CHECK(test::read_file(pub / "latest") == "3\n");
        CHECK(test::read_file(pub / "releases/1/manifest.json") == release1);
        CHECK(test::read_file(pub / "releases/2/manifest.json") == release2);
        CHECK(test::read_file(pub / "tree/index.html") == "<h1>hi</h1>");

        // A release directory above `latest` (a run that failed before its switch) is not
        // reused either, and --serial must be above it too.
        test::make_dirs(pub / "releases/7");
        test::write_file(pub / "releases/7/manifest.json", "half-written");
        PublishOptions low = options(1700000004);
        low.serial = 6;
        auto refused = publish(src.path(), pub.path(), low, fake_sign);
        REQUIRE_FALSE(refused.is_ok());
        CHECK(refused.status().code() == Code::bad_manifest);
        CHECK(refused.status().message() ==
              "--serial 6: must be greater than 7, the highest serial the publication has published or started "
              "(in latest or releases/)");
        CHECK(test::read_file(pub / "latest") == "3\n");
        drop_pair();
        REQUIRE(::unlink((pub / "latest").c_str()) == 0);
        auto next = publish(src.path(), pub.path(), options(1700000005), fake_sign);
        REQUIRE_MESSAGE(next.is_ok(), next.status().message());
        CHECK(next->header.serial == 8);
        CHECK(test::read_file(pub / "releases/7/manifest.json") == "half-written");
        CHECK(test::read_file(pub / "latest") == "8\n");
    }

    TEST_CASE("re-signing reuses hashes, a changed file is rehashed, --rehash hashes all") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        auto again = publish(src.path(), pub.path(), options(), fake_sign);
        REQUIRE(again.is_ok());
        CHECK(again->stats.files_hashed == 0);
        CHECK(again->stats.files_cached == 3);
        // Same size, new content: the ctime moves even if the mtime were restored.
        test::write_file(src / "index.html", "<h1>ho</h1>");
        auto changed = publish(src.path(), pub.path(), options(), fake_sign);
        REQUIRE(changed.is_ok());
        CHECK(changed->stats.files_hashed == 1);
        CHECK(entry_of(*changed, "index.html")->sha256 == sha256_hex("<h1>ho</h1>"));
        CHECK(test::read_file(pub / "tree/index.html") == "<h1>ho</h1>");
        PublishOptions o = options();
        o.rehash = true;
        auto rehash = publish(src.path(), pub.path(), o, fake_sign);
        REQUIRE(rehash.is_ok());
        CHECK(rehash->stats.files_hashed == 3);
        CHECK(rehash->stats.objects_stored == 0);
    }

    // The cron case: an unchanged tree re-signed to renew its expiry. The release is made from
    // the last one's entries with a new header (LastRelease in publication.cpp); it must be
    // byte for byte what building the manifest whole gives.
    TEST_CASE("an unchanged tree is re-signed from the last release's entries, as building them would") {
        test::TempDir src, pub, whole;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        auto again = publish(src.path(), pub.path(), options(1700000100), fake_sign);
        REQUIRE(again.is_ok());
        CHECK(again->stats.reused_entries);
        CHECK(again->header.serial == 2);
        CHECK(again->header.expires == 1700000100 + 7 * 86400);
        CHECK(again->stats.files == 3);
        CHECK(again->stats.dirs == 1);
        CHECK(again->stats.symlinks == 1);
        CHECK(again->stats.bytes == 2 * 11 + 20);
        CHECK(again->stats.files_cached == 3);
        std::string bytes = test::read_file(pub / "releases/2/manifest.json");
        CHECK(bytes == again->manifest_bytes);
        CHECK(test::read_file(pub / "manifest.json") == bytes);
        CHECK(test::read_file(pub / "manifest.json.asc") == *fake_sign(bytes));
        CHECK(test::read_file(pub / "latest") == "2\n");
        CHECK(again->manifest_sha256 == sha256_hex(bytes));
        PublishOptions o = options(1700000100);
        o.serial = 2;
        REQUIRE(publish(src.path(), whole.path(), o, fake_sign).is_ok());
        CHECK(test::read_file(whole / "manifest.json") == bytes);
        // And again: the record follows the releases.
        auto third = publish(src.path(), pub.path(), options(1700000200), fake_sign);
        REQUIRE(third.is_ok());
        CHECK(third->stats.reused_entries);
        CHECK(third->header.serial == 3);
    }

    TEST_CASE("a change since the last release, or a record that does not fit, is published the whole way") {
        struct Case {
            const char* what;
            std::function<void(const std::string& src, const std::string& pub)> change;
        };
        std::vector<Case> cases = {
            {"a mode", [](const std::string& src, const std::string&) {
                 REQUIRE(::chmod((src + "/bin/tool").c_str(), 0700) == 0);
             }},
            {"a new empty directory", [](const std::string& src, const std::string&) {
                 REQUIRE(::mkdir((src + "/empty").c_str(), 0755) == 0);
             }},
            {"an mtime", [](const std::string& src, const std::string&) {
                 struct timespec times[2] = {{0, UTIME_OMIT}, {1600000000, 0}};
                 REQUIRE(::utimensat(AT_FDCWD, (src + "/index.html").c_str(), times, 0) == 0);
             }},
            {"a rename", [](const std::string& src, const std::string&) {
                 REQUIRE(::rename((src + "/copy.html").c_str(), (src + "/copy2.html").c_str()) == 0);
             }},
            {"a symlink target", [](const std::string& src, const std::string&) {
                 REQUIRE(::unlink((src + "/home.html").c_str()) == 0);
                 REQUIRE(::symlink("copy.html", (src + "/home.html").c_str()) == 0);
             }},
            {"a damaged record", [](const std::string&, const std::string& pub) {
                 test::write_file(pub + "/.ssync-signer/last-release", "ssync-signer last-release 1\nserial 1\n");
             }},
            {"a record of another manifest", [](const std::string&, const std::string& pub) {
                 std::string r = test::read_file(pub + "/.ssync-signer/last-release");
                 auto at = r.find("manifest ") + 9;
                 r[at] = r[at] == '0' ? '1' : '0';
                 test::write_file(pub + "/.ssync-signer/last-release", r);
             }},
            {"no top-level manifest (tree/ not known to be at the last release)",
             [](const std::string&, const std::string& pub) {
                 REQUIRE(::unlink((pub + "/manifest.json").c_str()) == 0);
             }},
            {"tree/ removed", [](const std::string&, const std::string& pub) {
                 REQUIRE(test::run({"rm", "-r", pub + "/tree"}).exit_status == 0);
             }},
            {"an object missing", [](const std::string&, const std::string& pub) {
                 REQUIRE(::unlink((pub + "/" + layout::object_path(sha256_hex("<h1>hi</h1>"))).c_str()) == 0);
             }},
        };
        for (const Case& c : cases) {
            CAPTURE(c.what);
            test::TempDir src, pub, whole;
            make_source(src.path());
            REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
            c.change(src.path(), pub.path());
            auto r = publish(src.path(), pub.path(), options(1700000100), fake_sign);
            REQUIRE(r.is_ok());
            CHECK_FALSE(r->stats.reused_entries);
            CHECK(r->header.serial == 2);
            PublishOptions o = options(1700000100);
            o.serial = 2;
            REQUIRE(publish(src.path(), whole.path(), o, fake_sign).is_ok());
            CHECK(test::read_file(pub / "manifest.json") == test::read_file(whole / "manifest.json"));
            CHECK(test::read_file(pub / "tree/index.html") == "<h1>hi</h1>");
            CHECK(test::exists(pub / layout::object_path(sha256_hex("<h1>hi</h1>"))));
            // The next run finds the record of this one.
            auto next = publish(src.path(), pub.path(), options(1700000200), fake_sign);
            REQUIRE(next.is_ok());
            CHECK(next->stats.reused_entries);
        }
    }

    // objects/ is not listed while its directories' stat is what the record says; when it is
    // not, the listing decides.
    TEST_CASE("re-signing an unchanged tree after objects/ changed lists it, and reuses what is all there") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        SUBCASE("a stray file beside the objects") {
            std::string object = layout::object_path(sha256_hex("<h1>hi</h1>"));
            test::write_file(pub / (object.substr(0, object.rfind('/')) + "/stray"), "not an object");
        }
        SUBCASE("a fan-out directory removed that held nothing") {
            std::string held = layout::object_path(sha256_hex("<h1>hi</h1>"));
            std::string fan = held.substr(0, held.rfind('/'));
            std::string empty = fan.substr(0, fan.size() - 2) + (fan.substr(fan.size() - 2) == "00" ? "01" : "00");
            REQUIRE(::rmdir((pub / empty).c_str()) == 0);
        }
        SUBCASE("a record without the stamp of objects/") {
            std::string r = test::read_file(pub / ".ssync-signer/last-release");
            auto at = r.find("objects ");
            REQUIRE(at != std::string::npos);
            test::write_file(pub / ".ssync-signer/last-release", r.substr(0, at) + "objects \n", 0600);
        }
        auto again = publish(src.path(), pub.path(), options(1700000100), fake_sign);
        REQUIRE(again.is_ok());
        CHECK(again->stats.reused_entries);
        CHECK(test::read_file(pub / "manifest.json.asc") == *fake_sign(again->manifest_bytes));
        // The record now carries the stamp of objects/ as it is.
        CHECK(test::read_file(pub / ".ssync-signer/last-release").find("objects \n") == std::string::npos);
    }

    // Re-signing what looks like an unchanged tree signs beside the walk; when the walk finds a
    // change, that signature must not be used, nor its failure reported.
    TEST_CASE("the signature made beside the walk is thrown away when the tree changed") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        test::write_file(src / "index.html", "<h1>ho</h1>");
        std::vector<std::string> signed_bytes;
        std::mutex signed_mutex;
        auto first_fails = [&](std::string_view bytes) -> Result<std::string> {
            std::lock_guard<std::mutex> hold(signed_mutex);
            signed_bytes.emplace_back(bytes);
            if (signed_bytes.size() == 1) return Status(Code::untrusted, "key ABC: bad passphrase");
            return fake_sign(bytes);
        };
        auto r = publish(src.path(), pub.path(), options(1700000100), first_fails);
        REQUIRE(r.is_ok());
        CHECK_FALSE(r->stats.reused_entries);
        REQUIRE(signed_bytes.size() == 2);
        CHECK(signed_bytes[0] != signed_bytes[1]);
        CHECK(signed_bytes[1] == r->manifest_bytes);
        CHECK(test::read_file(pub / "manifest.json.asc") == *fake_sign(r->manifest_bytes));
        CHECK(test::read_file(pub / "tree/index.html") == "<h1>ho</h1>");
    }

    TEST_CASE("re-signing an unchanged tree: a failed signature, another --name, a lower --serial change nothing") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        std::string before = test::read_file(pub / "manifest.json");
        std::string record = test::read_file(pub / ".ssync-signer/last-release");
        auto failed = publish(src.path(), pub.path(), options(), [](std::string_view) -> Result<std::string> {
            return Status(Code::untrusted, "key ABC: bad passphrase");
        });
        REQUIRE_FALSE(failed.is_ok());
        CHECK(failed.status().message() == "key ABC: bad passphrase");
        CHECK(test::read_file(pub / "manifest.json") == before);
        CHECK(test::read_file(pub / ".ssync-signer/last-release") == record);
        CHECK_FALSE(test::exists(pub / "releases/3"));
        PublishOptions o = options();
        o.name = "other";
        auto renamed = publish(src.path(), pub.path(), o, fake_sign);
        REQUIRE_FALSE(renamed.is_ok());
        CHECK(renamed.status().message().find("--name other") != std::string::npos);
        o = options();
        o.serial = 2;
        auto lower = publish(src.path(), pub.path(), o, fake_sign);
        REQUIRE_FALSE(lower.is_ok());
        CHECK(lower.status().message().find("must be greater") != std::string::npos);
        CHECK(test::read_file(pub / "latest") == "2\n");
    }

    TEST_CASE("the same tree and metadata give a byte-identical manifest") {
        test::TempDir src, pub1, pub2;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub1.path(), options(), fake_sign).is_ok());
        REQUIRE(publish(src.path(), pub2.path(), options(), fake_sign).is_ok());
        CHECK(test::read_file(pub1 / "manifest.json") == test::read_file(pub2 / "manifest.json"));
    }

    TEST_CASE("the tree follows deletions and type changes") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        REQUIRE(::unlink((src / "copy.html").c_str()) == 0);
        REQUIRE(::unlink((src / "bin/tool").c_str()) == 0);
        REQUIRE(::rmdir((src / "bin").c_str()) == 0);
        test::write_file(src / "bin", "now a file");
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        CHECK_FALSE(test::exists(pub / "tree/copy.html"));
        CHECK(test::read_file(pub / "tree/bin") == "now a file");
    }

    TEST_CASE("a failed signature leaves the current release as it was") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        std::string before = test::read_file(pub / "manifest.json");
        test::write_file(src / "new", "content");
        auto r = publish(src.path(), pub.path(), options(), [](std::string_view) -> Result<std::string> {
            return Status(Code::untrusted, "key ABC: bad passphrase");
        });
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().message() == "key ABC: bad passphrase");
        CHECK(test::read_file(pub / "manifest.json") == before);
        CHECK(test::read_file(pub / "latest") == "1\n");
        CHECK_FALSE(test::exists(pub / "releases/2"));
        CHECK_FALSE(test::exists(pub / "tree/new"));
    }

    TEST_CASE("a full disk while storing content leaves the current release as it was") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        test::write_file(src / "big", std::string(100000, 'b'));
        test::FaultInjectingFs fs;
        fs.fail(test::FaultInjectingFs::Op::write, 1, ENOSPC, /*sticky=*/true);
        PublishOptions o = options();
        o.fs = &fs;
        auto r = publish(src.path(), pub.path(), o, fake_sign);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().message().find("No space left on device") != std::string::npos);
        // Which disk ran full: the file is named inside the publication, not as "objects/tmp/...".
        CHECK_MESSAGE(r.status().message().rfind(pub / "objects/tmp/t", 0) == 0, r.status().message());
        CHECK(test::read_file(pub / "latest") == "1\n");
        auto objects_tmp = test::run({"find", pub / "objects/tmp", "-type", "f"});
        CHECK(objects_tmp.out.empty());
    }

    TEST_CASE("temporaries left by a signer that died are removed by the next run") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        test::write_file(pub / "objects/tmp/t999-0", "half an object");
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        CHECK_FALSE(test::exists(pub / "objects/tmp/t999-0"));
    }

    // Hashing starts while the walk goes on; storing waits until the walk has succeeded.
    TEST_CASE("a walk that fails late stores nothing, though earlier files were already hashed") {
        for (bool rehash : {false, true}) {
            CAPTURE(rehash);
            test::TempDir src, pub;
            make_source(src.path());
            REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
            auto objects = [&] { return test::run({"find", pub / "objects", "-type", "f"}).out; };
            std::string before = objects();
            // Walked before the FIFO: a same-size edit (hashed early, found new) and a new file,
            // then enough unchanged files that the hashers are done with the first two long
            // before the walk reaches the FIFO.
            test::write_file(src / "index.html", "<h1>ho</h1>");
            test::write_file(src / "a-new", "new content");
            for (int i = 0; i < 2000; ++i) test::write_file(src / ("m/" + std::to_string(i)), "");
            REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
            before = objects();
            test::write_file(src / "index.html", "<h1>hu</h1>");
            test::write_file(src / "a-new", "newer content");
            REQUIRE(::mkfifo((src / "zz-fifo").c_str(), 0600) == 0);
            PublishOptions o = options();
            o.rehash = rehash;
            auto r = publish(src.path(), pub.path(), o, fake_sign);
            REQUIRE_FALSE(r.is_ok());
            CHECK(r.status().message().find("zz-fifo") != std::string::npos);
            CHECK(objects() == before);
            CHECK(test::read_file(pub / "latest") == "2\n");
            CHECK(test::read_file(pub / "tree/index.html") == "<h1>ho</h1>");
            // Without the FIFO the same run publishes both, each stored once.
            REQUIRE(::unlink((src / "zz-fifo").c_str()) == 0);
            auto ok = publish(src.path(), pub.path(), o, fake_sign);
            REQUIRE(ok.is_ok());
            CHECK(ok->stats.objects_stored == 2);
            CHECK(entry_of(*ok, "index.html")->sha256 == sha256_hex("<h1>hu</h1>"));
            CHECK(test::read_file(pub / layout::object_path(sha256_hex("newer content"))) == "newer content");
            CHECK(ok->stats.files_hashed == (rehash ? 2004u : 2u));
            CHECK(ok->stats.files_cached == (rehash ? 0u : 2002u));
        }
    }

    TEST_CASE("without a stat cache, unchanged files are hashed, not stored again") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        REQUIRE(::unlink((pub / ".ssync-signer/stat-cache").c_str()) == 0);
        REQUIRE(::unlink((pub / ".ssync-signer/last-release").c_str()) == 0);  // else nothing is hashed
        std::string object = pub / layout::object_path(sha256_hex("<h1>hi</h1>"));
        ino_t before = inode(object);
        auto r = publish(src.path(), pub.path(), options(), fake_sign);
        REQUIRE(r.is_ok());
        CHECK(r->stats.files_hashed == 3);
        CHECK(r->stats.files_cached == 0);
        CHECK(r->stats.objects_stored == 0);
        CHECK(inode(object) == before);
        // And the cache is back for the next run.
        auto again = publish(src.path(), pub.path(), options(), fake_sign);
        REQUIRE(again.is_ok());
        CHECK(again->stats.files_cached == 3);
    }

    TEST_CASE("a cached digest the publication does not hold is not trusted: the file is read") {
        test::TempDir src, pub;
        make_source(src.path());
        auto first = publish(src.path(), pub.path(), options(), fake_sign);
        REQUIRE(first.is_ok());
        // A cache that matches index.html's stat but names content nobody stored (a cache
        // left by a run whose objects were since removed, or a damaged one).
        auto fd = open_dir_trusted(src.path());
        REQUIRE(fd.is_ok());
        auto scanned = scan_tree(fd->get());
        REQUIRE(scanned.is_ok());
        for (ScannedEntry& se : *scanned) {
            if (se.entry.type == EntryType::file) se.entry.sha256 = entry_of(*first, se.entry.path)->sha256;
            if (se.entry.path == "index.html") se.entry.sha256 = sha256_hex("never stored");
        }
        test::write_file(pub / ".ssync-signer/stat-cache", StatCache::format(*scanned));
        REQUIRE(::unlink((pub / ".ssync-signer/last-release").c_str()) == 0);  // else nothing is hashed
        auto r = publish(src.path(), pub.path(), options(), fake_sign);
        REQUIRE(r.is_ok());
        CHECK(entry_of(*r, "index.html")->sha256 == sha256_hex("<h1>hi</h1>"));
        CHECK(r->stats.files_hashed == 1);
        CHECK(r->stats.files_cached == 2);
    }

    // Found by an adversarial test run: the previous release's digest list was taken as proof
    // that its objects exist, so an object removed from objects/ was never stored again.
    TEST_CASE("an object missing from objects/ is stored again, with or without --rehash") {
        for (bool rehash : {false, true}) {
            CAPTURE(rehash);
            test::TempDir src, pub, outside;
            make_source(src.path());
            REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
            std::string object = pub / layout::object_path(sha256_hex("<h1>hi</h1>"));
            REQUIRE(::unlink(object.c_str()) == 0);
            PublishOptions o = options();
            o.rehash = rehash;
            auto r = publish(src.path(), pub.path(), o, fake_sign);
            REQUIRE_MESSAGE(r.is_ok(), r.status().message());
            CHECK(r->stats.objects_stored == 1);
            CHECK(test::read_file(object) == "<h1>hi</h1>");
            // A symlink under the object's name is not the object: replaced, not followed.
            REQUIRE(::unlink(object.c_str()) == 0);
            test::write_file(outside / "elsewhere", "not the content");
            REQUIRE(::symlink((outside / "elsewhere").c_str(), object.c_str()) == 0);
            r = publish(src.path(), pub.path(), o, fake_sign);
            REQUIRE_MESSAGE(r.is_ok(), r.status().message());
            CHECK(r->stats.objects_stored == 1);
            struct stat st;
            REQUIRE(::lstat(object.c_str(), &st) == 0);
            CHECK(S_ISREG(st.st_mode));
            CHECK(test::read_file(object) == "<h1>hi</h1>");
            CHECK(test::read_file(outside / "elsewhere") == "not the content");
            // And nothing is stored when everything is there.
            r = publish(src.path(), pub.path(), o, fake_sign);
            REQUIRE_MESSAGE(r.is_ok(), r.status().message());
            CHECK(r->stats.objects_stored == 0);
        }
    }

    TEST_CASE("--rehash publishes each file's size and time as read, and counts its bytes") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        PublishOptions o = options();
        o.rehash = true;
        auto r = publish(src.path(), pub.path(), o, fake_sign);
        REQUIRE(r.is_ok());
        struct stat st;
        REQUIRE(::stat((src / "bin/tool").c_str(), &st) == 0);
        std::optional<Entry> tool = entry_of(*r, "bin/tool");
        REQUIRE(tool);
        CHECK(tool->size == static_cast<std::uint64_t>(st.st_size));
        CHECK(tool->mtime == st.st_mtim.tv_sec);
        CHECK(r->stats.bytes_hashed == 2 * 11 + 20);
    }

    // Found by an adversarial test run: tree/sub replaced by a symlink to a directory outside
    // the publication made the next sign link its new file out there.
    TEST_CASE("a symlink planted in tree/ is removed, never written or removed through") {
        test::TempDir src, pub, outside;
        test::write_file(src / "sub/b", "b");
        test::write_file(src / "sub/gone", "gone");
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        test::write_file(outside / "b", "outsider's b");
        test::write_file(outside / "gone", "outsider's gone");
        REQUIRE(test::run({"rm", "-r", pub / "tree/sub"}).exit_status == 0);
        REQUIRE(::symlink(outside.path().c_str(), (pub / "tree/sub").c_str()) == 0);
        REQUIRE(::unlink((src / "sub/gone").c_str()) == 0);
        test::write_file(src / "sub/new", "new");
        auto r = publish(src.path(), pub.path(), options(), fake_sign);
        REQUIRE_MESSAGE(r.is_ok(), r.status().message());
        CHECK_FALSE(test::exists(outside / "new"));
        CHECK(test::read_file(outside / "gone") == "outsider's gone");
        CHECK(test::read_file(outside / "b") == "outsider's b");
        // The tree is whole again: a directory holding the release's files.
        struct stat st;
        REQUIRE(::lstat((pub / "tree/sub").c_str(), &st) == 0);
        CHECK(S_ISDIR(st.st_mode));
        CHECK(test::read_file(pub / "tree/sub/b") == "b");
        CHECK(test::read_file(pub / "tree/sub/new") == "new");
        CHECK_FALSE(test::exists(pub / "tree/sub/gone"));

        // tree/ itself as a symlink: made afresh beside it.
        REQUIRE(test::run({"rm", "-r", pub / "tree"}).exit_status == 0);
        REQUIRE(::symlink(outside.path().c_str(), (pub / "tree").c_str()) == 0);
        test::write_file(src / "sub/newer", "newer");
        r = publish(src.path(), pub.path(), options(), fake_sign);
        REQUIRE_MESSAGE(r.is_ok(), r.status().message());
        CHECK_FALSE(test::exists(outside / "sub"));
        CHECK_FALSE(test::exists(outside / "new"));
        REQUIRE(::lstat((pub / "tree").c_str(), &st) == 0);
        CHECK(S_ISDIR(st.st_mode));
        CHECK(test::read_file(pub / "tree/sub/newer") == "newer");
        CHECK(test::read_file(pub / "tree/sub/b") == "b");
    }

    TEST_CASE("a symlink planted as an object fan-out directory is removed, never written through") {
        test::TempDir src, pub, outside;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        std::string content = "content for a planted fan-out";
        std::string h = sha256_hex(content);
        std::string fan = pub / ("objects/" + h.substr(0, 2));
        REQUIRE(test::run({"rm", "-r", fan}).exit_status == 0);
        REQUIRE(::symlink(outside.path().c_str(), fan.c_str()) == 0);
        test::write_file(src / "planted", content);
        auto r = publish(src.path(), pub.path(), options(), fake_sign);
        REQUIRE_MESSAGE(r.is_ok(), r.status().message());
        CHECK(test::run({"find", outside.path(), "-mindepth", "1"}).out.empty());
        struct stat st;
        REQUIRE(::lstat(fan.c_str(), &st) == 0);
        CHECK(S_ISDIR(st.st_mode));
        CHECK(test::read_file(pub / layout::object_path(h)) == content);
        CHECK(inode(pub / "tree/planted") == inode(pub / layout::object_path(h)));
    }

    TEST_CASE("objects/, packs/, releases/ or .ssync-signer/ as a symlink is refused by name, nothing written through it") {
        for (std::string dir : {"objects", "packs", "releases", ".ssync-signer"}) {
            CAPTURE(dir);
            test::TempDir src, pub, outside;
            make_source(src.path());
            REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
            // The real directory moved away, a symlink to it in its place: an administrator's
            // arrangement ssync does not undo, and does not write through either.
            REQUIRE(::rename((pub / dir).c_str(), (outside / dir).c_str()) == 0);
            REQUIRE(::symlink((outside / dir).c_str(), (pub / dir).c_str()) == 0);
            std::string before = test::run({"find", outside.path(), "-printf", "%P %s\\n"}).out;
            test::write_file(src / "new", "something new");
            auto r = publish(src.path(), pub.path(), options(), fake_sign);
            REQUIRE_FALSE(r.is_ok());
            CHECK(r.status().code() == Code::io);
            // Named with the publication's path: which publication is in the way.
            std::string shown = pub / dir;
            CHECK(r.status().message() ==
                  shown + ": not a directory (a symlink or file is in the way); ssync neither follows nor removes it");
            CHECK(test::run({"find", outside.path(), "-printf", "%P %s\\n"}).out == before);
            CHECK(test::read_file(pub / "latest") == "1\n");
        }
    }

    // Found by an adversarial test run: a file rewritten in place while it was hashed was
    // signed with the digest of whatever mix of old and new bytes was read.
    TEST_CASE("a file rewritten in place while it is read fails the run, publishing nothing") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        std::string objects_before = test::run({"find", pub / "objects", "-type", "f"}).out;
        // Several chunks, so the edit lands while the file is being read; an old mtime, so
        // the edit moves it even within one tick of the clock.
        test::write_file(src / "big", std::string(1 << 20, 'a'));
        struct timespec old_times[2] = {{1600000000, 0}, {1600000000, 0}};
        REQUIRE(::utimensat(AT_FDCWD, (src / "big").c_str(), old_times, 0) == 0);
        EditDuringStore fs(src / "big");
        PublishOptions o = options();
        o.fs = &fs;
        o.threads = 1;
        auto r = publish(src.path(), pub.path(), o, fake_sign);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == Code::io);
        CHECK(r.status().message() == "big: changed while it was being published; run again");
        CHECK(test::read_file(pub / "latest") == "1\n");
        CHECK_FALSE(test::exists(pub / "releases/2"));
        CHECK_FALSE(test::exists(pub / "tree/big"));
        CHECK(test::run({"find", pub / "objects", "-type", "f"}).out == objects_before);
        // Run again, as the message says: the file as it is now.
        auto again = publish(src.path(), pub.path(), options(), fake_sign);
        REQUIRE_MESSAGE(again.is_ok(), again.status().message());
        CHECK(entry_of(*again, "big")->sha256 == sha256_hex(std::string((1 << 20) - 1, 'a') + "B"));
    }

    TEST_CASE("the publication cannot be the source") {
        test::TempDir src;
        make_source(src.path());
        CHECK(publish(src.path(), src.path(), options(), fake_sign).status().code() == Code::usage);
    }
}


namespace {

// The pack index of release `serial`, which must parse.
PackIndex index_of(const std::string& pub, std::uint64_t serial) {
    auto index = parse_pack_index(test::read_file(pub + "/" + layout::pack_index_path(serial)), "index");
    REQUIRE_MESSAGE(index.is_ok(), index.status().message());
    return std::move(index).value();
}

// A pack as the index lists it, for comparing.
std::string listed(const Pack& pack) { return format_pack_index(PackIndex{{pack}}); }

std::vector<std::string> digests_in(const Pack& pack) {
    std::vector<std::string> out;
    for (const PackedObject& o : pack.objects) out.push_back(o.sha256);
    return out;
}

std::string packs_on_disk(const std::string& pub) {
    return test::run({"find", pub + "/packs", "-mindepth", "1", "-printf", "%P %s\\n"}).out;
}

// What every index must be, against its release's manifest: each pack a regular file, mode
// 0444, of its objects' bytes back to back (each of the size listed), named by its SHA-256;
// every small object of the release in exactly one pack, no larger one in any.
void check_index(const std::string& pub, std::uint64_t serial) {
    PackIndex index = index_of(pub, serial);
    auto m = parse_manifest(test::read_file(pub + "/" + layout::release_dir(serial) + "/manifest.json"));
    REQUIRE(m.is_ok());
    std::map<std::string, int> times_packed;
    for (const Pack& pack : index.packs) {
        std::string path = pub + "/" + layout::pack_path(pack.sha256);
        struct stat st;
        REQUIRE_MESSAGE(::lstat(path.c_str(), &st) == 0, path);
        CHECK(S_ISREG(st.st_mode));
        CHECK((st.st_mode & 07777) == 0444);
        std::string bytes = test::read_file(path);
        CHECK(bytes.size() == pack.size);
        CHECK(sha256_hex(bytes) == pack.sha256);
        std::string joined;
        for (const PackedObject& o : pack.objects) {
            std::string object = test::read_file(pub + "/" + layout::object_path(o.sha256));
            CHECK(object.size() == o.size);
            joined += object;
            times_packed[o.sha256]++;
        }
        CHECK(bytes == joined);
    }
    for (const Entry& e : m->entries) {
        if (e.type != EntryType::file) continue;
        CHECK_MESSAGE(times_packed[e.sha256] == (e.size <= kPackMaxObjectSize ? 1 : 0), e.path);
    }
}

// Fails every write into a pack's temporary (objects/tmp/p...) with ENOSPC: the disk fills up
// while packs are written, after the objects were stored.
class FullWhilePacking : public FileSystem {
public:
    ssize_t write(int fd, const void* buf, size_t count) override {
        char target[4096];
        std::string link = "/proc/self/fd/" + std::to_string(fd);
        ssize_t n = ::readlink(link.c_str(), target, sizeof target);
        if (n > 0 && std::string_view(target, static_cast<std::size_t>(n)).find("/objects/tmp/p") != std::string_view::npos) {
            errno = ENOSPC;
            return -1;
        }
        return FileSystem::write(fd, buf, count);
    }
};

}  // namespace

TEST_SUITE("Publication packs") {
    TEST_CASE("a first sign packs each small object once, in path order, and no larger one") {
        test::TempDir src, pub;
        make_source(src.path());
        test::write_file(src / "empty", "");
        test::write_file(src / "at-limit", std::string(kPackMaxObjectSize, 'l'));
        test::write_file(src / "large", std::string(kPackMaxObjectSize + 1, 'L'));
        auto r = publish(src.path(), pub.path(), options(), fake_sign);
        REQUIRE_MESSAGE(r.is_ok(), r.status().message());
        PackIndex index = index_of(pub.path(), 1);
        REQUIRE(index.packs.size() == 1);
        // copy.html and index.html hold the same content: packed at its first path.
        CHECK(digests_in(index.packs[0]) ==
              std::vector<std::string>{sha256_hex(std::string(kPackMaxObjectSize, 'l')),
                                       sha256_hex("#!/bin/sh\necho tool\n"), sha256_hex("<h1>hi</h1>"), sha256_hex("")});
        CHECK(r->stats.packs_written == 1);
        CHECK(r->stats.bytes_packed == kPackMaxObjectSize + 20 + 11);
        check_index(pub.path(), 1);
        CHECK(test::run({"find", pub / "objects/tmp", "-mindepth", "1"}).out.empty());
    }

    TEST_CASE("re-signing an unchanged tree writes no pack and lists the same, the quick way and the whole way") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        std::string first = test::read_file(pub / "releases/1/packs");
        std::string on_disk = packs_on_disk(pub.path());
        auto quick = publish(src.path(), pub.path(), options(1700000100), fake_sign);
        REQUIRE(quick.is_ok());
        CHECK(quick->stats.reused_entries);
        CHECK(quick->stats.packs_written == 0);
        CHECK(test::read_file(pub / "releases/2/packs") == first);
        PublishOptions o = options(1700000200);
        o.rehash = true;
        auto whole = publish(src.path(), pub.path(), o, fake_sign);
        REQUIRE(whole.is_ok());
        CHECK_FALSE(whole->stats.reused_entries);
        CHECK(whole->stats.packs_written == 0);
        CHECK(test::read_file(pub / "releases/3/packs") == first);
        CHECK(packs_on_disk(pub.path()) == on_disk);
    }

    TEST_CASE("a new small file gets a pack of its own, the old pack stays listed") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        PackIndex one = index_of(pub.path(), 1);
        REQUIRE(one.packs.size() == 1);
        test::write_file(src / "new.txt", "new content");
        auto r = publish(src.path(), pub.path(), options(1700000100), fake_sign);
        REQUIRE(r.is_ok());
        CHECK(r->stats.packs_written == 1);
        CHECK(r->stats.bytes_packed == 11);
        PackIndex two = index_of(pub.path(), 2);
        REQUIRE(two.packs.size() == 2);
        CHECK(listed(two.packs[0]) == listed(one.packs[0]));
        CHECK(digests_in(two.packs[1]) == std::vector<std::string>{sha256_hex("new content")});
        check_index(pub.path(), 2);
    }

    TEST_CASE("a release that uses no object of an old pack does not list it") {
        test::TempDir src, pub;
        test::write_file(src / "a", "alpha");
        test::write_file(src / "b", "beta");
        REQUIRE(publish(src.path(), pub.path(), options(1700000001), fake_sign).is_ok());
        test::write_file(src / "c", "gamma");
        REQUIRE(publish(src.path(), pub.path(), options(1700000002), fake_sign).is_ok());
        PackIndex two = index_of(pub.path(), 2);
        REQUIRE(two.packs.size() == 2);
        // c goes: its pack goes from the index (not from packs/: that is gc's job).
        REQUIRE(::unlink((src / "c").c_str()) == 0);
        auto three = publish(src.path(), pub.path(), options(1700000003), fake_sign);
        REQUIRE(three.is_ok());
        CHECK(three->stats.packs_written == 0);
        PackIndex index3 = index_of(pub.path(), 3);
        REQUIRE(index3.packs.size() == 1);
        CHECK(listed(index3.packs[0]) == listed(two.packs[0]));
        CHECK(test::exists(pub / layout::pack_path(two.packs[1].sha256)));
        // a and b change: the first pack has nothing left for the release either.
        test::write_file(src / "a", "alpha 2");
        test::write_file(src / "b", "beta 2");
        REQUIRE(publish(src.path(), pub.path(), options(1700000004), fake_sign).is_ok());
        PackIndex four = index_of(pub.path(), 4);
        REQUIRE(four.packs.size() == 1);
        CHECK(digests_in(four.packs[0]) == std::vector<std::string>{sha256_hex("alpha 2"), sha256_hex("beta 2")});
        check_index(pub.path(), 4);
    }

    TEST_CASE("a pack gone from packs/, of another size, or a symlink gets its objects packed again") {
        test::TempDir src, pub, outside;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        std::string first = test::read_file(pub / "releases/1/packs");
        PackIndex one = index_of(pub.path(), 1);
        REQUIRE(one.packs.size() == 1);
        std::string pack = pub / layout::pack_path(one.packs[0].sha256);
        std::string bytes = test::read_file(pack);
        test::write_file(outside / "same-size", std::string(bytes.size(), 'x'));
        std::vector<std::pair<std::string, std::function<void()>>> damages = {
            {"removed", [] {}},
            {"truncated", [&] { test::write_file(pack, bytes.substr(1)); }},
            {"a symlink to a file of its size", [&] { REQUIRE(::symlink((outside / "same-size").c_str(), pack.c_str()) == 0); }},
        };
        std::uint64_t serial = 1;
        for (auto& [what, damage] : damages) {
            CAPTURE(what);
            REQUIRE(::unlink(pack.c_str()) == 0);
            damage();
            // The tree is unchanged: the quick way finds the pack unusable and takes the whole way.
            auto r = publish(src.path(), pub.path(), options(1700000000 + static_cast<std::int64_t>(++serial)), fake_sign);
            REQUIRE_MESSAGE(r.is_ok(), r.status().message());
            CHECK_FALSE(r->stats.reused_entries);
            CHECK(r->stats.packs_written == 1);
            // The same objects in the same order: the same pack, under the same name.
            CHECK(test::read_file(pub / layout::pack_index_path(serial)) == first);
            check_index(pub.path(), serial);
        }
        CHECK(test::read_file(outside / "same-size") == std::string(bytes.size(), 'x'));
    }

    TEST_CASE("a previous index that does not parse counts as none: everything small is packed again") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        test::write_file(pub / "releases/1/packs", "ssync-packs 1\npack 12\n");
        test::write_file(src / "new.txt", "new content");
        auto r = publish(src.path(), pub.path(), options(1700000100), fake_sign);
        REQUIRE_MESSAGE(r.is_ok(), r.status().message());
        CHECK(r->stats.packs_written == 1);
        PackIndex two = index_of(pub.path(), 2);
        REQUIRE(two.packs.size() == 1);
        CHECK(two.packs[0].objects.size() == 3);
        check_index(pub.path(), 2);
    }

    TEST_CASE("--no-packs writes no index, and a later sign with packs writes them though the tree is unchanged") {
        test::TempDir src, pub;
        make_source(src.path());
        PublishOptions o = options();
        o.packs = false;
        auto none = publish(src.path(), pub.path(), o, fake_sign);
        REQUIRE(none.is_ok());
        CHECK(none->stats.packs_written == 0);
        CHECK_FALSE(test::exists(pub / "releases/1/packs"));
        CHECK_FALSE(test::exists(pub / "packs"));
        auto packed = publish(src.path(), pub.path(), options(1700000100), fake_sign);
        REQUIRE(packed.is_ok());
        CHECK_FALSE(packed->stats.reused_entries);
        CHECK(packed->stats.packs_written == 1);
        check_index(pub.path(), 2);
        o = options(1700000200);
        o.packs = false;
        auto quick = publish(src.path(), pub.path(), o, fake_sign);
        REQUIRE(quick.is_ok());
        CHECK(quick->stats.reused_entries);
        CHECK_FALSE(test::exists(pub / "releases/3/packs"));
        // Packed again from nothing: the same bytes, so the pack already there is kept as it is.
        std::string pack = pub / layout::pack_path(index_of(pub.path(), 2).packs.at(0).sha256);
        ino_t before = inode(pack);
        auto again = publish(src.path(), pub.path(), options(1700000300), fake_sign);
        REQUIRE(again.is_ok());
        CHECK(again->stats.packs_written == 1);
        CHECK(test::read_file(pub / "releases/4/packs") == test::read_file(pub / "releases/2/packs"));
        CHECK(inode(pack) == before);
        CHECK(test::run({"find", pub / "objects/tmp", "-mindepth", "1"}).out.empty());
    }

    TEST_CASE("a full disk while writing packs leaves the current release as it was") {
        test::TempDir src, pub;
        make_source(src.path());
        REQUIRE(publish(src.path(), pub.path(), options(), fake_sign).is_ok());
        test::write_file(src / "new.txt", "new content");
        FullWhilePacking fs;
        PublishOptions o = options(1700000100);
        o.fs = &fs;
        auto r = publish(src.path(), pub.path(), o, fake_sign);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == Code::io);
        CHECK_MESSAGE(r.status().message().rfind(pub / "objects/tmp/p", 0) == 0, r.status().message());
        CHECK(r.status().message().find("No space left on device") != std::string::npos);
        CHECK(test::read_file(pub / "latest") == "1\n");
        CHECK_FALSE(test::exists(pub / "releases/2"));
        CHECK(test::run({"find", pub / "objects/tmp", "-mindepth", "1"}).out.empty());
        auto again = publish(src.path(), pub.path(), options(1700000200), fake_sign);
        REQUIRE_MESSAGE(again.is_ok(), again.status().message());
        check_index(pub.path(), again->header.serial);
    }
}

}  // namespace ssync
