#include "ssync/signature.h"

#include <fcntl.h>
#include <gpgme.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <type_traits>

#include "ssync/fs.h"
#include "ssync/process.h"

namespace ssync {

namespace {

constexpr std::uint64_t kMaxKeyringBytes = 16u << 20;
constexpr std::uint64_t kMaxPassphraseFileBytes = 4096;

struct ContextDeleter {
    void operator()(gpgme_ctx_t ctx) const { gpgme_release(ctx); }
};
struct DataDeleter {
    void operator()(gpgme_data_t data) const { gpgme_data_release(data); }
};
struct KeyDeleter {
    void operator()(gpgme_key_t key) const { gpgme_key_unref(key); }
};
using Context = std::unique_ptr<std::remove_pointer_t<gpgme_ctx_t>, ContextDeleter>;
using Data = std::unique_ptr<std::remove_pointer_t<gpgme_data_t>, DataDeleter>;
using Key = std::unique_ptr<std::remove_pointer_t<gpgme_key_t>, KeyDeleter>;

// The one place where a GPGME error becomes a Status: "context: <GPGME's text>". Problems with
// keys, passphrases and signatures are `untrusted`; operating-system errors are `io`; anything
// else gets `otherwise` (gpg's "General error" is all it says about some malformed input).
Status gpgme_status(gpgme_error_t err, std::string_view context, Code otherwise = Code::internal) {
    char text[256];
    if (gpgme_strerror_r(err, text, sizeof text) != 0) text[sizeof text - 1] = '\0';
    Code code = otherwise;
    switch (gpgme_err_code(err)) {
        case GPG_ERR_BAD_PASSPHRASE:
        case GPG_ERR_NO_SECKEY:
        case GPG_ERR_NO_PUBKEY:
        case GPG_ERR_UNUSABLE_SECKEY:
        case GPG_ERR_UNUSABLE_PUBKEY:
        case GPG_ERR_KEY_EXPIRED:
        case GPG_ERR_CERT_REVOKED:
        case GPG_ERR_SIG_EXPIRED:
        case GPG_ERR_BAD_SIGNATURE:
        case GPG_ERR_NO_DATA:
        case GPG_ERR_AMBIGUOUS_NAME:
        case GPG_ERR_WRONG_KEY_USAGE:
        case GPG_ERR_BAD_DATA:
        case GPG_ERR_INV_PACKET:
        case GPG_ERR_UNKNOWN_PACKET:
        case GPG_ERR_INV_DATA:
        case GPG_ERR_INV_ARMOR:
            code = Code::untrusted;
            break;
        default:
            if (gpgme_err_code_to_errno(gpgme_err_code(err)) != 0) code = Code::io;
            break;
    }
    std::string message(context);
    message += ": ";
    message += text;
    return Status(code, std::move(message));
}

// GPGME must be initialised once per process, before the first context; call_once makes that
// safe when verifiers are created on several threads.
const Status& initialise_gpgme() {
    static std::once_flag once;
    static Status status;
    std::call_once(once, [] {
        // GPGME asks gpgconf where every engine lives and then probes each one (gpgconf three
        // times, gpgsm, gpg): half a dozen process starts, a sizeable part of a re-sign or a
        // no-op sync. ssync uses only the OpenPGP engine, at GPGME's built-in path
        // (/usr/bin/gpg on Debian), and starts no agent through GPGME. Must precede
        // gpgme_check_version.
        gpgme_set_global_flag("disable-gpgconf", "1");
        if (!gpgme_check_version(GPGME_VERSION)) {
            status = Status(Code::internal, std::string("GPGME ") + gpgme_check_version(nullptr) +
                                                " is older than " + GPGME_VERSION);
            return;
        }
        gpgme_error_t err = gpgme_engine_check_version(GPGME_PROTOCOL_OpenPGP);
        if (err) status = gpgme_status(err, "gpg engine");
    });
    return status;
}

// A fresh OpenPGP context bound to `home` (GnuPG's default home when empty). The binding is per
// context: gpgme_set_engine_info would change every context in the process. A program with a
// single home can instead set GNUPGHOME to it before the first context (ssync-signer does).
Result<Context> new_context(const std::string& home) {
    SSYNC_RETURN_IF_ERROR(initialise_gpgme());
    gpgme_ctx_t raw = nullptr;
    if (gpgme_error_t err = gpgme_new(&raw)) return gpgme_status(err, "gpgme_new");
    Context ctx(raw);
    if (gpgme_error_t err = gpgme_set_protocol(ctx.get(), GPGME_PROTOCOL_OpenPGP)) {
        return gpgme_status(err, "gpgme_set_protocol");
    }
    // Bound through the engine info only when the environment does not already name `home`:
    // each binding makes GPGME run `gpg --version` again (~10 ms, a tenth of a re-sign), and
    // gpg reads GNUPGHOME as it reads --homedir.
    const char* env_home = std::getenv("GNUPGHOME");
    if (!home.empty() && !(env_home && home == env_home)) {
        gpgme_error_t err =
            gpgme_ctx_set_engine_info(ctx.get(), GPGME_PROTOCOL_OpenPGP, nullptr, home.c_str());
        if (err) return gpgme_status(err, quote_path(home));
    }
    // Only what is already in the home: never ask a key server or WKD.
    if (gpgme_error_t err = gpgme_set_keylist_mode(ctx.get(), GPGME_KEYLIST_MODE_LOCAL)) {
        return gpgme_status(err, "gpgme_set_keylist_mode");
    }
    if (gpgme_error_t err = gpgme_set_ctx_flag(ctx.get(), "auto-key-retrieve", "0")) {
        return gpgme_status(err, "gpgme_set_ctx_flag auto-key-retrieve");
    }
    gpgme_set_offline(ctx.get(), 1);
    return ctx;
}

// The one key `pattern` (a fingerprint) names, listed through `ctx` itself: gpgme_get_key would
// clone the context, and binding the clone to the home runs `gpg --version` once more.
// GPG_ERR_EOF when there is none, GPG_ERR_AMBIGUOUS_NAME when there are several (as
// gpgme_get_key says). An empty pattern would list every key: refused.
gpgme_error_t find_key(gpgme_ctx_t ctx, const std::string& pattern, bool secret, Key& found) {
    found.reset();
    if (pattern.empty()) return gpgme_error(GPG_ERR_INV_VALUE);
    if (gpgme_error_t err = gpgme_op_keylist_start(ctx, pattern.c_str(), secret ? 1 : 0)) return err;
    gpgme_key_t raw = nullptr;
    gpgme_error_t err = gpgme_op_keylist_next(ctx, &raw);
    found.reset(raw);
    if (!err) {
        gpgme_key_t another = nullptr;
        gpgme_error_t next = gpgme_op_keylist_next(ctx, &another);
        if (!next) {
            gpgme_key_unref(another);
            found.reset();
            err = gpgme_error(GPG_ERR_AMBIGUOUS_NAME);
        } else if (gpgme_err_code(next) != GPG_ERR_EOF) {
            found.reset();
            err = next;
        }
    }
    gpgme_op_keylist_end(ctx);
    return err;
}

// `copy` is 0: the caller keeps `bytes` alive for as long as the Data.
Result<Data> data_from(std::string_view bytes) {
    gpgme_data_t raw = nullptr;
    if (gpgme_error_t err = gpgme_data_new_from_mem(&raw, bytes.data(), bytes.size(), 0)) {
        return gpgme_status(err, "gpgme_data_new_from_mem");
    }
    return Data(raw);
}

Result<Data> empty_data() {
    gpgme_data_t raw = nullptr;
    if (gpgme_error_t err = gpgme_data_new(&raw)) return gpgme_status(err, "gpgme_data_new");
    return Data(raw);
}

Result<std::string> data_contents(gpgme_data_t data) {
    if (gpgme_data_seek(data, 0, SEEK_SET) != 0) return errno_status("gpgme_data_seek");
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t got = gpgme_data_read(data, buf, sizeof buf);
        if (got < 0) return errno_status("gpgme_data_read");
        if (got == 0) break;
        out.append(buf, static_cast<std::size_t>(got));
    }
    return out;
}

struct PassphraseHook {
    std::string passphrase;
    bool rejected = false;  // the agent said the passphrase we gave was wrong
    bool empty = false;     // the key needs a passphrase and the file's first line is empty
};

gpgme_error_t write_passphrase(void* hook_value, const char*, const char*, int prev_was_bad,
                               int fd) {
    auto* hook = static_cast<PassphraseHook*>(hook_value);
    // An empty line is not worth sending: gpg would answer only "No passphrase given", which
    // names neither the file nor the cause. Known here, when gpg asks, because a key without
    // a passphrase never asks and may well be used with an empty file.
    if (hook->passphrase.empty()) {
        hook->empty = true;
        return gpgme_error(GPG_ERR_NO_PASSPHRASE);
    }
    // Asking again with the same passphrase cannot help: give up at once.
    if (prev_was_bad) {
        hook->rejected = true;
        return gpgme_error(GPG_ERR_BAD_PASSPHRASE);
    }
    // Two writes, no allocation: an exception must not leave this C callback, and the secret
    // gets no second copy to wipe. gpg reads up to the newline.
    if (gpgme_io_writen(fd, hook->passphrase.data(), hook->passphrase.size()) != 0 || gpgme_io_writen(fd, "\n", 1) != 0) {
        return gpgme_error_from_syserror();
    }
    return 0;
}

// The first line of the file, without its line ending.
Result<std::string> read_passphrase(const std::string& path) {
    SSYNC_ASSIGN_OR_RETURN(std::string contents, read_file_bounded(path, kMaxPassphraseFileBytes));
    std::string line = contents.substr(0, contents.find('\n'));
    if (!line.empty() && line.back() == '\r') line.pop_back();
    explicit_bzero(contents.data(), contents.size());
    return line;
}

// Whether a signing error means that gpg-agent wanted to ask for a passphrase and could not.
bool needs_pinentry(gpgme_error_t err) {
    switch (gpgme_err_code(err)) {
        case GPG_ERR_ENOTTY:
        case GPG_ERR_NO_PIN_ENTRY:
        case GPG_ERR_PIN_ENTRY:
        case GPG_ERR_NO_PASSPHRASE:
        case GPG_ERR_CANCELED:
        case GPG_ERR_FULLY_CANCELED:
        case GPG_ERR_TIMEOUT:
            return true;
        default:
            return false;
    }
}

std::string subkey_name(gpgme_subkey_t subkey) {
    if (subkey->fpr) return subkey->fpr;
    return subkey->keyid ? subkey->keyid : "?";
}

}  // namespace

