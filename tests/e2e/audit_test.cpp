// sign -> stock gpg --verify -> audit, and every way a tree or a release can be wrong.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "e2e.h"
#include "tree_snapshot.h"
#include "ssync/manifest.h"

namespace ssync::test {

void Published::make_sample_tree(const std::string& root) {
    write_file(root + "/index.html", "<h1>Welcome</h1>\n");
    write_file(root + "/docs/guide.txt", "Read me.\n");
    write_file(root + "/docs/deep/notes.md", "# notes\n");
    write_file(root + "/bin/run", "#!/bin/sh\necho run\n", 0755);
    write_file(root + "/big.bin", std::string(300000, 'z'));
    make_dirs(root + "/empty");
    REQUIRE(::symlink("index.html", (root + "/home.html").c_str()) == 0);
}

namespace {

nlohmann::json json_of(const ProcessResult& r) {
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    REQUIRE_FALSE(j.is_discarded());
    return j;
}

// Copies the source tree (preserving modes and symlinks) as a mirror would hold it.
std::string copy_tree(const Published& p) {
    std::string copy = p.dir / "copy";
    REQUIRE(run({"cp", "-a", p.src, copy}).exit_status == 0);
    return copy;
}

// Re-signs the current release's manifest bytes after `edit`, with gpg itself, in both the
// release directory and the top level, to craft releases ssync-signer would never make.
void resign(const Published& p, const std::function<void(Manifest&)>& edit, const std::string& key,
            const std::string& faked_time = {}, const std::string& sig_expire = {}) {
    std::string serial = read_file(p.pub + "/latest");
    serial.pop_back();
    std::string rel = p.pub + "/releases/" + serial;
    auto m = parse_manifest(read_file(rel + "/manifest.json"));
    REQUIRE(m.is_ok());
    edit(*m);
    std::string bytes = write_manifest(*m);
    write_file(rel + "/manifest.json", bytes);
    gpg_sign(key, rel + "/manifest.json", rel + "/manifest.json.asc", faked_time, sig_expire);
    write_file(p.pub + "/manifest.json", bytes);
    write_file(p.pub + "/manifest.json.asc", read_file(rel + "/manifest.json.asc"));
}

}  // namespace

TEST_SUITE("e2e audit") {
    TEST_CASE("sign, verify with stock gpg, audit clean") {
        Published p;
        auto s = p.sign();
        REQUIRE_MESSAGE(s.exit_status == 0, s.err);
        // Stock gpg with only the public key.
        TempDir home;
        REQUIRE(::chmod(home.path().c_str(), 0700) == 0);
        REQUIRE(run({"gpg", "--homedir", home.path(), "--batch", "--import", p.keyring}).exit_status == 0);
        auto g = run({"gpg", "--homedir", home.path(), "--batch", "--verify", p.pub + "/manifest.json.asc",
                      p.pub + "/manifest.json"});
        run({"gpgconf", "--homedir", home.path(), "--kill", "all"});
        CHECK_MESSAGE(g.exit_status == 0, g.err);
        CHECK(g.err.find("Good signature") != std::string::npos);

        auto a = p.audit(p.src);
        CHECK_MESSAGE(a.exit_status == 0, a.out << a.err);
        CHECK(a.out.find(": OK") != std::string::npos);
        auto j = p.audit(p.src, {"--json"});
        CHECK(j.exit_status == 0);
        auto doc = json_of(j);
        CHECK(doc["ok"] == true);
        CHECK(doc["serial"] == 1);
        CHECK(doc["signer"] == p.keys.plain_fpr);
        CHECK(doc["differences"].empty());
    }

    TEST_CASE("each kind of tampering is reported exactly, with exit status 1") {
        Published p;
        REQUIRE(p.sign().exit_status == 0);
        struct Case {
            const char* what;
            std::function<void(const std::string&)> tamper;
            std::string path, kind;
        };
        std::vector<Case> cases = {
            {"a byte", [](const std::string& t) {
                 std::string s = read_file(t + "/big.bin");
                 s[150000] = 'y';
                 write_file(t + "/big.bin", s);
             }, "big.bin", "content"},
            {"a mode", [](const std::string& t) { ::chmod((t + "/bin/run").c_str(), 0700); }, "bin/run", "mode"},
            {"an added file", [](const std::string& t) { write_file(t + "/docs/extra", "x"); }, "docs/extra", "extra"},
            {"a deleted file", [](const std::string& t) { ::unlink((t + "/docs/guide.txt").c_str()); }, "docs/guide.txt", "missing"},
            {"a file swapped for a symlink", [](const std::string& t) {
                 ::unlink((t + "/index.html").c_str());
                 REQUIRE(::symlink("/etc/passwd", (t + "/index.html").c_str()) == 0);
             }, "index.html", "type"},
            {"a symlink retargeted", [](const std::string& t) {
                 ::unlink((t + "/home.html").c_str());
                 REQUIRE(::symlink("docs/guide.txt", (t + "/home.html").c_str()) == 0);
             }, "home.html", "target"},
            {"a directory removed", [](const std::string& t) {
                 REQUIRE(run({"rm", "-r", t + "/docs"}).exit_status == 0);
             }, "docs", "missing"},
        };
        for (const Case& c : cases) {
            CAPTURE(c.what);
            std::string copy = copy_tree(p);
            c.tamper(copy);
            auto a = p.audit(copy, {"--json"});
            CHECK(a.exit_status == 1);
            auto doc = json_of(a);
            CHECK(doc["ok"] == false);
            REQUIRE(doc["differences"].size() == 1);
            CHECK(doc["differences"][0]["path"] == c.path);
            CHECK(doc["differences"][0]["kind"] == c.kind);
            auto human = p.audit(copy);
            CHECK(human.exit_status == 1);
            CHECK(human.out.find(c.kind) == 0);
            CHECK_MESSAGE(human.out.find(": 1 difference\n") != std::string::npos, human.out);
            REQUIRE(run({"rm", "-rf", copy}).exit_status == 0);
        }
    }

    TEST_CASE("an owner difference is reported, and --ignore-owner skips it") {
        if (::geteuid() != 0) return;  // only root can give a file away
        Published p;
        REQUIRE(p.sign().exit_status == 0);
        std::string copy = copy_tree(p);
        REQUIRE(::chown((copy + "/index.html").c_str(), 12345, 12345) == 0);
        auto a = p.audit(copy, {"--json"});
        CHECK(a.exit_status == 1);
        auto doc = json_of(a);
        REQUIRE(doc["differences"].size() == 1);
        CHECK(doc["differences"][0]["kind"] == "owner");
        CHECK(p.audit(copy, {"--ignore-owner"}).exit_status == 0);
    }

    TEST_CASE("a release signed by a key outside the keyring is refused with exit status 3") {
        Published p;
        REQUIRE(p.sign({}, p.keys.other_fpr).exit_status == 0);
        auto a = p.audit(p.src);
        CHECK(a.exit_status == 3);
        CHECK(a.err.find(p.keys.other_fpr.substr(24)) != std::string::npos);
        CHECK(a.out.empty());
    }

    TEST_CASE("expired key, revoked key and expired signature are refused with exit status 3") {
        Published p;
        REQUIRE(p.sign().exit_status == 0);
        // Signatures made in 2020, when the expired key was still valid.
        auto in_2020 = [](Manifest& m) {
            m.created = 1577880000;  // 2020-01-01T12:00:00Z
        };
        SUBCASE("expired key") {
            resign(p, in_2020, p.keys.expired_fpr, "20200101T120000");
            p.keyring = p.keys.pubkey("expired");
            auto a = p.audit(p.src);
            CHECK(a.exit_status == 3);
            CHECK(a.err.find("expired") != std::string::npos);
        }
        SUBCASE("revoked key") {
            resign(p, [](Manifest&) {}, p.keys.revoked_fpr);
            p.keyring = p.keys.pubkey("revoked");
            auto a = p.audit(p.src);
            CHECK(a.exit_status == 3);
            CHECK(a.err.find("revoked") != std::string::npos);
        }
        SUBCASE("expired signature") {
            resign(p, in_2020, p.keys.plain_fpr, "20200101T120000", "1d");
            auto a = p.audit(p.src);
            CHECK(a.exit_status == 3);
            CHECK(a.err.find("signature expired") != std::string::npos);
        }
    }

    TEST_CASE("a manifest past its expiry is refused with exit status 4 unless --allow-expired") {
        Published p;
        REQUIRE(p.sign({"--expires", "1s"}).exit_status == 0);
        ::sleep(2);
        auto a = p.audit(p.src);
        CHECK(a.exit_status == 4);
        CHECK(a.err.find("expired at") != std::string::npos);
        CHECK(p.audit(p.src, {"--allow-expired"}).exit_status == 0);
    }

    TEST_CASE("a manifest from the future is reported as clock skew") {
        Published p;
        REQUIRE(p.sign().exit_status == 0);
        resign(p, [](Manifest& m) {
            m.created += 3600;
            m.expires += 3600;
        }, p.keys.plain_fpr);
        auto a = p.audit(p.src);
        CHECK(a.exit_status == 4);
        CHECK(a.err.find("clock skew") != std::string::npos);
    }

    TEST_CASE("a tampered manifest is refused with exit status 3, and --name must match") {
        Published p;
        REQUIRE(p.sign().exit_status == 0);
        std::string rel = p.pub + "/releases/1/manifest.json";
        std::string bytes = read_file(rel);
        auto pos = bytes.find("\"0755\"");
        REQUIRE(pos != std::string::npos);
        bytes.replace(pos, 6, "\"4755\"");
        write_file(rel, bytes);
        auto a = p.audit(p.src);
        CHECK(a.exit_status == 3);
        CHECK(a.err.find("bad signature") != std::string::npos);

        Published q;
        REQUIRE(q.sign().exit_status == 0);
        auto named = q.audit(q.src, {"--name", "other"});
        CHECK(named.exit_status == 4);
        CHECK(named.err.find("expected \"other\"") != std::string::npos);
        CHECK(q.audit(q.src, {"--name", "site"}).exit_status == 0);
    }

    TEST_CASE("a `latest` that disagrees with the signed serial is refused") {
        Published p;
        REQUIRE(p.sign().exit_status == 0);
        REQUIRE(p.sign().exit_status == 0);
        write_file(p.pub + "/latest", "1\n");
        // Release 1 is genuine; the pointer is only a hint, so this is a valid (older) release.
        CHECK(p.audit(p.src).exit_status == 0);
        write_file(p.pub + "/releases/1/manifest.json", read_file(p.pub + "/releases/2/manifest.json"));
        write_file(p.pub + "/releases/1/manifest.json.asc", read_file(p.pub + "/releases/2/manifest.json.asc"));
        auto a = p.audit(p.src);
        CHECK(a.exit_status == 4);
        CHECK(a.err.find("announces serial 1") != std::string::npos);
    }

    TEST_CASE("--manifest and --signature instead of --from") {
        Published p;
        REQUIRE(p.sign().exit_status == 0);
        auto a = verifier({"audit", "--manifest", p.pub + "/manifest.json", "--signature",
                           p.pub + "/manifest.json.asc", "--keyring", p.keyring, p.src});
        CHECK_MESSAGE(a.exit_status == 0, a.err);
        auto missing = verifier({"audit", "--manifest", p.pub + "/manifest.json", "--keyring", p.keyring, p.src});
        CHECK(missing.exit_status == 2);
    }

    TEST_CASE("the manifest size limit") {
        Published p;
        REQUIRE(p.sign().exit_status == 0);
        auto a = p.audit(p.src, {"--max-manifest-size", "100"});
        CHECK(a.exit_status == 4);
        CHECK(a.err.find("larger than") != std::string::npos);
    }

    TEST_CASE("signing with a passphrase file") {
        Published p;
        auto s = p.sign({"--passphrase-file", p.keys.passphrase_file}, p.keys.passphrase_fpr);
        REQUIRE_MESSAGE(s.exit_status == 0, s.err);
        p.keyring = p.keys.pubkey("passphrase");
        CHECK(p.audit(p.src).exit_status == 0);
        write_file(p.dir / "wrong", "not the passphrase\n");
        auto bad = p.sign({"--passphrase-file", p.dir / "wrong"}, p.keys.passphrase_fpr);
        CHECK(bad.exit_status == 3);
        CHECK(read_file(p.pub + "/latest") == "1\n");
    }
}

TEST_SUITE("e2e check show export") {
    TEST_CASE("check verifies single downloads") {
        Published p;
        REQUIRE(p.sign().exit_status == 0);
        std::string dl = p.dir / "downloads";
        make_dirs(dl);
        write_file(dl + "/guide.txt", "Read me.\n");
        write_file(dl + "/notes.md", "# tampered\n");
        auto ok = verifier({"check", "--from", p.pub, "--keyring", p.keyring, dl + "/guide.txt"});
        CHECK_MESSAGE(ok.exit_status == 0, ok.out << ok.err);
        CHECK(ok.out.find("OK (docs/guide.txt)") != std::string::npos);
        auto bad = verifier({"check", "--from", p.pub, "--keyring", p.keyring, "--json", dl + "/guide.txt",
                             dl + "/notes.md"});
        CHECK(bad.exit_status == 1);
        auto doc = json_of(bad);
        CHECK(doc["files"][0]["ok"] == true);
        CHECK(doc["files"][1]["ok"] == false);
        auto based = verifier({"check", "--from", p.pub, "--keyring", p.keyring, "--base", p.src,
                               p.src + "/docs/deep/notes.md"});
        CHECK(based.exit_status == 0);
        // Other spellings of the same places (a regression: --base was matched as text).
        auto spelled = verifier({"check", "--from", p.pub, "--keyring", p.keyring, "--base", p.src + "/",
                                 p.src + "/./docs//deep/notes.md"});
        CHECK_MESSAGE(spelled.exit_status == 0, spelled.out << spelled.err);
        auto unknown = verifier({"check", "--from", p.pub, "--keyring", p.keyring, p.src + "/../src/nothing"});
        CHECK(unknown.exit_status == 1);
        // A FIFO under a manifest file's name is refused by type at once (it was opened
        // blocking, waiting for a writer that never came); a longer file by its size.
        std::string other = p.dir / "other";
        make_dirs(other);
        REQUIRE(::mkfifo((other + "/guide.txt").c_str(), 0644) == 0);
        write_file(other + "/notes.md", "# Notes, with more bytes than were signed\n");
        auto fifo = verifier({"check", "--from", p.pub, "--keyring", p.keyring, other + "/guide.txt",
                              other + "/notes.md"});
        CHECK(fifo.exit_status == 1);
        CHECK_MESSAGE(fifo.out.find("guide.txt: FAILED: is a FIFO, not a regular file") != std::string::npos, fifo.out);
        CHECK_MESSAGE(fifo.out.find("notes.md: FAILED: size ") != std::string::npos, fifo.out);
    }

    TEST_CASE("show prints the release") {
        Published p;
        REQUIRE(p.sign().exit_status == 0);
        auto s = verifier({"show", "--from", p.pub, "--keyring", p.keyring, "--json"});
        REQUIRE(s.exit_status == 0);
        auto doc = json_of(s);
        CHECK(doc["name"] == "site");
        CHECK(doc["serial"] == 1);
        CHECK(doc["files"] == 5);
        CHECK(doc["dirs"] == 4);
        CHECK(doc["symlinks"] == 1);
        CHECK(doc["total_bytes"] == 300000 + 17 + 9 + 8 + 19);
        CHECK(doc["signer"] == p.keys.plain_fpr);
        auto human = verifier({"show", "--from", p.pub, "--keyring", p.keyring, "--entries"});
        CHECK(human.out.find("serial:    1") != std::string::npos);
        CHECK(human.out.find("symlink 0777") != std::string::npos);
    }

    TEST_CASE("export sha256sums is accepted by sha256sum -c, and catches tampering") {
        Published p;
        write_file(p.src + "/odd\\name", "backslash");
        REQUIRE(p.sign().exit_status == 0);
        auto e = verifier({"export", "--from", p.pub, "--keyring", p.keyring, "--format", "sha256sums"});
        REQUIRE(e.exit_status == 0);
        write_file(p.dir / "SHA256SUMS", e.out);
        auto c = run({"sh", "-c", "cd \"$1\" && sha256sum -c \"$2\"", "sh", p.src, p.dir / "SHA256SUMS"});
        CHECK_MESSAGE(c.exit_status == 0, c.out << c.err);
        write_file(p.src + "/index.html", "changed");
        auto c2 = run({"sh", "-c", "cd \"$1\" && sha256sum -c \"$2\"", "sh", p.src, p.dir / "SHA256SUMS"});
        CHECK(c2.exit_status != 0);
        // An untrusted release is never exported.
        auto untrusted = verifier({"export", "--from", p.pub, "--keyring", p.keys.pubkey("other")});
        CHECK(untrusted.exit_status == 3);
        CHECK(untrusted.out.empty());
    }
}

TEST_SUITE("e2e cli") {
    TEST_CASE("every command has --help, usage errors exit 2 with one line") {
        for (const auto& [bin, verb] : std::vector<std::pair<std::string, std::string>>{
                 {SSYNC_SIGNER_BIN, "sign"}, {SSYNC_SIGNER_BIN, "gc"}, {SSYNC_VERIFIER_BIN, "audit"}, {SSYNC_VERIFIER_BIN, "check"},
                 {SSYNC_VERIFIER_BIN, "show"}, {SSYNC_VERIFIER_BIN, "export"}}) {
            CAPTURE(verb);
            auto h = run({bin, verb, "--help"});
            CHECK(h.exit_status == 0);
            CHECK(h.out.find("Usage:") == 0);
            auto bad = run({bin, verb, "--no-such-option"});
            CHECK(bad.exit_status == 2);
            CHECK(std::count(bad.err.begin(), bad.err.end(), '\n') == 1);
        }
        auto typo = verifier({"audti"});
        CHECK(typo.exit_status == 2);
        CHECK(typo.err.find("did you mean 'audit'?") != std::string::npos);
        CHECK(run({SSYNC_SIGNER_BIN, "--help"}).exit_status == 0);
    }

    TEST_CASE("a publication that is, holds or lies inside the source tree is refused, creating nothing") {
        Published p;
        Snapshot before = snapshot(p.dir.path());
        for (const std::string& out : {p.src, p.src + "/pub", p.src + "/docs", p.dir.path()}) {
            CAPTURE(out);
            auto r = signer({"sign", "--root", p.src, "--out", out, "--key", p.keys.plain_fpr, "--gnupghome",
                             p.keys.home, "--name", "site", "--quiet"});
            CHECK(r.exit_status == 2);
            CHECK(r.err.find("the publication cannot") != std::string::npos);
        }
        CHECK(snapshot(p.dir.path()) == before);
        REQUIRE(p.sign().exit_status == 0);  // a sibling is fine
    }

    TEST_CASE("sign --json: counts, and seconds per phase") {
        Published p;
        auto first = p.sign({"--json"});
        REQUIRE(first.exit_status == 0);
        auto j = json_of(first);
        CHECK(j["ok"] == true);  // as every --json answer
        CHECK(j["serial"] == 1);
        CHECK(j["files_hashed"] == j["files"]);
        CHECK(j["objects_stored"].get<int>() > 0);
        for (const char* phase : {"scan", "hash", "sign", "write"}) {
            CAPTURE(phase);
            REQUIRE(j["phases"][phase].is_number());
            CHECK(j["phases"][phase].get<double>() >= 0);
            CHECK(j["phases"][phase].get<double>() < 60);
        }
        // Signing runs gpg: it cannot take no time at all.
        CHECK(j["phases"]["sign"].get<double>() > 0);
        CHECK(j["unchanged"] == false);
        auto again = json_of(p.sign({"--json"}));
        CHECK(again["serial"] == 2);
        CHECK(again["files_hashed"] == 0);
        CHECK(again["files_cached"] == j["files"]);
        CHECK(again["bytes"] == j["bytes"]);
        // Nothing changed: made from release 1's entries, signed beside the walk, and as good.
        CHECK(again["unchanged"] == true);
        auto a = p.audit(p.src, {"--json"});
        CHECK_MESSAGE(a.exit_status == 0, a.out << a.err);
        CHECK(json_of(a)["serial"] == 2);
    }

    TEST_CASE("a wrong --key fails the run and publishes nothing") {
        // The key is looked up while the tree is hashed (hashing stops when the lookup fails),
        // so into an existing publication a few objects may be stored; they are
        // content-addressed and unreferenced, and a later run with the right key uses them.
        Published p;
        auto s = p.sign({}, "0000000000000000000000000000000000000000");
        CHECK(s.exit_status == 3);
        CHECK(s.err.find("no such secret key") != std::string::npos);
        // A first run made the publication directory, so it removes it again: no skeleton
        // of a publication is left for a web server to serve.
        CHECK_FALSE(exists(p.pub));
        REQUIRE(p.sign().exit_status == 0);

        // An existing publication is not removed: a failed re-sign leaves it as it was (apart
        // from unreferenced objects), still serving release 1.
        write_file(p.src + "/index.html", "v2");
        std::string manifest = read_file(p.pub + "/manifest.json");
        auto again = p.sign({}, "0000000000000000000000000000000000000000");
        CHECK(again.exit_status == 3);
        CHECK(read_file(p.pub + "/latest") == "1\n");
        CHECK(read_file(p.pub + "/manifest.json") == manifest);
        CHECK_FALSE(exists(p.pub + "/releases/2"));
        auto show = verifier({"show", "--from", p.pub, "--keyring", p.keyring});
        CHECK_MESSAGE(show.exit_status == 0, show.err);  // still verifies
    }

    TEST_CASE("a special file in the source is refused by name unless --skip-special") {
        Published p;
        REQUIRE(::mkfifo((p.src + "/docs/fifo").c_str(), 0644) == 0);
        auto s = p.sign();
        CHECK(s.exit_status == 5);
        CHECK(s.err.find("docs/fifo: is a FIFO") != std::string::npos);
        CHECK_FALSE(exists(p.pub + "/latest"));
        CHECK(p.sign({"--skip-special"}).exit_status == 0);
    }
}

}  // namespace ssync::test
