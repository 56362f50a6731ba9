// ssync-verifier sync against a local publication: the plan, the install, the state, safety.
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <spawn.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/fault_fs.h"
#include "e2e.h"
#include "ssync/fs.h"
#include "ssync/hash.h"
#include "ssync/sync.h"
#include "tree_snapshot.h"

namespace ssync::test {

namespace {

struct Mirror : Published {
    std::string dest = dir / "dest", state = dir / "state";

    ProcessResult sync(const std::vector<std::string>& extra = {}, const std::string& from = {}) const {
        std::vector<std::string> args = {"sync", "--from", from.empty() ? pub : from, "--to", dest,
                                         "--keyring", keyring, "--state", state, "--json"};
        args.insert(args.end(), extra.begin(), extra.end());
        return verifier(args);
    }
    nlohmann::json sync_ok(const std::vector<std::string>& extra = {}) const {
        auto r = sync(extra);
        REQUIRE_MESSAGE(r.exit_status == 0, r.err);
        auto j = nlohmann::json::parse(r.out, nullptr, false);
        REQUIRE_FALSE(j.is_discarded());
        return j;
    }
    void audit_clean() const {
        auto a = audit(dest);
        CHECK_MESSAGE(a.exit_status == 0, a.out << a.err);
    }
    // What an unprivileged user (nobody) needs to sync: to read the publication and the key,
    // and a home of its own for DEST and the state. Returns that home, holding key.asc. Root
    // only (chown).
    std::string nobody_home() const {
        REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
        std::string home = dir / "nobody";
        make_dirs(home);
        REQUIRE(::chown(home.c_str(), 65534, 65534) == 0);
        write_file(home + "/key.asc", read_file(keyring), 0644);
        return home;
    }
    // `ssync-verifier sync --from PUB --to DEST --keyring HOME/key.asc --state STATE EXTRA...`
    // run as nobody.
    ProcessResult sync_as_nobody(const std::string& home, const std::string& to, const std::string& state_dir,
                                 const std::vector<std::string>& extra = {}) const {
        std::vector<std::string> args = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                         SSYNC_VERIFIER_BIN, "sync", "--from", pub, "--to", to,
                                         "--keyring", home + "/key.asc", "--state", state_dir};
        args.insert(args.end(), extra.begin(), extra.end());
        return run(args);
    }
};

void rm(const std::string& path) { REQUIRE(run({"rm", "-rf", path}).exit_status == 0); }

// The regular files below `dir`, however deep (staging holds content two levels down).
int regular_files_below(const std::string& dir) {
    int n = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
        if (e.is_regular_file() && !e.is_symlink()) ++n;
    return n;
}

}  // namespace