namespace {

struct SigningKey {
    Context ctx;
    Key key;
    std::string fpr;  // the key's name for messages
};

// Looks up the secret key in a fresh context bound to options.gnupg_home and checks that it
// can sign.
Result<SigningKey> find_signing_key(const SigningOptions& options, const std::string& what) {
    SSYNC_ASSIGN_OR_RETURN(Context ctx, new_context(options.gnupg_home));
    Key key;
    gpgme_error_t err = find_key(ctx.get(), options.key, true, key);
    if (gpgme_err_code(err) == GPG_ERR_EOF || (!err && !key)) {
        return Status(Code::untrusted,
                      what + ": no such secret key in " +
                          (options.gnupg_home.empty() ? std::string("the default GnuPG home")
                                                      : quote_path(options.gnupg_home)));
    }
    if (err) return gpgme_status(err, what);
    std::string fpr = key->subkeys ? subkey_name(key->subkeys) : options.key;
    if (key->revoked) return Status(Code::untrusted, what + ": key " + fpr + " is revoked");
    if (key->expired) return Status(Code::untrusted, what + ": key " + fpr + " has expired");
    if (key->disabled) return Status(Code::untrusted, what + ": key " + fpr + " is disabled");
    if (!key->can_sign) {
        return Status(Code::untrusted, what + ": key " + fpr + " has no usable signing key");
    }
    return SigningKey{std::move(ctx), std::move(key), std::move(fpr)};
}

}  // namespace

