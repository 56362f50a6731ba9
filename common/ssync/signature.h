// OpenPGP detached signatures through GPGME.
//
// Signing uses the release master's own GnuPG home (or gpg-agent). Verification never touches
// the user's ~/.gnupg: a SignatureVerifier owns a private engine home into which only the
// pinned public keys are imported, and it accepts a signature only under the rules of
// docs/threat-model.md (see also ../shared/notes/openpgp-verification.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ssync/status.h"

namespace ssync {

struct SigningOptions {
    std::string key;              // fingerprint (or any gpg key spec) of the secret key
    std::string gnupg_home;       // empty: GnuPG's default ($GNUPGHOME or ~/.gnupg)
    std::string passphrase_file;  // empty: ask gpg-agent; else loopback pinentry with the
                                  // first line of this file
};

// A secret key, looked up and checked once, then used for signatures through the same GPGME
// context: signing does not start gpg again to find the key. open() fails, naming the key and
// why (no such secret key, expired, revoked, cannot sign: code untrusted). One thread at a time.
class Signer {
public:
    static Result<std::unique_ptr<Signer>> open(const SigningOptions& options);
    ~Signer();
    Signer(const Signer&) = delete;
    Signer& operator=(const Signer&) = delete;

    // Returns an ASCII-armoured detached signature over exactly `data`. Errors name the key and
    // say why (bad passphrase: untrusted; an unreadable passphrase file: io).
    Result<std::string> sign_detached(std::string_view data);

private:
    struct Impl;
    explicit Signer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Signer::open followed by one signature.
Result<std::string> sign_detached(std::string_view data, const SigningOptions& options);

// What a good signature told us.
struct VerifiedSignature {
    std::string primary_fpr;   // the pinned primary key that made it (upper-case hex)
    std::string signing_fpr;   // the key or subkey that made it, as the signature names it
    std::int64_t created = 0;  // signature creation time, seconds since the epoch
    // Until when this verdict holds with the same keyring: the earliest expiry of the
    // signature, the signing (sub)key and its primary key; 0 when none expires. (A revocation
    // cannot be foreseen: it arrives as a new keyring, which is verified again.)
    std::int64_t valid_until = 0;
};

class SignatureVerifier {
public:
    // Makes a private GnuPG home ($TMPDIR/ssync-XXXXXX for a short absolute $TMPDIR, else
    // /tmp/ssync-XXXXXX; mode 0700, its own common.conf so that
    // keyboxd is never used, no automatic key retrieval or import) and imports the public keys
    // in `keyring_path` (ASCII-armoured or binary). Errors: io when the file cannot be read,
    // untrusted when it holds no usable public key.
    static Result<std::unique_ptr<SignatureVerifier>> create(const std::string& keyring_path);
    ~SignatureVerifier();  // stops the home's gpg-agent if one started, removes the home
    SignatureVerifier(const SignatureVerifier&) = delete;
    SignatureVerifier& operator=(const SignatureVerifier&) = delete;

    // Verifies a detached `signature` over exactly `data`. Succeeds only when at least one
    // signature is good (status exactly no-error, none of red, key revoked, key expired, signature
    // expired, key missing, bad policy, sys error), made by a key or subkey whose primary key
    // was imported from the keyring, and no signature is bad. Otherwise code untrusted, with a
    // one-line reason: "bad signature", "signed by unknown key <fpr>", "key <fpr> expired",
    // "key <fpr> revoked", "signature expired", "no signature found".
    // Every signature is examined: one bad (forged) signature refuses the whole, while one that
    // merely cannot be accepted (unknown, expired or revoked key) does not outvote a good one,
    // so that a release can be signed by an old and a new key during a key rotation.
    // Not thread-safe: use a verifier from one thread at a time.
    Result<VerifiedSignature> verify(std::string_view data, std::string_view signature) const;

    // Primary fingerprints of the keys imported from the keyring.
    const std::vector<std::string>& pinned_fingerprints() const { return pinned_; }
    const std::string& home() const { return home_; }

private:
    struct Engine;  // the GPGME context bound to home_, reused by every operation
    SignatureVerifier();
    std::string home_;
    std::vector<std::string> pinned_;
    std::unique_ptr<Engine> engine_;
};

}  // namespace ssync