TEST_SUITE("e2e sync") {
    TEST_CASE("first sync, audit, no-op, and the mirror keeps the signed manifest") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        auto first = m.sync_ok();
        CHECK(first["serial"] == 1);
        CHECK(first["noop"] == false);
        CHECK(first["added"] == 10);
        CHECK(first["files_fetched"] == 5);
        m.audit_clean();
        CHECK(snapshot(m.dest) == snapshot(m.src));
        CHECK(read_file(m.dest + "/.ssync/manifest.json") == read_file(m.pub + "/manifest.json"));
        auto state = nlohmann::json::parse(read_file(m.state + "/site.state"));
        CHECK(state["serial"] == 1);

        auto again = m.sync_ok();
        CHECK(again["noop"] == true);
        CHECK(again["files_fetched"] == 0);
        // Silent when not at a terminal and without --json: cron gets nothing on success.
        auto quiet = verifier({"sync", "--from", m.pub, "--to", m.dest, "--keyring", m.keyring, "--state", m.state,
                               "--no-owner"});
        CHECK(quiet.exit_status == 0);
        CHECK(quiet.out.empty());
        CHECK(quiet.err.empty());
    }

    TEST_CASE("an update with adds, changes, deletes, renames, mode changes and type swaps") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        // Rename the big file: its content is already on the mirror, so nothing is fetched for it.
        REQUIRE(::rename((m.src + "/big.bin").c_str(), (m.src + "/docs/big-renamed.bin").c_str()) == 0);
        write_file(m.src + "/index.html", "<h1>Welcome back</h1>\n");
        write_file(m.src + "/new/file.txt", "new\n");
        ::unlink((m.src + "/docs/guide.txt").c_str());
        ::chmod((m.src + "/bin/run").c_str(), 0700);
        // file -> symlink, symlink -> dir, dir -> file
        ::unlink((m.src + "/docs/deep/notes.md").c_str());
        REQUIRE(::symlink("../../index.html", (m.src + "/docs/deep/notes.md").c_str()) == 0);
        ::unlink((m.src + "/home.html").c_str());
        make_dirs(m.src + "/home.html");
        write_file(m.src + "/home.html/inside", "inside\n");
        rm(m.src + "/empty");
        write_file(m.src + "/empty", "now a file\n");
        REQUIRE(m.sign().exit_status == 0);
        auto r = m.sync_ok();
        CHECK(r["serial"] == 2);
        CHECK(r["files_copied_locally"] == 1);
        CHECK(r["files_fetched"] == 4);  // index.html, new/file.txt, home.html/inside, empty
        CHECK(r["bytes_fetched"].get<std::uint64_t>() < 300000);
        m.audit_clean();
        CHECK(snapshot(m.dest) == snapshot(m.src));
    }

    TEST_CASE("without --name, DEST keeps the name it was synced with, a bad --name is a usage error") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        Snapshot before = snapshot(m.dest);
        // Another file set published at another place: pointing the mirror at it by mistake
        // must not switch DEST over, even though nobody said --name.
        std::string other_pub = m.dir / "other-pub";
        REQUIRE(signer({"sign", "--root", m.src, "--out", other_pub, "--key", m.keys.plain_fpr, "--gnupghome",
                        m.keys.home, "--name", "other", "--quiet"})
                    .exit_status == 0);
        auto switched = m.sync({}, other_pub);
        CHECK(switched.exit_status == 4);
        CHECK(switched.err.find("expected \"site\"") != std::string::npos);
        CHECK(snapshot(m.dest) == before);
        // Said explicitly, the operator switches DEST over, and it then keeps the new name.
        auto said = m.sync({"--name", "other"}, other_pub);
        CHECK_MESSAGE(said.exit_status == 0, said.err);
        auto back = m.sync({});
        CHECK(back.exit_status == 4);
        CHECK(back.err.find("expected \"other\"") != std::string::npos);
        REQUIRE(m.sync({"--name", "site"}).exit_status == 0);
        CHECK(snapshot(m.dest) == before);

        // --name names state files, so it is checked before anything runs, by every command.
        for (std::string bad : {"../x", "", ".hidden", "a b"}) {
            CAPTURE(bad);
            // An empty value is refused for every option alike.
            std::string refusal = bad.empty() ? "--name: empty value" : "--name '" + bad + "': ";
            auto sync = m.sync({"--name", bad});
            CHECK(sync.exit_status == 2);
            CHECK(sync.err.find(refusal) != std::string::npos);
            CHECK(std::count(sync.err.begin(), sync.err.end(), '\n') == 1);
            auto audit = m.audit(m.dest, {"--name", bad});
            CHECK(audit.exit_status == 2);
            CHECK(audit.err.find(refusal) != std::string::npos);
            auto sign = signer({"sign", "--root", m.src, "--out", m.dir / "pub2", "--key", m.keys.plain_fpr,
                                "--gnupghome", m.keys.home, "--name", bad, "--quiet"});
            CHECK(sign.exit_status == 2);
            CHECK(sign.err.find(refusal) != std::string::npos);
            CHECK_FALSE(exists(m.dir / "pub2"));
        }
        CHECK(snapshot(m.dest) == before);
    }

    TEST_CASE("rollback: an older serial, or the same serial with other bytes, is refused") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        std::string old_pub = m.dir / "old-pub";
        REQUIRE(run({"cp", "-a", m.pub, old_pub}).exit_status == 0);
        write_file(m.src + "/index.html", "v2");
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        Snapshot before = snapshot(m.dest);
        auto r = m.sync({}, old_pub);
        CHECK(r.exit_status == 4);
        CHECK(r.err.find("rollback refused") != std::string::npos);
        CHECK(snapshot(m.dest) == before);

        // Regression: a fresh DEST synced without --name skipped the state check, so a
        // replayed old release was accepted by any mirror whose tree had been wiped.
        auto fresh = verifier({"sync", "--from", old_pub, "--to", m.dir / "fresh-dest", "--keyring", m.keyring,
                               "--state", m.state});
        CHECK(fresh.exit_status == 4);
        CHECK(fresh.err.find("rollback refused") != std::string::npos);
        CHECK(fresh.err.find("error: site: the publication offers serial 1") != std::string::npos);  // named
        CHECK_FALSE(exists(m.dir / "fresh-dest/index.html"));

        // A different release under serial 2.
        std::string other_pub = m.dir / "other-pub";
        Published other;
        other.pub = other_pub;
        other.src = m.src;
        write_file(m.src + "/index.html", "v2, other");
        REQUIRE(other.sign({"--serial", "2"}).exit_status == 0);
        auto same = m.sync({}, other_pub);
        CHECK(same.exit_status == 4);
        CHECK(same.err.find("different manifest bytes") != std::string::npos);
        CHECK(snapshot(m.dest) == before);
    }

    TEST_CASE("an expired release is refused, and so is a replayed one on the no-op path") {
        Mirror m;
        // Long enough for sign + sync under the sanitizers, then wait out the rest.
        auto signed_at = std::chrono::steady_clock::now();
        REQUIRE(m.sign({"--expires", "8s"}).exit_status == 0);
        m.sync_ok();
        std::this_thread::sleep_until(signed_at + std::chrono::seconds(9));
        auto frozen = m.sync();
        CHECK(frozen.exit_status == 4);
        CHECK(frozen.err.find("expired") != std::string::npos);
        Mirror fresh;
        REQUIRE(fresh.sign({"--expires", "1s"}).exit_status == 0);
        ::sleep(2);
        auto r = fresh.sync();
        CHECK(r.exit_status == 4);
        // Pointing at an option sync does not have would be no help.
        CHECK(r.err.find("(audit, check and show take --allow-expired to inspect it)") != std::string::npos);
        CHECK_FALSE(exists(fresh.dest + "/index.html"));
    }

    TEST_CASE("a tampered object on the server leaves DEST byte-for-byte unchanged") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        Snapshot before = snapshot(m.dest);
        write_file(m.src + "/index.html", "<h1>v2</h1>\n");
        write_file(m.src + "/docs/guide.txt", "guide v2\n");
        auto s = m.sign({"--json", "--no-packs"});  // objects fetched one by one: what is tampered with
        REQUIRE(s.exit_status == 0);
        std::string object = object_of_entry(m.pub, "index.html");
        ::chmod(object.c_str(), 0644);
        write_file(object, "<h1>ev</h1>\n");  // same size: caught by the digest
        auto r = m.sync();
        CHECK(r.exit_status == 6);
        CHECK(r.err.find("index.html") == std::string::npos);  // named by object path
        CHECK(r.err.find(m.pub + ": objects/") != std::string::npos);  // in the publication named
        CHECK(r.err.find("does not match") != std::string::npos);
        CHECK(snapshot(m.dest) == before);
        CHECK(nlohmann::json::parse(read_file(m.state + "/site.state"))["serial"] == 1);
    }

    TEST_CASE("FIFOs planted in a publication, in DEST/.ssync or as the keyring fail the run, never hang it") {
        // Opening a FIFO for reading waits for a writer: each case hung before O_NONBLOCK.
        // `timeout` turns a regression into exit 124 instead of a stuck test.
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        Snapshot before = snapshot(m.dest);
        auto bounded_sync = [&](const std::vector<std::string>& extra = {}) {
            std::vector<std::string> args = {"timeout", "20", SSYNC_VERIFIER_BIN, "sync", "--from", m.pub, "--to",
                                             m.dest, "--keyring", m.keyring, "--state", m.state};
            args.insert(args.end(), extra.begin(), extra.end());
            return run(args);
        };

        // An object of a new release is a FIFO on the (untrusted) server.
        write_file(m.src + "/index.html", "<h1>v2</h1>\n");
        REQUIRE(m.sign().exit_status == 0);
        std::string object = object_of_entry(m.pub, "index.html");
        std::string object_bytes = read_file(object);
        REQUIRE(::unlink(object.c_str()) == 0);
        REQUIRE(::mkfifo(object.c_str(), 0644) == 0);
        auto r = bounded_sync();
        CHECK(r.exit_status == 6);
        CHECK(r.err.find("not a regular file") != std::string::npos);
        CHECK(snapshot(m.dest) == before);
        REQUIRE(::unlink(object.c_str()) == 0);
        write_file(object, object_bytes);

        // `latest` is a FIFO.
        std::string latest = m.pub + "/latest";
        std::string latest_bytes = read_file(latest);
        REQUIRE(::unlink(latest.c_str()) == 0);
        REQUIRE(::mkfifo(latest.c_str(), 0644) == 0);
        r = bounded_sync();
        CHECK(r.exit_status == 6);
        CHECK(r.err.find("latest: not a regular file") != std::string::npos);
        CHECK(snapshot(m.dest) == before);
        REQUIRE(::unlink(latest.c_str()) == 0);
        write_file(latest, latest_bytes);

        // The keyring is a FIFO.
        std::string fifo_keyring = m.dir / "keyring.fifo";
        REQUIRE(::mkfifo(fifo_keyring.c_str(), 0644) == 0);
        r = run({"timeout", "20", SSYNC_VERIFIER_BIN, "sync", "--from", m.pub, "--to", m.dest, "--keyring",
                 fifo_keyring, "--state", m.state});
        CHECK(r.exit_status == 5);
        CHECK(r.err.find("not a regular file") != std::string::npos);

        // DEST's own kept manifest and tree stamp are FIFOs: the run does the full check instead.
        for (std::string name : {"manifest.json", "tree-stamp"}) {
            CAPTURE(name);
            std::string kept = m.dest + "/.ssync/" + name;
            REQUIRE(::unlink(kept.c_str()) == 0);
            REQUIRE(::mkfifo(kept.c_str(), 0644) == 0);
            r = bounded_sync();
            CHECK_MESSAGE(r.exit_status == 0, r.err);
        }
        m.audit_clean();

        // A FIFO among the staged objects an interrupted run left (named like the content a
        // drifted file needs back, where it would be staged and in the flat layout of older
        // versions) is removed, not opened and waited on.
        write_file(m.dest + "/index.html", "drift\n");
        std::string object_name = std::filesystem::path(object_of_entry(m.pub, "index.html")).filename();
        std::string objects = m.dest + "/.ssync/staging/objects";
        std::filesystem::create_directories(objects + "/" + object_name.substr(0, 2));
        for (std::string staged : {objects + "/" + object_name.substr(0, 2) + "/" + object_name, objects + "/" + object_name}) {
            REQUIRE(::mkfifo(staged.c_str(), 0644) == 0);
        }
        r = bounded_sync();
        CHECK_MESSAGE(r.exit_status == 0, r.err);
        m.audit_clean();
    }

    TEST_CASE("a DEST that is, holds or lies inside a local publication is refused before anything is written") {
        // Regression: --to naming the publication itself "succeeded" by replacing the
        // publication with the tree, removing objects/ and releases/ as extraneous.
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        Snapshot pub_before = snapshot(m.pub);
        Snapshot dir_before = snapshot(m.dir.path());
        for (const std::string& dest : {m.pub, m.pub + "/", m.pub + "/mirror", m.pub + "/objects", m.dir.path(),
                                       m.dir / "src/../pub"}) {
            CAPTURE(dest);
            auto r = verifier({"sync", "--from", m.pub, "--to", dest, "--keyring", m.keyring, "--state", m.state});
            CHECK(r.exit_status == 2);
            CHECK(r.err.find("publication it would be synced from") != std::string::npos);
            CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        }
        CHECK(snapshot(m.pub) == pub_before);
        CHECK(snapshot(m.dir.path()) == dir_before);
        CHECK_FALSE(exists(m.pub + "/mirror"));
        // file:// names the same directory.
        auto url = verifier({"sync", "--from", "file://" + m.pub, "--to", m.pub, "--keyring", m.keyring});
        CHECK(url.exit_status == 2);
        CHECK(snapshot(m.pub) == pub_before);
        // ".", ".." and "/" do not name a directory to own.
        for (const std::string& dest : {std::string("."), std::string(".."), std::string("/"), m.dir / "x/.."}) {
            CAPTURE(dest);
            auto r = verifier({"sync", "--from", m.pub, "--to", dest, "--keyring", m.keyring, "--state", m.state});
            CHECK(r.exit_status == 2);
            CHECK(r.err.find("name the destination directory itself") != std::string::npos);
        }
        // A sibling is fine.
        m.sync_ok();
        m.audit_clean();
    }

    TEST_CASE("signer gc: old releases go, mirrors behind and current still sync and audit") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();  // this mirror stays at release 1 until after the gc
        for (int n = 2; n <= 4; ++n) {
            write_file(m.src + "/index.html", "<h1>release " + std::to_string(n) + "</h1>\n");
            REQUIRE(m.sign().exit_status == 0);
        }
        // The human summary is for a terminal (none in cron, nor here): the JSON says the same.
        auto dry = signer({"gc", "--out", m.pub, "--keep", "1", "--dry-run", "--json"});
        REQUIRE_MESSAGE(dry.exit_status == 0, dry.err);
        auto d = nlohmann::json::parse(dry.out);
        CHECK(d["dry_run"] == true);
        CHECK(d["removed_releases"] == nlohmann::json::array({3, 2, 1}));
        CHECK(d["objects_removed"] == 3);
        CHECK(exists(m.pub + "/releases/1"));
        auto gc = signer({"gc", "--out", m.pub, "--keep", "1", "--json"});
        REQUIRE_MESSAGE(gc.exit_status == 0, gc.err);
        auto j = nlohmann::json::parse(gc.out);
        CHECK(j["kept"] == nlohmann::json::array({4}));
        CHECK(j["removed_releases"] == nlohmann::json::array({3, 2, 1}));
        CHECK(j["objects_removed"] == 3);
        CHECK(j["dry_run"] == false);
        CHECK_FALSE(exists(m.pub + "/releases/3"));
        auto r = m.sync_ok();
        CHECK(r["serial"] == 4);
        m.audit_clean();
        auto quiet = signer({"gc", "--out", m.pub, "--quiet"});
        CHECK(quiet.exit_status == 0);
        CHECK(quiet.out.empty());
        auto bad = signer({"gc", "--out", m.src});
        CHECK(bad.exit_status == 2);
        CHECK(bad.err.find("not a publication made by ssync-signer") != std::string::npos);
    }

    TEST_CASE("a tampered manifest or a wrong key changes nothing") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        Snapshot before = snapshot(m.dest);
        write_file(m.src + "/index.html", "v2");
        REQUIRE(m.sign().exit_status == 0);
        std::string bytes = read_file(m.pub + "/releases/2/manifest.json");
        bytes.replace(bytes.find("\"0644\""), 6, "\"0666\"");
        write_file(m.pub + "/releases/2/manifest.json", bytes);
        auto r = m.sync();
        CHECK(r.exit_status == 3);
        CHECK(snapshot(m.dest) == before);

        // A first sync that fails leaves no DEST behind, nor a DEST/.ssync in a DEST that had
        // none (it left .ssync/staging and the lock).
        Mirror w;
        REQUIRE(w.sign({}, w.keys.other_fpr).exit_status == 0);
        auto wrong = w.sync();
        CHECK(wrong.exit_status == 3);
        CHECK_FALSE(exists(w.dest));
        make_dirs(w.dest);
        write_file(w.dest + "/mine.txt", "the operator's own file");
        Snapshot own = snapshot(w.dest);
        auto again = w.sync();
        CHECK(again.exit_status == 3);
        CHECK_FALSE(exists(w.dest + "/.ssync"));
        CHECK(snapshot(w.dest) == own);
        // A DEST/.ssync that was there stays: only what the failed run made goes.
        make_dirs(w.dest + "/.ssync");
        CHECK(w.sync().exit_status == 3);
        CHECK(exists(w.dest + "/.ssync"));
    }

    TEST_CASE("a directory in DEST replaced by a symlink does not redirect writes") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        TempDir outside;
        rm(m.dest + "/docs");
        REQUIRE(::symlink(outside.path().c_str(), (m.dest + "/docs").c_str()) == 0);
        write_file(m.src + "/docs/guide.txt", "v2\n");
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        CHECK(snapshot(outside.path()).empty());
        struct stat st;
        REQUIRE(::lstat((m.dest + "/docs").c_str(), &st) == 0);
        CHECK(S_ISDIR(st.st_mode));
        m.audit_clean();
    }

    TEST_CASE("a second sync into the same DEST is refused while the first holds the lock") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        UniqueFd lock(::open((m.dest + "/.ssync/lock").c_str(), O_RDWR));
        REQUIRE(lock);
        REQUIRE(::flock(lock.get(), LOCK_EX | LOCK_NB) == 0);
        auto r = m.sync();
        CHECK(r.exit_status == 7);
        CHECK(r.err.find("locked by another process") != std::string::npos);
        ::flock(lock.get(), LOCK_UN);
        CHECK(m.sync().exit_status == 0);
    }

    TEST_CASE("--keep-extra keeps files the release does not list") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        make_dirs(m.dest);
        write_file(m.dest + "/local-only", "mine");
        m.sync_ok({"--keep-extra"});
        CHECK(read_file(m.dest + "/local-only") == "mine");
        // Regression: the no-op fast path trusted a tree stamp recorded under --keep-extra.
        m.sync_ok();
        CHECK_FALSE(exists(m.dest + "/local-only"));
    }

    TEST_CASE("a mirror of a mirror verifies end to end with the master's key") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        std::string dest2 = m.dir / "dest2";
        auto r = verifier({"sync", "--from", m.dest, "--to", dest2, "--keyring", m.keyring, "--state",
                           m.dir / "state2", "--json"});
        REQUIRE_MESSAGE(r.exit_status == 0, r.err);
        CHECK(snapshot(dest2) == snapshot(m.src));
        CHECK(m.audit(dest2).exit_status == 0);
        // Tampering on the first mirror is caught by the second.
        write_file(m.dest + "/index.html", "defaced");
        write_file(m.src + "/index.html", "v2");
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        write_file(m.dest + "/index.html", "defaced");  // after the first mirror updated
        auto r2 = verifier({"sync", "--from", m.dest, "--to", dest2, "--keyring", m.keyring, "--state",
                            m.dir / "state2"});
        CHECK(r2.exit_status == 6);
        CHECK(read_file(dest2 + "/index.html") == "<h1>Welcome</h1>\n");
    }

    TEST_CASE("a mirror whose file set has its own top-level `latest` still serves its release") {
        // Regression: the verifier read a mirror's top-level `latest` (a file of the set) before
        // its `.ssync/latest`, and refused it: "latest: not a serial number".
        Mirror m;
        write_file(m.src + "/latest", "hello\n");
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        std::string dest2 = m.dir / "dest2";
        auto r = verifier({"sync", "--from", m.dest, "--to", dest2, "--keyring", m.keyring, "--state",
                           m.dir / "state2"});
        REQUIRE_MESSAGE(r.exit_status == 0, r.err);
        CHECK(snapshot(dest2) == snapshot(m.src));
        auto show = verifier({"show", "--from", m.dest, "--keyring", m.keyring});
        CHECK_MESSAGE(show.exit_status == 0, show.err);
    }

    TEST_CASE("an unchanged release with a damaged kept manifest is repaired, not skipped") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        CHECK(m.sync_ok()["noop"] == true);
        std::string kept = m.dest + "/.ssync/manifest.json";
        std::string good = read_file(kept);
        write_file(kept, good.substr(0, good.size() / 2));
        m.sync_ok();
        CHECK(read_file(kept) == good);
    }

    TEST_CASE("stat-only drift (chmod and back) is checked once, then the cheap no-op returns") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        auto quick = m.sync_ok();
        CHECK(quick["noop"] == true);
        CHECK(quick["files_hashed"] == 0);
        CHECK(quick["phases"]["plan"] == 0.0);  // confirmed by the tree stamp, no plan
        // Same content, mode and mtime; only the ctime moves (as after `chown -R` to the same
        // owners, or a backup tool restoring metadata).
        std::string file = m.dest + "/index.html";
        REQUIRE(::chmod(file.c_str(), 0600) == 0);
        REQUIRE(::chmod(file.c_str(), 0644) == 0);
        auto checked = m.sync_ok();
        CHECK(checked["noop"] == true);
        CHECK(checked["files_hashed"] == 1);
        CHECK(checked["phases"]["plan"] != 0.0);
        // The check refreshed the stat cache and the stamp: the next run is cheap again
        // instead of re-hashing the file and planning in full on every run from cron.
        auto after = m.sync_ok();
        CHECK(after["noop"] == true);
        CHECK(after["files_hashed"] == 0);
        CHECK(after["phases"]["plan"] == 0.0);
        m.audit_clean();
    }

    TEST_CASE("local drift in DEST is repaired on an unchanged release") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        write_file(m.dest + "/index.html", "<h1>Welcomf</h1>\n");  // same size
        ::chmod((m.dest + "/bin/run").c_str(), 0777);
        auto r = m.sync_ok();
        CHECK(r["noop"] == false);
        CHECK(r["changed"] == 2);
        m.audit_clean();
    }

    TEST_CASE("SIGKILL at any moment: every path is old or new, and the re-run converges") {
        Mirror m;
        // Enough files that the sync takes a while.
        for (int i = 0; i < 800; ++i) {
            write_file(m.src + "/many/d" + std::to_string(i % 30) + "/f" + std::to_string(i), "v1 " + std::to_string(i));
        }
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        Snapshot v1 = snapshot(m.dest);
        for (int i = 0; i < 800; ++i) {
            write_file(m.src + "/many/d" + std::to_string(i % 30) + "/f" + std::to_string(i),
                       "version two " + std::to_string(i));
        }
        REQUIRE(m.sign().exit_status == 0);
        Snapshot v2 = snapshot(m.src);
        std::vector<std::string> argv = {SSYNC_VERIFIER_BIN, "sync", "--from", m.pub, "--to", m.dest,
                                         "--keyring", m.keyring, "--state", m.state, "--quiet"};
        // A killed verifier cannot remove its private GnuPG home: keep those with the test.
        ScopedEnv tmpdir("TMPDIR", m.dir.path());
        auto start_sync = [&] { return spawn(argv); };
        auto flip = [&](bool to_v1) {
            for (int i = 0; i < 800; ++i) {
                write_file(m.src + "/many/d" + std::to_string(i % 30) + "/f" + std::to_string(i),
                           (to_v1 ? "v1 " : "version two ") + std::to_string(i));
            }
            REQUIRE(m.sign().exit_status == 0);
        };
        // How long one whole update takes here, so that the kills land in every phase.
        auto t0 = std::chrono::steady_clock::now();
        REQUIRE(wait_exit(start_sync()) == 0);
        auto full_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
        v1 = v2;
        flip(true);
        v2 = snapshot(m.src);
        int mixed_rounds = 0;
        bool to_v1 = false;
        // Kill points: during verification and staging (fractions of a whole run), and right
        // after the first path was switched, plus a little later (negative: ms after that).
        const std::string first_path = m.dest + "/many/d0/f0";
        for (double when : {0.5, -0.0, -3.0, -15.0}) {
            CAPTURE(when);
            std::string first_before = read_file(first_path);
            pid_t pid = start_sync();
            if (when > 0) {
                std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<long>(when * full_ms)));
            } else {
                auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
                while (read_file(first_path) == first_before && std::chrono::steady_clock::now() < deadline) {
                    std::this_thread::sleep_for(std::chrono::microseconds(200));
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<long>(-when)));
            }
            ::kill(pid, SIGKILL);
            wait_exit(pid);
            Snapshot now = snapshot(m.dest);
            int olds = 0, news = 0;
            for (const auto& [path, node] : now) {
                if (node.type == 'd') continue;  // may keep their build-time mode until the end
                auto a = v1.find(path), b = v2.find(path);
                bool old_version = a != v1.end() && a->second == node;
                bool new_version = b != v2.end() && b->second == node;
                olds += old_version && !new_version;
                news += new_version && !old_version;
                CHECK_MESSAGE((old_version || new_version), path);
            }
            mixed_rounds += olds > 0 && news > 0;
            auto r = run(argv);
            CHECK_MESSAGE(r.exit_status == 0, r.err);
            CHECK(snapshot(m.dest) == v2);
            // The next round goes back the other way.
            v1 = v2;
            flip(to_v1);
            to_v1 = !to_v1;
            v2 = snapshot(m.src);
        }
        // At least one kill must have landed in the middle of switching paths, or this test
        // proved nothing about atomicity.
        CHECK(mixed_rounds >= 1);
        CHECK(verifier({"audit", "--from", m.dest, "--keyring", m.keyring, m.dest}).exit_status == 0);
    }
}