struct SignatureVerifier::Engine {
    // One context for the import, every verification and every key lookup: binding a context
    // to a home makes GPGME run `gpg --version` (~25 ms) each time.
    Context ctx;
};

struct Signer::Impl {
    SigningOptions options;
    std::string what;  // "signing key '<spec>'", for messages
    SigningKey found;
};

Signer::Signer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Signer::~Signer() = default;

Result<std::unique_ptr<Signer>> Signer::open(const SigningOptions& options) {
    std::string what = "signing key '" + options.key + "'";
    SSYNC_ASSIGN_OR_RETURN(SigningKey found, find_signing_key(options, what));
    gpgme_set_armor(found.ctx.get(), 1);
    if (gpgme_error_t err = gpgme_signers_add(found.ctx.get(), found.key.get())) {
        return gpgme_status(err, what);
    }
    auto impl = std::make_unique<Impl>(Impl{options, std::move(what), std::move(found)});
    return std::unique_ptr<Signer>(new Signer(std::move(impl)));
}

Result<std::string> sign_detached(std::string_view data, const SigningOptions& options) {
    SSYNC_ASSIGN_OR_RETURN(std::unique_ptr<Signer> signer, Signer::open(options));
    return signer->sign_detached(data);
}

Result<std::string> Signer::sign_detached(std::string_view data) {
    const SigningOptions& options = impl_->options;
    const std::string& what = impl_->what;
    Context& ctx = impl_->found.ctx;
    const std::string& fpr = impl_->found.fpr;
    gpgme_error_t err = 0;

    // The passphrase is read for each signature and wiped right after it.
    PassphraseHook hook;
    if (!options.passphrase_file.empty()) {
        SSYNC_ASSIGN_OR_RETURN(hook.passphrase, read_passphrase(options.passphrase_file));
        if ((err = gpgme_set_pinentry_mode(ctx.get(), GPGME_PINENTRY_MODE_LOOPBACK))) {
            return gpgme_status(err, what);
        }
        gpgme_set_passphrase_cb(ctx.get(), write_passphrase, &hook);
    }

    SSYNC_ASSIGN_OR_RETURN(Data in, data_from(data));
    SSYNC_ASSIGN_OR_RETURN(Data out, empty_data());
    err = gpgme_op_sign(ctx.get(), in.get(), out.get(), GPGME_SIG_MODE_DETACH);
    gpgme_set_passphrase_cb(ctx.get(), nullptr, nullptr);  // the hook dies with this call
    explicit_bzero(hook.passphrase.data(), hook.passphrase.size());
    if (hook.rejected) err = gpgme_error(GPG_ERR_BAD_PASSPHRASE);
    if (err) {
        std::string context = what + " (" + fpr + ")";
        if (hook.empty) {
            // A mistake in what the command line names, like an empty option value.
            return Status(Code::usage, quote_path(options.passphrase_file) + ": its first line is empty, but " +
                                           context + " needs a passphrase");
        }
        if (options.passphrase_file.empty() && needs_pinentry(err)) {
            // gpg-agent tried to ask a person (pinentry) and could not: no terminal (ENOTTY,
            // "Inappropriate ioctl for device"), no pinentry program, or nobody answered. A
            // key problem, reported as the others are (untrusted), with the way out.
            char text[256];
            if (gpgme_strerror_r(err, text, sizeof text) != 0) text[sizeof text - 1] = '\0';
            return Status(Code::untrusted, context + ": the key needs a passphrase and gpg-agent could not ask "
                                           "for it (" + text + "); give --passphrase-file FILE for "
                                           "unattended signing");
        }
        if (gpgme_err_code(err) == GPG_ERR_BAD_PASSPHRASE && !options.passphrase_file.empty()) {
            context += ", passphrase from " + quote_path(options.passphrase_file);
        }
        return gpgme_status(err, context);
    }
    gpgme_sign_result_t result = gpgme_op_sign_result(ctx.get());
    if (result && result->invalid_signers) {
        return gpgme_status(result->invalid_signers->reason, what + " (" + fpr + ")");
    }
    if (!result || !result->signatures) {
        return Status(Code::internal, what + ": gpg made no signature");
    }
    return data_contents(out.get());
}

