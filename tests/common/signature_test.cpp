// Tests for common/signature.cpp: one case per pitfall in
// shared/notes/openpgp-verification.md and per trust rule of SignatureVerifier::verify.
#include "ssync/signature.h"

#include <dirent.h>
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <sstream>
#include <vector>

#include "ssync/fs.h"
#include "testutil.h"

namespace ssync::test {
namespace {

const std::string kData = "{\"format\": 1, \"entries\": []}\n";

// A fresh directory with the data to sign in it, and helpers around the test keys.
struct Fixture {
    TempDir tmp;
    const TestKeys& keys = test_keys();

    Fixture() { write_file(tmp / "data", kData); }

    // A detached signature over `data` made by the gpg program with `fpr`.
    std::string gpg_signature(const std::string& fpr, const std::string& faked_time = {},
                              const std::string& sig_expire = {}, const std::string& data = kData) {
        write_file(tmp / "to-sign", data);
        ::unlink((tmp / "sig.asc").c_str());
        gpg_sign(fpr, tmp / "to-sign", tmp / "sig.asc", faked_time, sig_expire);
        return read_file(tmp / "sig.asc");
    }

    // A verifier pinned to the public keys of `names` (one keyring file holding all of them).
    std::unique_ptr<SignatureVerifier> verifier(const std::vector<std::string>& names) {
        std::string keyring;
        for (const auto& n : names) keyring += read_file(keys.pubkey(n));
        write_file(tmp / "keyring.asc", keyring);
        auto v = SignatureVerifier::create(tmp / "keyring.asc");
        REQUIRE_MESSAGE(v.is_ok(), v.status().message());
        return std::move(v).value();
    }

    std::unique_ptr<SignatureVerifier> verifier(const std::string& name) {
        return verifier(std::vector<std::string>{name});
    }

    // A GnuPG home for the stock gpg program holding the public keys of `names`, removed with
    // the fixture. Under /tmp whatever $TMPDIR says: gpg-agent's socket names must fit.
    std::string gpg_home_with(const std::vector<std::string>& names) {
        homes.push_back(std::make_unique<ShortHome>());
        const std::string& dir = homes.back()->path;
        for (const auto& n : names) {
            ProcessResult r = run({"gpg", "--homedir", dir, "--batch", "--import", keys.pubkey(n)});
            REQUIRE_MESSAGE(r.exit_status == 0, r.err);
        }
        return dir;
    }

    struct ShortHome {
        std::string path;
        ShortHome() {
            char tmpl[] = "/tmp/ssync-g-XXXXXX";
            REQUIRE(mkdtemp(tmpl));
            path = tmpl;
        }
        ~ShortHome() {
            (void)run_process({"gpgconf", "--homedir", path, "--kill", "all"});
            (void)remove_tree(system_fs(), AT_FDCWD, path, path);
        }
    };
    std::vector<std::unique_ptr<ShortHome>> homes;
};

void require_refused(const Result<VerifiedSignature>& r, const std::string& reason) {
    REQUIRE_FALSE(r.is_ok());
    CHECK_MESSAGE(r.status().code() == Code::untrusted, r.status().message());
    CHECK_MESSAGE(r.status().message().find(reason) != std::string::npos, r.status().message());
    CHECK(r.status().message().find('\n') == std::string::npos);
}


// Whether any process has `text` in its command line (a gpg-agent names its --homedir there).
bool process_mentions(const std::string& text) {
    DIR* proc = opendir("/proc");
    if (!proc) return false;
    bool found = false;
    while (struct dirent* de = readdir(proc)) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        std::string cmdline;
        if (FILE* f = fopen(("/proc/" + std::string(de->d_name) + "/cmdline").c_str(), "r")) {
            char buf[4096];
            size_t got = fread(buf, 1, sizeof buf, f);
            cmdline.assign(buf, got);
            fclose(f);
        }
        if (cmdline.find(text) != std::string::npos) found = true;
    }
    closedir(proc);
    return found;
}

// Names, sizes and modification times of the files in dir, one per line.
std::string listing(const std::string& dir) {
    std::vector<std::string> lines;
    DIR* d = opendir(dir.c_str());
    REQUIRE(d);
    while (struct dirent* de = readdir(d)) {
        if (std::string(de->d_name) == "..") continue;
        struct stat st;
        if (::lstat((dir + "/" + de->d_name).c_str(), &st) != 0) continue;
        lines.push_back(std::string(de->d_name) + " " + std::to_string(st.st_size) + " " +
                        std::to_string(st.st_mtim.tv_sec) + "." +
                        std::to_string(st.st_mtim.tv_nsec));
    }
    closedir(d);
    std::sort(lines.begin(), lines.end());
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
}

std::string dearmor(const std::string& armored, const TempDir& tmp, const std::string& name) {
    write_file(tmp / (name + ".asc"), armored);
    ProcessResult r = run({"gpg", "--batch", "--yes", "--dearmor", "-o", tmp / (name + ".bin"),
                           tmp / (name + ".asc")});
    REQUIRE_MESSAGE(r.exit_status == 0, r.err);
    return read_file(tmp / (name + ".bin"));
}

}  // namespace