TEST_SUITE("e2e sync operators") {
    TEST_CASE("as root, owners are applied by name where the name exists, else by id") {
        if (::geteuid() != 0) return;
        Mirror m;
        REQUIRE(::chown((m.src + "/docs/guide.txt").c_str(), 4242, 4343) == 0);  // no such names
        REQUIRE(::chown((m.src + "/bin/run").c_str(), 1, 1) == 0);                // daemon:daemon on Debian
        REQUIRE(::lchown((m.src + "/home.html").c_str(), 4242, 4343) == 0);
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        struct stat st;
        REQUIRE(::stat((m.dest + "/docs/guide.txt").c_str(), &st) == 0);
        CHECK(st.st_uid == 4242);
        CHECK(st.st_gid == 4343);
        REQUIRE(::stat((m.dest + "/bin/run").c_str(), &st) == 0);
        CHECK(st.st_uid == 1);
        CHECK((st.st_mode & 07777) == 0755);
        REQUIRE(::lstat((m.dest + "/home.html").c_str(), &st) == 0);
        CHECK(st.st_uid == 4242);
        m.audit_clean();
    }

    TEST_CASE("as another user than root, owners are skipped with one warning, or none with --no-owner") {
        if (::geteuid() != 0) return;  // needs root to become someone else
        Mirror m;
        REQUIRE(::chown((m.src + "/docs/guide.txt").c_str(), 4242, 4343) == 0);
        REQUIRE(m.sign().exit_status == 0);
        std::string home = m.nobody_home();
        auto as_nobody = [&](const std::string& dest, const std::vector<std::string>& extra) {
            return m.sync_as_nobody(home, dest, home + "/state", extra);
        };
        auto r = as_nobody(home + "/dest", {});
        REQUIRE_MESSAGE(r.exit_status == 0, r.err);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        CHECK(r.err.find("warning: not running as root: file owners are not set") != std::string::npos);
        struct stat st;
        REQUIRE(::stat((home + "/dest/docs/guide.txt").c_str(), &st) == 0);
        CHECK(st.st_uid == 65534);
        CHECK(read_file(home + "/dest/docs/guide.txt") == read_file(m.src + "/docs/guide.txt"));
        auto a = m.audit(home + "/dest", {"--ignore-owner"});
        CHECK_MESSAGE(a.exit_status == 0, a.out << a.err);
        CHECK(m.audit(home + "/dest").exit_status == 1);  // the owners do differ

        auto quiet = as_nobody(home + "/dest2", {"--no-owner"});
        CHECK_MESSAGE(quiet.exit_status == 0, quiet.err);
        CHECK(quiet.err.empty());
        CHECK(quiet.out.empty());
        // The no-op run as the same user: nothing to say either.
        auto again = as_nobody(home + "/dest2", {"--no-owner"});
        CHECK(again.exit_status == 0);
        CHECK(again.err.empty());
    }

    TEST_CASE("an applied release is trusted again only with the keyring it was verified with") {
        // Regression: a run that found the applied release again (same serial and signature)
        // repaired DEST from the kept manifest without consulting --keyring: a key removed from
        // the keyring, or revoked there, still kept the mirror going with exit 0.
        Mirror m;
        // The revoked key's public half as mirrors had it before the revocation was published.
        auto exported = run({"gpg", "--homedir", m.keys.home, "--batch", "--armor", "--export", m.keys.revoked_fpr});
        REQUIRE(exported.exit_status == 0);
        std::string before_revocation = m.dir / "before-revocation.asc";
        write_file(before_revocation, exported.out);
        REQUIRE(m.sign({}, m.keys.revoked_fpr).exit_status == 0);
        auto sync_with = [&](const std::string& keyring) {
            return verifier({"sync", "--from", m.pub, "--to", m.dest, "--keyring", keyring, "--state", m.state});
        };
        auto state = [&] { return nlohmann::json::parse(read_file(m.state + "/site.state")); };
        auto first = sync_with(before_revocation);
        REQUIRE_MESSAGE(first.exit_status == 0, first.err);
        CHECK(state()["keyring_sha256"] == sha256_hex(read_file(before_revocation)));
        CHECK(state()["verified_until"] == 0);  // nothing expires
        // The same keyring: the recorded verdict stands, drift is repaired.
        write_file(m.dest + "/index.html", "drift\n");
        auto again = sync_with(before_revocation);
        CHECK_MESSAGE(again.exit_status == 0, again.err);
        CHECK(read_file(m.dest + "/index.html") == read_file(m.src + "/index.html"));

        // The revocation reaches the keyring: refused, DEST left as it is.
        write_file(m.dest + "/index.html", "drift\n");
        Snapshot drifted = snapshot(m.dest);
        auto revoked = sync_with(m.keys.pubkey("revoked"));
        CHECK(revoked.exit_status == 3);
        CHECK(revoked.err.find("revoked") != std::string::npos);
        CHECK(snapshot(m.dest) == drifted);
        // A keyring without the key at all: refused as well.
        auto other = sync_with(m.keys.pubkey("other"));
        CHECK(other.exit_status == 3);
        CHECK(snapshot(m.dest) == drifted);

        // Another keyring that still holds the key: verified again, and remembered.
        std::string both = m.dir / "both.asc";
        write_file(both, read_file(m.keys.pubkey("plain")) + read_file(before_revocation));
        auto renewed = sync_with(both);
        CHECK_MESSAGE(renewed.exit_status == 0, renewed.err);
        CHECK(state()["keyring_sha256"] == sha256_hex(read_file(both)));
        CHECK(read_file(m.dest + "/index.html") == read_file(m.src + "/index.html"));

        // A verdict past its time (a key or the signature expired since) is not reused: the run
        // verifies again and records the new verdict.
        auto aged = state();
        aged["verified_until"] = 1;
        write_file(m.state + "/site.state", aged.dump());
        auto reverified = sync_with(both);
        CHECK_MESSAGE(reverified.exit_status == 0, reverified.err);
        CHECK(state()["verified_until"] == 0);
    }

    TEST_CASE("not as root, files in a read-only directory of the release are updated, and its mode kept") {
        // Regression: the renames into a 0555 directory failed (EACCES) after other paths had
        // switched, on every run: DEST stuck half-applied.
        if (::geteuid() != 0) return;  // needs root to become someone else
        Mirror m;
        write_file(m.src + "/ro/f", "v1\n");
        write_file(m.src + "/ro/gone", "v1\n");
        REQUIRE(::chmod((m.src + "/ro").c_str(), 0555) == 0);
        REQUIRE(m.sign().exit_status == 0);
        std::string home = m.nobody_home();
        std::string dest = home + "/dest";
        auto as_nobody = [&] { return m.sync_as_nobody(home, dest, home + "/state", {"--no-owner"}); };
        auto first = as_nobody();
        REQUIRE_MESSAGE(first.exit_status == 0, first.err);
        REQUIRE(::chmod((m.src + "/ro").c_str(), 0755) == 0);
        write_file(m.src + "/ro/f", "v2\n");
        write_file(m.src + "/ro/new", "new\n");
        REQUIRE(::unlink((m.src + "/ro/gone").c_str()) == 0);
        REQUIRE(::chmod((m.src + "/ro").c_str(), 0555) == 0);
        write_file(m.src + "/index.html", "<h1>v2</h1>\n");
        REQUIRE(m.sign().exit_status == 0);
        auto update = as_nobody();
        CHECK_MESSAGE(update.exit_status == 0, update.err);
        CHECK(read_file(dest + "/ro/f") == "v2\n");
        CHECK(read_file(dest + "/ro/new") == "new\n");
        CHECK_FALSE(exists(dest + "/ro/gone"));
        struct stat st;
        REQUIRE(::stat((dest + "/ro").c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0555);
        auto a = m.audit(dest, {"--ignore-owner"});
        CHECK_MESSAGE(a.exit_status == 0, a.out << a.err);
    }

    TEST_CASE("a state that cannot be recorded fails the run before DEST changes") {
        // Regression: the unwritable state was noticed after DEST was switched, so every run
        // applied whatever it was offered, an older release too, then exited 5.
        if (::geteuid() != 0) return;  // needs root to become someone else
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        std::string home = m.nobody_home();
        std::string root_state = m.dir / "root-state";  // root's, 0755: not writable by nobody
        make_dirs(root_state);
        REQUIRE(::chmod(root_state.c_str(), 0755) == 0);
        auto as_nobody = [&](const std::string& state) {
            return m.sync_as_nobody(home, home + "/dest", state, {"--no-owner"});
        };
        auto first = as_nobody(home + "/state");
        REQUIRE_MESSAGE(first.exit_status == 0, first.err);
        write_file(m.src + "/index.html", "<h1>v2</h1>\n");
        REQUIRE(m.sign().exit_status == 0);
        Snapshot before = snapshot(home + "/dest");
        auto r = as_nobody(root_state);
        CHECK(r.exit_status == 5);
        CHECK(r.err.find("state directory not writable") != std::string::npos);
        CHECK(snapshot(home + "/dest") == before);
    }

    TEST_CASE("a disk that runs full while staging: the file named, what was staged removed, DEST and the state unchanged") {
        // Regression: the error named the content's digest alone ("50fe...: No space left on
        // device"), and the part of the release staged so far stayed, keeping the disk full.
        // Through the library, with writes failing as a full disk fails them: a real small
        // file system needs root and mount.
        Mirror m;
        // 600,000 bytes: three writes of staging each (the local transport reads 256 KiB).
        for (unsigned i = 0; i < 6; ++i) write_file(m.src + "/big" + std::to_string(i), pseudo_random_bytes(600'000, i));
        REQUIRE(m.sign().exit_status == 0);
        FaultInjectingFs fs;
        SyncOptions options;
        options.url = m.pub;
        options.dest = m.dest;
        options.keyring = m.keyring;
        options.state_dir = m.state;
        options.now = static_cast<std::int64_t>(std::time(nullptr));
        options.fs = &fs;
        const std::string staging = m.dest + "/.ssync/staging";

        // A first sync: nothing is left behind, DEST included.
        fs.fail(FaultInjectingFs::Op::write, 10, ENOSPC, /*sticky=*/true);
        auto first = sync_release(options);
        REQUIRE_FALSE(first.is_ok());
        const Status& full = first.status();
        CHECK(full.code() == Code::io);
        CHECK_MESSAGE(full.message().rfind(staging + "/objects/", 0) == 0, full.message());
        CHECK_MESSAGE(full.message().find("No space left on device") != std::string::npos, full.message());
        CHECK_MESSAGE(full.message().find("removed to give the space back") != std::string::npos, full.message());
        CHECK(full.message().find('\n') == std::string::npos);
        CHECK_FALSE(exists(m.dest));
        CHECK_FALSE(exists(m.state + "/site.state"));

        fs.fail(FaultInjectingFs::Op::none, 0, 0);
        REQUIRE(sync_release(options).is_ok());
        m.audit_clean();

        // An update: DEST, its record and the state stay at release 1, staging is emptied.
        for (unsigned i = 0; i < 6; ++i) write_file(m.src + "/new" + std::to_string(i), pseudo_random_bytes(600'000, 10 + i));
        write_file(m.src + "/big0", pseudo_random_bytes(600'000, 99));
        REQUIRE(m.sign().exit_status == 0);
        Snapshot before = snapshot(m.dest);
        std::string state_before = read_file(m.state + "/site.state");
        std::string record_before = read_file(m.dest + "/.ssync/manifest.json");
        fs.fail(FaultInjectingFs::Op::write, 10, ENOSPC, /*sticky=*/true);
        auto update = sync_release(options);
        REQUIRE_FALSE(update.is_ok());
        CHECK_MESSAGE(update.status().message().rfind(staging + "/objects/", 0) == 0, update.status().message());
        CHECK(fs.failures() >= 1);
        CHECK(snapshot(m.dest) == before);
        CHECK(read_file(m.state + "/site.state") == state_before);
        CHECK(read_file(m.dest + "/.ssync/manifest.json") == record_before);
        CHECK(regular_files_below(staging) == 0);

        // Any other failure of the disk keeps the verified part for the next run, as before.
        fs.fail(FaultInjectingFs::Op::write, 10, EIO, /*sticky=*/true);
        auto failed = sync_release(options);
        REQUIRE_FALSE(failed.is_ok());
        CHECK_MESSAGE(failed.status().message().find("Input/output error") != std::string::npos, failed.status().message());
        CHECK(failed.status().message().find("removed") == std::string::npos);
        CHECK(regular_files_below(staging) >= 3);
        CHECK(snapshot(m.dest) == before);

        fs.fail(FaultInjectingFs::Op::none, 0, 0);
        auto done = sync_release(options);
        REQUIRE_MESSAGE(done.is_ok(), done.status().message());
        CHECK(done->serial == 2);
        CHECK(snapshot(m.dest) == snapshot(m.src));
        m.audit_clean();
    }

    TEST_CASE("junk at DEST/.ssync/releases is replaced before the switch, never followed") {
        // Regression: a symlink there made recording fail after DEST was switched (exit 5, DEST
        // at the new serial, state and .ssync/latest at the old one).
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        std::string elsewhere = m.dir / "elsewhere";
        make_dirs(elsewhere);
        std::string releases = m.dest + "/.ssync/releases";
        std::filesystem::remove_all(releases);
        REQUIRE(::symlink(elsewhere.c_str(), releases.c_str()) == 0);
        write_file(m.src + "/index.html", "<h1>v2</h1>\n");
        REQUIRE(m.sign().exit_status == 0);
        auto j = m.sync_ok();
        CHECK(j["serial"] == 2);
        CHECK(std::filesystem::is_empty(elsewhere));
        struct stat st;
        REQUIRE(::lstat(releases.c_str(), &st) == 0);
        CHECK(S_ISDIR(st.st_mode));
        CHECK(nlohmann::json::parse(read_file(m.state + "/site.state"))["serial"] == 2);
        m.audit_clean();
    }

    TEST_CASE("file:// URLs, --jitter, and bad option values") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        auto t0 = std::chrono::steady_clock::now();
        auto r = m.sync({"--jitter", "1"}, "file://" + m.pub);
        CHECK_MESSAGE(r.exit_status == 0, r.err);
        CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
        CHECK(snapshot(m.dest) == snapshot(m.src));
        CHECK(m.sync({"--jitter", "soon"}).exit_status == 2);
        CHECK(m.sync({}, "gopher://example.org/pub").exit_status == 2);
        auto nokey = verifier({"sync", "--from", m.pub, "--to", m.dest, "--keyring", m.dir / "missing.asc",
                               "--state", m.state});
        CHECK(nokey.exit_status == 5);
        CHECK(nokey.err.find("missing.asc") != std::string::npos);
    }

    TEST_CASE("two syncs started together: one applies, the other waits its turn or says busy") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        std::vector<std::string> argv = {SSYNC_VERIFIER_BIN, "sync", "--from", m.pub, "--to", m.dest,
                                         "--keyring", m.keyring, "--state", m.state, "--quiet"};
        pid_t a = spawn(argv), b = spawn(argv);
        int ea = wait_exit(a), eb = wait_exit(b);
        CHECK((ea == 0 || eb == 0));
        CHECK(((ea == 0 || ea == 7) && (eb == 0 || eb == 7)));
        CHECK(snapshot(m.dest) == snapshot(m.src));
        m.audit_clean();
    }

    TEST_CASE("progress and a summary on a terminal, nothing in cron") {
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        // script(1) gives the command a terminal.
        std::string command = std::string(SSYNC_VERIFIER_BIN) + " sync --from " + m.pub + " --to " + m.dest +
                              " --keyring " + m.keyring + " --state " + m.state + " --no-owner";
        auto r = run({"script", "-qec", command, "/dev/null"});
        CHECK_MESSAGE(r.exit_status == 0, r.out);
        CHECK(r.out.find("site: serial 0 -> 1: 10 added") != std::string::npos);
        auto again = run({"script", "-qec", command, "/dev/null"});
        CHECK(again.out.find("serial 1 is current; nothing to do") != std::string::npos);
    }
}


TEST_SUITE("e2e sync atomic tree") {
    TEST_CASE("--atomic-tree: updates land whole, and a SIGKILL leaves DEST entirely old or entirely new") {
        Mirror m;
        for (int i = 0; i < 600; ++i) write_file(m.src + "/many/f" + std::to_string(i), "v1 " + std::to_string(i));
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok({"--atomic-tree"});
        CHECK(snapshot(m.dest) == snapshot(m.src));
        m.audit_clean();
        struct stat before;
        REQUIRE(::stat((m.dest + "/docs/guide.txt").c_str(), &before) == 0);

        std::vector<std::string> argv = {SSYNC_VERIFIER_BIN, "sync", "--from", m.pub, "--to", m.dest, "--keyring",
                                         m.keyring, "--state", m.state, "--quiet", "--atomic-tree"};
        // A killed verifier cannot remove its private GnuPG home: keep those with the test.
        ScopedEnv tmpdir("TMPDIR", m.dir.path());
        Snapshot old_tree = snapshot(m.dest);
        int version = 1;
        for (int delay_ms : {0, 150, 300, 450, 600, 900}) {
            CAPTURE(delay_ms);
            ++version;
            for (int i = 0; i < 600; ++i)
                write_file(m.src + "/many/f" + std::to_string(i), "v" + std::to_string(version) + " " + std::to_string(i));
            ::chmod((m.src + "/bin/run").c_str(), version % 2 ? 0755 : 0700);  // metadata-only change
            REQUIRE(m.sign().exit_status == 0);
            Snapshot new_tree = snapshot(m.src);
            pid_t pid = spawn(argv);
            std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
            ::kill(pid, SIGKILL);
            wait_exit(pid);
            Snapshot now = snapshot(m.dest);
            CHECK((now == old_tree || now == new_tree));
            CHECK(run(argv).exit_status == 0);
            CHECK(snapshot(m.dest) == new_tree);
            CHECK_FALSE(exists(m.dir / ".dest.ssync-next"));
            old_tree = new_tree;
        }
        // Unchanged files were carried over by hard link, not copied or fetched again.
        struct stat after;
        REQUIRE(::stat((m.dest + "/docs/guide.txt").c_str(), &after) == 0);
        CHECK(after.st_ino == before.st_ino);
        m.audit_clean();
        // The lock still excludes a second sync after the swaps.
        UniqueFd lock(::open((m.dest + "/.ssync/lock").c_str(), O_RDWR));
        REQUIRE(::flock(lock.get(), LOCK_EX | LOCK_NB) == 0);
        CHECK(m.sync({"--atomic-tree"}).exit_status == 7);
    }

    TEST_CASE("--atomic-tree into a DEST given as a symlink swaps the directory it names, keeping the link") {
        // Regression: the swap happened beside the link, which became a real directory while
        // its old target kept the stale tree.
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        std::string real = m.dir / "real-dest";
        make_dirs(real);
        REQUIRE(::symlink(real.c_str(), m.dest.c_str()) == 0);
        m.sync_ok({"--atomic-tree"});
        write_file(m.src + "/index.html", "<h1>v2</h1>\n");
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok({"--atomic-tree"});
        struct stat st;
        REQUIRE(::lstat(m.dest.c_str(), &st) == 0);
        CHECK(S_ISLNK(st.st_mode));
        CHECK(snapshot(real) == snapshot(m.src));
        CHECK(read_file(real + "/index.html") == "<h1>v2</h1>\n");
    }

    TEST_CASE("--atomic-tree with --keep-extra is refused before anything changes") {
        // Regression: the combination exited 0 after swapping in a tree without DEST's extras.
        Mirror m;
        REQUIRE(m.sign().exit_status == 0);
        m.sync_ok();
        write_file(m.dest + "/mine.txt", "local\n");
        write_file(m.src + "/index.html", "<h1>v2</h1>\n");
        REQUIRE(m.sign().exit_status == 0);
        Snapshot before = snapshot(m.dest);
        auto r = m.sync({"--atomic-tree", "--keep-extra"});
        CHECK(r.exit_status == 2);
        CHECK(r.err.find("--keep-extra and --atomic-tree") != std::string::npos);
        CHECK(snapshot(m.dest) == before);
    }
}

}  // namespace ssync::test