Result<std::unique_ptr<SignatureVerifier>> SignatureVerifier::create(
    const std::string& keyring_path) {
    const std::string display = quote_path(keyring_path);
    SSYNC_ASSIGN_OR_RETURN(std::string keyring, read_file_bounded(keyring_path, kMaxKeyringBytes));

    // In $TMPDIR when that is an absolute path short enough for gpg-agent's socket names (see
    // the pitfalls note on socket length), else in /tmp. A process killed before its
    // destructor runs leaves the home behind (two small files, no agent): $TMPDIR lets a
    // caller keep that where it cleans up.
    std::string tmpl = "/tmp/ssync-XXXXXX";
    if (const char* tmpdir = std::getenv("TMPDIR"); tmpdir && tmpdir[0] == '/' && std::strlen(tmpdir) <= 60) {
        tmpl = std::string(tmpdir) + "/ssync-XXXXXX";
    }
    if (!mkdtemp(tmpl.data())) return errno_status("mkdtemp " + tmpl);
    std::unique_ptr<SignatureVerifier> verifier(new SignatureVerifier());
    verifier->home_ = tmpl;  // from here on the destructor removes the home
    const std::string& home = verifier->home_;

    SSYNC_ASSIGN_OR_RETURN(UniqueFd home_fd, open_dir_trusted(home));
    if (system_fs().fchmod(home_fd.get(), 0700) != 0) return errno_status(home);
    // GnuPG >= 2.4 would switch a fresh home to keyboxd if a global common.conf says so, and
    // keyboxd ignores the keyring we set up here. 2.2 does not read common.conf; writing it
    // anyway keeps the home safe under either.
    SSYNC_RETURN_IF_ERROR(write_file_atomic(system_fs(), home_fd.get(), "common.conf",
                                            "# written by ssync: never use keyboxd\n", 0600,
                                            join_path(home, "common.conf")));
    // A signature must never bring or fetch its own key. Verification needs no secret keys,
    // so no gpg-agent is started at all (no-autostart): nothing is left running even when
    // this process is killed before its destructor can stop an agent.
    SSYNC_RETURN_IF_ERROR(write_file_atomic(system_fs(), home_fd.get(), "gpg.conf",
                                            "no-auto-key-retrieve\n"
                                            "no-auto-key-import\n"
                                            "no-auto-key-locate\n"
                                            "no-include-key-block\n"
                                            "no-autostart\n",
                                            0600, join_path(home, "gpg.conf")));

    SSYNC_ASSIGN_OR_RETURN(verifier->engine_->ctx, new_context(home));
    Context& ctx = verifier->engine_->ctx;
    SSYNC_ASSIGN_OR_RETURN(Data keydata, data_from(keyring));
    if (gpgme_error_t err = gpgme_op_import(ctx.get(), keydata.get())) {
        return gpgme_status(err, display);
    }
    gpgme_import_result_t imported = gpgme_op_import_result(ctx.get());
    if (!imported || imported->considered == 0 || imported->imported + imported->unchanged == 0) {
        return Status(Code::untrusted, display + ": no OpenPGP public key in the keyring");
    }

    if (gpgme_error_t err = gpgme_op_keylist_start(ctx.get(), nullptr, 0)) {
        return gpgme_status(err, display);
    }
    for (;;) {
        gpgme_key_t raw = nullptr;
        gpgme_error_t err = gpgme_op_keylist_next(ctx.get(), &raw);
        Key key(raw);
        if (gpgme_err_code(err) == GPG_ERR_EOF) break;
        if (err) return gpgme_status(err, display);
        if (key->subkeys && key->subkeys->fpr) verifier->pinned_.push_back(key->subkeys->fpr);
    }
    if (verifier->pinned_.empty()) {
        return Status(Code::untrusted, display + ": no OpenPGP public key in the keyring");
    }
    return verifier;
}