TEST_SUITE("SignatureVerifier") {
    TEST_CASE("good signature by a pinned key is accepted and names the key") {
        Fixture f;
        auto v = f.verifier("plain");
        REQUIRE(v->pinned_fingerprints() == std::vector<std::string>{f.keys.plain_fpr});
        auto r = v->verify(kData, f.gpg_signature(f.keys.plain_fpr));
        REQUIRE_MESSAGE(r.is_ok(), r.status().message());
        CHECK(r->primary_fpr == f.keys.plain_fpr);
        CHECK(r->signing_fpr == f.keys.plain_fpr);
        CHECK(r->created > 1577836800);
    }

    TEST_CASE("signature by a subkey is accepted and reported with the primary fingerprint") {
        Fixture f;
        auto v = f.verifier("subkey");
        auto r = v->verify(kData, f.gpg_signature(f.keys.subkey_fpr));
        REQUIRE_MESSAGE(r.is_ok(), r.status().message());
        CHECK(r->primary_fpr == f.keys.subkey_fpr);
        CHECK(r->signing_fpr != f.keys.subkey_fpr);
        CHECK(r->signing_fpr.size() == 40);
    }

    TEST_CASE("tampered data is a bad signature") {
        Fixture f;
        auto v = f.verifier("plain");
        std::string sig = f.gpg_signature(f.keys.plain_fpr);
        std::string tampered = kData;
        tampered[3] ^= 1;
        require_refused(v->verify(tampered, sig), "bad signature");
        require_refused(v->verify(kData + " ", sig), "bad signature");
    }

    TEST_CASE("signature by a key outside the keyring is refused") {
        Fixture f;
        auto v = f.verifier("plain");
        require_refused(v->verify(kData, f.gpg_signature(f.keys.other_fpr)),
                        "signed by unknown key");
    }

    TEST_CASE("any-key-in-keyring: a key in the user's own GnuPG home is not trusted") {
        Fixture f;
        // The user's home trusts `other` ultimately; stock gpg there accepts its signature.
        std::string user_home = f.gpg_home_with({"other"});
        run({"gpg", "--homedir", user_home, "--batch", "--import-ownertrust"},
            f.keys.other_fpr + ":6:\n");
        std::string sig = f.gpg_signature(f.keys.other_fpr);
        write_file(f.tmp / "sig-other.asc", sig);
        ProcessResult stock = run({"gpg", "--homedir", user_home, "--batch", "--verify",
                                   f.tmp / "sig-other.asc", f.tmp / "data"});
        REQUIRE_MESSAGE(stock.exit_status == 0, stock.err);

        std::string plain_sig = f.gpg_signature(f.keys.plain_fpr);
        const std::string before = listing(user_home);

        make_dirs(f.tmp / "home");
        REQUIRE(::symlink(user_home.c_str(), (f.tmp / "home/.gnupg").c_str()) == 0);
        ScopedEnv home("HOME", f.tmp / "home");
        ScopedEnv gnupghome("GNUPGHOME", user_home);
        auto v = f.verifier("plain");
        auto r = v->verify(kData, sig);
        require_refused(r, "signed by unknown key " + f.keys.other_fpr);
        CHECK(v->verify(kData, plain_sig).is_ok());
        v.reset();
        // Nothing in the user's home was read into the verifier, nor written.
        CHECK(listing(user_home) == before);
    }

    TEST_CASE("sign_detached without a home uses GnuPG's default, $GNUPGHOME") {
        Fixture f;
        ScopedEnv gnupghome("GNUPGHOME", f.keys.home);
        auto sig = sign_detached(kData, {f.keys.plain_fpr, "", ""});
        REQUIRE_MESSAGE(sig.is_ok(), sig.status().message());
        CHECK(f.verifier("plain")->verify(kData, *sig).is_ok());
    }

    // ssync-signer names its home in GNUPGHOME too, so that no context is bound to it on its own
    // (new_context): that shortcut must be taken only when both name the same home.
    TEST_CASE("sign_detached with a home that GNUPGHOME also names signs from it") {
        Fixture f;
        ScopedEnv gnupghome("GNUPGHOME", f.keys.home);
        auto sig = sign_detached(kData, {f.keys.plain_fpr, f.keys.home, ""});
        REQUIRE_MESSAGE(sig.is_ok(), sig.status().message());
        CHECK(f.verifier("plain")->verify(kData, *sig).is_ok());
    }

    TEST_CASE("sign_detached uses its home, not another one GNUPGHOME names") {
        Fixture f;
        // GNUPGHOME names a home without the secret key: the key is found all the same.
        std::string elsewhere = f.gpg_home_with({"plain"});
        ScopedEnv gnupghome("GNUPGHOME", elsewhere);
        auto sig = sign_detached(kData, {f.keys.plain_fpr, f.keys.home, ""});
        REQUIRE_MESSAGE(sig.is_ok(), sig.status().message());
        CHECK(f.verifier("plain")->verify(kData, *sig).is_ok());
        // And the other way round: the home holding the key in GNUPGHOME, the option naming the
        // one without it, is refused for want of the secret key.
        ScopedEnv swapped("GNUPGHOME", f.keys.home);
        auto refused = sign_detached(kData, {f.keys.plain_fpr, elsewhere, ""});
        REQUIRE_FALSE(refused.is_ok());
        CHECK(refused.status().message().find("no such secret key") != std::string::npos);
    }

    TEST_CASE("a signature that carries its own key (--include-key-block) is still refused") {
        Fixture f;
        ProcessResult r = run({"gpg", "--homedir", f.keys.home, "--batch", "--yes", "--armor",
                               "--local-user", f.keys.other_fpr, "--include-key-block",
                               "--detach-sign", "-o", f.tmp / "sig.asc", f.tmp / "data"});
        REQUIRE_MESSAGE(r.exit_status == 0, r.err);
        std::string sig = read_file(f.tmp / "sig.asc");
        // The key really is embedded: gpg --list-packets shows the key-block subpacket.
        ProcessResult packets = run({"gpg", "--batch", "--list-packets", f.tmp / "sig.asc"});
        REQUIRE(packets.out.find("key-block") != std::string::npos);

        auto v = f.verifier("plain");
        require_refused(v->verify(kData, sig), "signed by unknown key");
        require_refused(v->verify(kData, sig), "signed by unknown key");
        CHECK(v->pinned_fingerprints() == std::vector<std::string>{f.keys.plain_fpr});
        // gpg did not import the embedded key into the private home either.
        ProcessResult listed =
            run({"gpg", "--homedir", v->home(), "--batch", "--list-keys", f.keys.other_fpr});
        CHECK(listed.exit_status != 0);
    }

    TEST_CASE("signature by an expired key is refused") {
        Fixture f;
        auto v = f.verifier("expired");
        // Made while the key was still valid (it lived for one day from 2020-01-01).
        require_refused(v->verify(kData, f.gpg_signature(f.keys.expired_fpr, "20200101T120000")),
                        "key " + f.keys.expired_fpr + " expired");
    }

    TEST_CASE("signature by a revoked key is refused, even one made before the revocation") {
        Fixture f;
        auto v = f.verifier("revoked");
        require_refused(v->verify(kData, f.gpg_signature(f.keys.revoked_fpr, "20240101T000000")),
                        "key " + f.keys.revoked_fpr + " revoked");
        require_refused(v->verify(kData, f.gpg_signature(f.keys.revoked_fpr)), "revoked");
    }

    TEST_CASE("an expired signature is refused") {
        Fixture f;
        auto v = f.verifier("plain");
        require_refused(
            v->verify(kData, f.gpg_signature(f.keys.plain_fpr, "20240101T000000", "1d")),
            "signature expired");
        // The same expiry, not yet reached, is fine.
        CHECK(v->verify(kData, f.gpg_signature(f.keys.plain_fpr, {}, "1d")).is_ok());
    }

    TEST_CASE("no-error is not a good signature: empty or garbage signatures are refused") {
        Fixture f;
        auto v = f.verifier("plain");
        require_refused(v->verify(kData, ""), "no signature");
        require_refused(v->verify(kData, "this is not a signature\n"), "");
        require_refused(v->verify(kData, std::string(1000, '\x88')), "");
        // Valid OpenPGP, but a key and not a signature.
        require_refused(v->verify(kData, read_file(f.keys.pubkey("plain"))), "");
        // An armoured block with nothing inside.
        require_refused(
            v->verify(kData,
                      "-----BEGIN PGP SIGNATURE-----\n\n=twTO\n-----END PGP SIGNATURE-----\n"),
            "");
    }

    TEST_CASE("every signature is examined: one forged signature among good ones is refused") {
        Fixture f;
        auto v = f.verifier(std::vector<std::string>{"plain", "other"});
        std::string good = dearmor(f.gpg_signature(f.keys.plain_fpr), f.tmp, "good");
        std::string forged =
            dearmor(f.gpg_signature(f.keys.other_fpr, {}, {}, "something else\n"), f.tmp, "forged");
        require_refused(v->verify(kData, good + forged), "bad signature");
        require_refused(v->verify(kData, forged + good), "bad signature");
        auto both = v->verify(kData, good + dearmor(f.gpg_signature(f.keys.other_fpr), f.tmp, "o"));
        CHECK_MESSAGE(both.is_ok(), both.status().message());
    }

    TEST_CASE("a good pinned signature beside one by an unknown key is accepted") {
        Fixture f;
        auto v = f.verifier("plain");
        std::string unknown = dearmor(f.gpg_signature(f.keys.other_fpr), f.tmp, "unknown");
        std::string good = dearmor(f.gpg_signature(f.keys.plain_fpr), f.tmp, "good");
        for (const std::string& sig : {unknown + good, good + unknown}) {
            auto r = v->verify(kData, sig);
            REQUIRE_MESSAGE(r.is_ok(), r.status().message());
            CHECK(r->primary_fpr == f.keys.plain_fpr);
        }
        require_refused(v->verify(kData, unknown + unknown), "signed by unknown key");
    }

    TEST_CASE("a keyring with several keys pins each of them") {
        Fixture f;
        auto v = f.verifier(std::vector<std::string>{"plain", "subkey"});
        auto pinned = v->pinned_fingerprints();
        std::sort(pinned.begin(), pinned.end());
        std::vector<std::string> want = {f.keys.plain_fpr, f.keys.subkey_fpr};
        std::sort(want.begin(), want.end());
        CHECK(pinned == want);
        CHECK(v->verify(kData, f.gpg_signature(f.keys.plain_fpr)).is_ok());
        CHECK(v->verify(kData, f.gpg_signature(f.keys.subkey_fpr)).is_ok());
        require_refused(v->verify(kData, f.gpg_signature(f.keys.other_fpr)), "unknown key");
    }

    TEST_CASE("a keyring file without a key is an error naming the file") {
        Fixture f;
        write_file(f.tmp / "empty.asc", "");
        auto r = SignatureVerifier::create(f.tmp / "empty.asc");
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == Code::untrusted);
        CHECK(r.status().message().find("empty.asc") != std::string::npos);

        write_file(f.tmp / "junk.asc", "not a key at all\n");
        r = SignatureVerifier::create(f.tmp / "junk.asc");
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == Code::untrusted);
        CHECK(r.status().message().find("junk.asc") != std::string::npos);

        r = SignatureVerifier::create(f.tmp / "missing.asc");
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == Code::io);
        CHECK(r.status().message().find("missing.asc") != std::string::npos);
    }

    TEST_CASE("the private home never uses keyboxd and never fetches or imports keys") {
        Fixture f;
        auto v = f.verifier("plain");
        REQUIRE(exists(v->home() + "/common.conf"));
        CHECK(read_file(v->home() + "/common.conf").find("use-keyboxd\n") == std::string::npos);
        CHECK(!exists(v->home() + "/public-keys.d"));  // keyboxd's store
        CHECK(exists(v->home() + "/pubring.kbx"));
        std::string conf = read_file(v->home() + "/gpg.conf");
        CHECK(conf.find("no-auto-key-retrieve\n") != std::string::npos);
        CHECK(conf.find("no-auto-key-import\n") != std::string::npos);
        // gpg itself accepts every option written there.
        ProcessResult r = run({"gpg", "--homedir", v->home(), "--batch", "--gpgconf-test"});
        CHECK_MESSAGE(r.exit_status == 0, r.err);
    }

    // Regression: a verifier killed before its destructor ran (sync under SIGKILL) left a
    // gpg-agent running in its home, one more for every such kill.
    TEST_CASE("importing and verifying start no gpg-agent") {
        Fixture f;
        auto v = f.verifier("plain");
        CHECK(read_file(v->home() + "/gpg.conf").find("no-autostart\n") != std::string::npos);
        CHECK(v->verify(kData, f.gpg_signature(f.keys.plain_fpr)).is_ok());
        CHECK_FALSE(process_mentions(v->home()));
        CHECK_FALSE(exists(v->home() + "/S.gpg-agent"));
    }

    TEST_CASE("the private home is short, private, and gone with its agent after destruction") {
        Fixture f;
        auto v = f.verifier("plain");
        const std::string home = v->home();
        CHECK(home.find("/ssync-") != std::string::npos);
        CHECK(home.size() + sizeof("/S.gpg-agent.browser") <= 108);
        struct stat st;
        REQUIRE(::stat(home.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0700);
        CHECK(v->verify(kData, f.gpg_signature(f.keys.plain_fpr)).is_ok());
        // Make sure an agent runs in the home, as a passphrase prompt or a secret key would start.
        ProcessResult r = run({"gpg-connect-agent", "--homedir", home, "/bye"});
        REQUIRE_MESSAGE(r.exit_status == 0, r.err);
        REQUIRE(process_mentions(home));
        v.reset();
        CHECK_FALSE(exists(home));
        bool agent_left = true;
        for (int i = 0; i < 50 && agent_left; ++i) {
            agent_left = process_mentions(home);
            if (agent_left) ::usleep(100 * 1000);
        }
        CHECK_FALSE(agent_left);
    }

    TEST_CASE("the private home goes in a short absolute $TMPDIR, else in /tmp") {
        Fixture f;
        Fixture::ShortHome short_dir;  // a short directory under /tmp
        auto home_with = [&](const std::string& tmpdir) {
            ScopedEnv env("TMPDIR", tmpdir);
            if (tmpdir.empty()) ::unsetenv("TMPDIR");
            auto v = f.verifier("plain");
            return v->home();
        };
        std::string in_tmpdir = home_with(short_dir.path);
        std::string too_long = home_with("/" + std::string(70, 'x'));
        std::string relative = home_with("relative/dir");
        std::string unset = home_with("");
        CHECK(in_tmpdir.rfind(short_dir.path + "/ssync-", 0) == 0);
        CHECK(too_long.rfind("/tmp/ssync-", 0) == 0);
        CHECK(relative.rfind("/tmp/ssync-", 0) == 0);
        CHECK(unset.rfind("/tmp/ssync-", 0) == 0);
        // Each was removed with its verifier.
        for (const std::string& h : {in_tmpdir, too_long, relative, unset}) CHECK_FALSE(exists(h));
    }

    TEST_CASE("verifiers are independent: each pins only its own keyring") {
        Fixture f;
        auto plain = f.verifier("plain");
        auto other = f.verifier("other");
        CHECK(plain->home() != other->home());
        std::string sig = f.gpg_signature(f.keys.other_fpr);
        CHECK(other->verify(kData, sig).is_ok());
        require_refused(plain->verify(kData, sig), "unknown key");
    }

    TEST_CASE("sign_detached makes a signature that stock gpg verifies with only the public key") {
        Fixture f;
        SigningOptions options;
        options.key = f.keys.plain_fpr;
        options.gnupg_home = f.keys.home;
        auto sig = sign_detached(kData, options);
        REQUIRE_MESSAGE(sig.is_ok(), sig.status().message());
        CHECK(sig->rfind("-----BEGIN PGP SIGNATURE-----", 0) == 0);

        std::string home = f.gpg_home_with({"plain"});
        write_file(f.tmp / "data.asc", *sig);
        ProcessResult r = run({"gpg", "--homedir", home, "--batch", "--status-fd", "1", "--verify",
                               f.tmp / "data.asc", f.tmp / "data"});
        CHECK_MESSAGE(r.exit_status == 0, r.err);
        CHECK(r.out.find("[GNUPG:] VALIDSIG " + f.keys.plain_fpr) != std::string::npos);

        auto v = f.verifier("plain");
        auto verified = v->verify(kData, *sig);
        REQUIRE_MESSAGE(verified.is_ok(), verified.status().message());
        CHECK(verified->primary_fpr == f.keys.plain_fpr);
        require_refused(v->verify(kData + "x", *sig), "bad signature");
    }

    TEST_CASE("sign_detached with a subkey key signs with the subkey") {
        Fixture f;
        auto sig = sign_detached(kData, {f.keys.subkey_fpr, f.keys.home, ""});
        REQUIRE_MESSAGE(sig.is_ok(), sig.status().message());
        auto r = f.verifier("subkey")->verify(kData, *sig);
        REQUIRE_MESSAGE(r.is_ok(), r.status().message());
        CHECK(r->primary_fpr == f.keys.subkey_fpr);
        CHECK(r->signing_fpr != f.keys.subkey_fpr);
    }

    TEST_CASE("sign_detached with a passphrase file") {
        Fixture f;
        SigningOptions options{f.keys.passphrase_fpr, f.keys.home, f.keys.passphrase_file};
        auto sig = sign_detached(kData, options);
        REQUIRE_MESSAGE(sig.is_ok(), sig.status().message());
        CHECK(f.verifier("passphrase")->verify(kData, *sig).is_ok());

        // Only the first line counts.
        write_file(f.tmp / "pass-lines", read_file(f.keys.passphrase_file) + "second line\n");
        options.passphrase_file = f.tmp / "pass-lines";
        CHECK(sign_detached(kData, options).is_ok());

        SUBCASE("a wrong passphrase is a clear error") {
            write_file(f.tmp / "wrong", "not the passphrase\n");
            options.passphrase_file = f.tmp / "wrong";
            auto r = sign_detached(kData, options);
            REQUIRE_FALSE(r.is_ok());
            CHECK(r.status().code() == Code::untrusted);
            CHECK_MESSAGE(r.status().message().find("Bad passphrase") != std::string::npos,
                          r.status().message());
            CHECK(r.status().message().find(f.keys.passphrase_fpr) != std::string::npos);
            CHECK(r.status().message().find('\n') == std::string::npos);
        }
        SUBCASE("an unreadable passphrase file is an io error naming it") {
            options.passphrase_file = f.tmp / "no-such-file";
            auto r = sign_detached(kData, options);
            REQUIRE_FALSE(r.is_ok());
            CHECK(r.status().code() == Code::io);
            CHECK(r.status().message().find("no-such-file") != std::string::npos);
        }
        SUBCASE("a huge passphrase file is refused") {
            write_file(f.tmp / "huge", std::string(8192, 'x'));
            options.passphrase_file = f.tmp / "huge";
            CHECK(sign_detached(kData, options).status().code() == Code::too_large);
        }
    }

    TEST_CASE("sign_detached with a missing key names it") {
        Fixture f;
        const std::string missing = "0123456789ABCDEF0123456789ABCDEF01234567";
        auto r = sign_detached(kData, {missing, f.keys.home, ""});
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == Code::untrusted);
        CHECK_MESSAGE(r.status().message().find(missing) != std::string::npos,
                      r.status().message());
        CHECK(r.status().message().find("no such secret key") != std::string::npos);

        // A key whose public part alone is present is just as missing.
        std::string pub_only = f.gpg_home_with({"plain"});
        r = sign_detached(kData, {f.keys.plain_fpr, pub_only, ""});
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().message().find(f.keys.plain_fpr) != std::string::npos);
    }

    TEST_CASE("sign_detached refuses an expired key") {
        Fixture f;
        auto r = sign_detached(kData, {f.keys.expired_fpr, f.keys.home, ""});
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == Code::untrusted);
        CHECK_MESSAGE(r.status().message().find("expired") != std::string::npos,
                      r.status().message());
    }

    TEST_CASE("the test keys are made on a frozen clock: primaries at 2020-01-01T00:00:00Z") {
        // A ticking faked clock restarts in every gpg process: on a loaded machine the subkey's
        // primary then looked "created in the future" to the next gpg, which refused to add the
        // subkey, failing the whole run at random. Frozen clocks make every time exact.
        const TestKeys& keys = test_keys();
        ProcessResult r = run({"gpg", "--homedir", keys.home, "--batch", "--with-colons",
                               "--list-keys"});
        REQUIRE_MESSAGE(r.exit_status == 0, r.err);
        std::istringstream lines(r.out);
        std::string line;
        int primaries = 0, subkeys = 0;
        while (std::getline(lines, line)) {
            std::vector<std::string> fields;
            std::istringstream split(line);
            for (std::string field; std::getline(split, field, ':');) fields.push_back(field);
            if (fields.size() < 6) continue;
            if (fields[0] == "pub") {
                ++primaries;
                CHECK_MESSAGE(fields[5] == "1577836800", line);
            } else if (fields[0] == "sub") {
                ++subkeys;
                CHECK_MESSAGE(fields[5] == "1577836860", line);
            }
        }
        CHECK(primaries == 6);
        CHECK(subkeys == 1);
    }

}  // TEST_SUITE("SignatureVerifier")

}  // namespace ssync::test
