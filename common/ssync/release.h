// A release as a reader sees it: manifest and signature fetched from a publication, the
// signature verified over exactly those bytes, the same bytes parsed, and the trust policy
// (expiry, name, clock skew) applied. Nothing downstream trusts the transport.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ssync/manifest.h"
#include "ssync/signature.h"
#include "ssync/status.h"
#include "ssync/transport.h"

namespace ssync {

struct TrustPolicy {
    std::string expected_name;          // empty: any name
    bool allow_expired = false;         // for auditing old releases; never the default
    std::int64_t now = 0;               // one "now" for the whole run
    std::int64_t max_clock_skew = 300;  // how far "created" may lie in our future
    ManifestLimits limits;
};

struct VerifiedRelease {
    Manifest manifest;
    std::string manifest_bytes;
    std::string signature;
    std::string manifest_sha256;
    VerifiedSignature signer;
};

// Verifies `signature` over `manifest_bytes`, parses those very bytes and applies `policy`.
// Errors: untrusted (signature), bad_manifest (format, expired, name, clock skew). `display`
// names the manifest in messages.
Result<VerifiedRelease> verify_release(std::string manifest_bytes, std::string signature,
                                       const SignatureVerifier& verifier, const TrustPolicy& policy,
                                       const std::string& display);

// Where the current release lives in a publication.
struct ReleaseFiles {
    std::string manifest_path, signature_path;
    std::optional<std::uint64_t> announced_serial;  // what `latest` claims (unsigned)
};

// A publication written by ssync-signer has `latest` naming releases/<serial>/; a mirror
// written by ssync-verifier sync keeps .ssync/latest and .ssync/releases/<serial>/ likewise.
// A directory with only manifest.json and its signature works too.
Result<ReleaseFiles> locate_release(Transport& transport);

// locate_release + fetch (bounded) + verify_release. The signed serial must equal the one
// `latest` announced (else bad_manifest).
Result<VerifiedRelease> fetch_release(Transport& transport, const SignatureVerifier& verifier,
                                      const TrustPolicy& policy);

inline constexpr std::uint64_t kMaxSignatureBytes = 64 * 1024;

}  // namespace ssync