SignatureVerifier::SignatureVerifier() : engine_(std::make_unique<Engine>()) {}

SignatureVerifier::~SignatureVerifier() {
    engine_.reset();  // GPGME's context first: it refers to the home
    if (home_.empty()) return;
    // gpg.conf says no-autostart, so normally no agent runs here; but one started by hand (or
    // a future gpg that ignores the option) would outlive us and hold the directory. Its
    // socket is in the home, or below /run/user/UID/gnupg when that exists, where its name is
    // a hash of the home's path: only then is gpgconf (tens of milliseconds) worth starting.
    // Out of memory, the home stays behind (in $TMPDIR): an exception must not leave.
    try {
        const std::string run_dir = "/run/user/" + std::to_string(::getuid()) + "/gnupg";
        struct stat st;
        if (::lstat((home_ + "/S.gpg-agent").c_str(), &st) == 0 || ::lstat(run_dir.c_str(), &st) == 0) {
            (void)run_process({"gpgconf", "--homedir", home_, "--kill", "all"});
        }
        (void)remove_tree(system_fs(), AT_FDCWD, home_, home_);
    } catch (...) {
    }
}

namespace {

// What gpg reported about one signature, copied out of the verify result before anything else
// runs on the context.
struct SignatureReport {
    std::string fpr;
    gpgme_error_t status = 0;
    unsigned summary = 0;
    bool wrong_key_usage = false;
    std::int64_t created = 0;
    std::int64_t expires = 0;  // the signature's own expiry; 0: none
};

enum class Verdict { good, bad, not_accepted };

struct Judgement {
    Verdict verdict = Verdict::not_accepted;
    std::string reason;           // one line, for anything but good
    VerifiedSignature signature;  // for good
};

Judgement not_accepted(std::string reason) {
    return {Verdict::not_accepted, std::move(reason), {}};
}

// A signature names its key by fingerprint or, in old formats, by the key id that ends it.
bool names_subkey(std::string_view name, gpgme_subkey_t subkey) {
    std::string_view fpr = subkey->fpr ? subkey->fpr : "";
    if (name.empty() || fpr.size() < name.size()) return false;
    return strncasecmp(fpr.data() + (fpr.size() - name.size()), name.data(), name.size()) == 0;
}

// The rules of the pitfalls note, item 6: GREEN and VALID are not consulted, since keys freshly
// imported into the private home have unknown validity.
Judgement judge(const SignatureReport& s, gpgme_ctx_t ctx, const std::vector<std::string>& pinned) {
    const std::string fpr = s.fpr.empty() ? std::string("(no issuer)") : s.fpr;
    const gpgme_err_code_t code = gpgme_err_code(s.status);
    if (code == GPG_ERR_BAD_SIGNATURE) return {Verdict::bad, "bad signature by key " + fpr, {}};
    if (code == GPG_ERR_CERT_REVOKED || (s.summary & GPGME_SIGSUM_KEY_REVOKED)) {
        return not_accepted("key " + fpr + " revoked");
    }
    if (code == GPG_ERR_KEY_EXPIRED || (s.summary & GPGME_SIGSUM_KEY_EXPIRED)) {
        return not_accepted("key " + fpr + " expired");
    }
    if (code == GPG_ERR_SIG_EXPIRED || (s.summary & GPGME_SIGSUM_SIG_EXPIRED)) {
        return not_accepted("signature expired (made by key " + fpr + ")");
    }
    if (code == GPG_ERR_NO_PUBKEY || (s.summary & GPGME_SIGSUM_KEY_MISSING)) {
        return not_accepted("signed by unknown key " + fpr);
    }
    if (s.wrong_key_usage || (s.summary & GPGME_SIGSUM_BAD_POLICY)) {
        return not_accepted("key " + fpr + " is not meant for signing");
    }
    if (code != GPG_ERR_NO_ERROR || (s.summary & (GPGME_SIGSUM_RED | GPGME_SIGSUM_SYS_ERROR))) {
        return not_accepted(
            gpgme_status(s.status, "signature by key " + fpr + " not accepted").message());
    }

    // Good as far as gpg is concerned. Now: which primary key made it, and is it pinned?
    Key key;
    gpgme_error_t err = find_key(ctx, s.fpr, false, key);
    if (err || !key || !key->subkeys || !key->subkeys->fpr) {
        return not_accepted("signed by unknown key " + fpr);
    }
    const std::string primary = key->subkeys->fpr;
    if (std::find(pinned.begin(), pinned.end(), primary) == pinned.end()) {
        return not_accepted("signed by unknown key " + primary);
    }
    if (key->revoked) return not_accepted("key " + primary + " revoked");
    if (key->expired) return not_accepted("key " + primary + " expired");
    if (key->disabled || key->invalid) return not_accepted("key " + primary + " is not usable");
    gpgme_subkey_t signer = key->subkeys;
    while (signer && !names_subkey(s.fpr, signer)) signer = signer->next;
    if (!signer) return not_accepted("signed by unknown key " + fpr);
    if (signer->revoked) return not_accepted("key " + subkey_name(signer) + " revoked");
    if (signer->expired) return not_accepted("key " + subkey_name(signer) + " expired");
    if (signer->disabled || signer->invalid || !signer->can_sign) {
        return not_accepted("key " + subkey_name(signer) + " is not meant for signing");
    }
    std::int64_t valid_until = 0;
    for (std::int64_t t : {s.expires, static_cast<std::int64_t>(key->subkeys->expires),
                           static_cast<std::int64_t>(signer->expires)}) {
        if (t > 0 && (valid_until == 0 || t < valid_until)) valid_until = t;
    }
    return {Verdict::good, {}, VerifiedSignature{primary, s.fpr, s.created, valid_until}};
}

}  // namespace

