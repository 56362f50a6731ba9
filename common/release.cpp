#include "ssync/release.h"

#include <charconv>

#include "ssync/fs.h"
#include "ssync/hash.h"
#include "ssync/publication.h"

namespace ssync {

Result<VerifiedRelease> verify_release(std::string manifest_bytes, std::string signature,
                                       const SignatureVerifier& verifier, const TrustPolicy& policy,
                                       const std::string& display) {
    // Checked before GnuPG sees the bytes (parse_manifest checks again, for its other callers).
    if (manifest_bytes.size() > policy.limits.max_bytes) {
        return Status(Code::bad_manifest, display + ": larger than the limit of " +
                                              std::to_string(policy.limits.max_bytes) + " bytes");
    }
    VerifiedRelease r;
    auto signer = verifier.verify(manifest_bytes, signature);
    if (!signer) return signer.status().with_context(display);
    r.signer = std::move(signer).value();
    // Parse the very buffer that was verified; the file is never read again.
    auto parsed = parse_manifest(manifest_bytes, policy.limits);
    if (!parsed) return parsed.status().with_context(display);
    r.manifest = std::move(parsed).value();
    const Manifest& m = r.manifest;
    if (!policy.expected_name.empty() && m.name != policy.expected_name) {
        return Status(Code::bad_manifest, display + ": name is \"" + m.name + "\", expected \"" +
                                              policy.expected_name + "\"");
    }
    if (m.created > policy.now + policy.max_clock_skew) {
        return Status(Code::bad_manifest,
                      display + ": created " + format_rfc3339(m.created) + ", which is " +
                          std::to_string(m.created - policy.now) +
                          " s ahead of this host's clock (" + format_rfc3339(policy.now) +
                          "): clock skew; check the clocks of this host and the master");
    }
    if (m.expires <= policy.now && !policy.allow_expired) {
        return Status(Code::bad_manifest,
                      display + ": expired at " + format_rfc3339(m.expires) + " (now " +
                          format_rfc3339(policy.now) + ", serial " + std::to_string(m.serial) +
                          "); the master stopped re-signing or the server replays an old "
                          "release (audit, check and show take --allow-expired to inspect it)");
    }
    r.manifest_sha256 = sha256_hex(manifest_bytes);
    r.manifest_bytes = std::move(manifest_bytes);
    r.signature = std::move(signature);
    return r;
}

Result<ReleaseFiles> locate_release(Transport& transport) {
    // A mirror's own `.ssync/latest` first: the top level of a mirror is the file set, which
    // may hold a file named `latest` (or be a publication itself) that says nothing about the
    // release applied there. A publication has no `.ssync/` (manifests refuse the name), and
    // servers configured to deny dot-paths answer 403: both mean "not a mirror".
    for (const std::string prefix : {".ssync/", ""}) {
        auto latest = transport.fetch(prefix + layout::kLatest, 64);
        if (!latest) {
            if (latest.status().code() == Code::not_found) continue;
            return latest.status();
        }
        auto serial = layout::parse_serial(*latest);
        if (!serial) {
            return Status(Code::bad_manifest, transport.describe() + "/" + prefix + layout::kLatest +
                                                  ": not a serial number");
        }
        std::string dir = prefix + layout::release_dir(*serial) + "/";
        return ReleaseFiles{dir + layout::kManifest, dir + layout::kSignature, *serial};
    }
    return ReleaseFiles{layout::kManifest, layout::kSignature, std::nullopt};
}

Result<VerifiedRelease> fetch_release(Transport& transport, const SignatureVerifier& verifier,
                                      const TrustPolicy& policy) {
    SSYNC_ASSIGN_OR_RETURN(ReleaseFiles files, locate_release(transport));
    std::string display = join_path(transport.describe(), files.manifest_path);
    SSYNC_ASSIGN_OR_RETURN(std::string signature,
                           transport.fetch(files.signature_path, kMaxSignatureBytes));
    SSYNC_ASSIGN_OR_RETURN(std::string bytes, transport.fetch(files.manifest_path, policy.limits.max_bytes));
    SSYNC_ASSIGN_OR_RETURN(VerifiedRelease release,
                           verify_release(std::move(bytes), std::move(signature), verifier,
                                          policy, display));
    if (files.announced_serial && *files.announced_serial != release.manifest.serial) {
        return Status(Code::bad_manifest, display + ": `latest` announces serial " +
                                              std::to_string(*files.announced_serial) +
                                              " but the signed manifest has serial " +
                                              std::to_string(release.manifest.serial));
    }
    return release;
}

}  // namespace ssync