Result<VerifiedSignature> SignatureVerifier::verify(std::string_view data,
                                                    std::string_view signature) const {
    Context& ctx = engine_->ctx;
    SSYNC_ASSIGN_OR_RETURN(Data sig, data_from(signature));
    SSYNC_ASSIGN_OR_RETURN(Data signed_text, data_from(data));
    gpgme_error_t err = gpgme_op_verify(ctx.get(), sig.get(), signed_text.get(), nullptr);
    if (gpgme_err_code(err) == GPG_ERR_NO_DATA) {
        return Status(Code::untrusted, "no signature found");
    }
    // Whatever else gpg could not read is not a signature we can accept.
    if (err) return gpgme_status(err, "no signature found", Code::untrusted);

    // "No error" from gpg only means it could read the input (pitfalls note, item 4).
    std::vector<SignatureReport> reports;
    gpgme_verify_result_t result = gpgme_op_verify_result(ctx.get());
    for (gpgme_signature_t s = result ? result->signatures : nullptr; s; s = s->next) {
        reports.push_back({s->fpr ? s->fpr : "", s->status, static_cast<unsigned>(s->summary),
                           s->wrong_key_usage != 0, static_cast<std::int64_t>(s->timestamp),
                           static_cast<std::int64_t>(s->exp_timestamp)});
    }
    if (reports.empty()) return Status(Code::untrusted, "no signature found");

    // Every signature is judged (item 7). One good signature by a pinned key is enough, unless
    // another is forged; a signature that merely cannot be accepted (an unknown key, say, while
    // the signer moves to a new key) does not veto a good one.
    std::optional<VerifiedSignature> good;
    std::string first_reason;
    for (const SignatureReport& report : reports) {
        Judgement j = judge(report, ctx.get(), pinned_);
        if (j.verdict == Verdict::bad) return Status(Code::untrusted, j.reason);
        if (j.verdict == Verdict::good) {
            if (!good) good = std::move(j.signature);
        } else if (first_reason.empty()) {
            first_reason = std::move(j.reason);
        }
    }
    if (good) return *good;
    return Status(Code::untrusted, first_reason);
}

}  // namespace ssync
