// What every manifest-reading verb shares: where the release comes from and whom to trust.
#include <cstdio>
#include <ctime>

#include "ssync/fs.h"
#include "ssync/signature.h"
#include "verbs.h"

namespace ssync::verifier {

std::vector<cli::OptionSpec> release_options() {
    return {
        {"from", "PUB", "publication: a directory or file:// URL"},
        {"manifest", "FILE", "a downloaded manifest.json (with --signature, instead of --from)"},
        {"signature", "FILE", "its detached signature, manifest.json.asc"},
        {"keyring", "KEYS.asc", "the public keys to trust (required); nothing else is trusted"},
        {"name", "NAME", "refuse a manifest for another file set"},
        {"allow-expired", "", "accept a manifest past its expiry (auditing old releases)"},
        {"max-manifest-size", "BYTES", "refuse larger manifests (default 536870912)"},
        {"json", "", "machine-readable output on stdout"},
    };
}

void print_json(const nlohmann::json& j) {
    std::string text = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
    std::printf("%s\n", text.c_str());
}

Result<VerifiedRelease> load_release(const cli::Args& args) {
    if (!args.has("keyring")) return Status(Code::usage, "--keyring KEYS.asc is required");
    bool from = args.has("from");
    bool files = args.has("manifest") || args.has("signature");
    if (from == files) {
        return Status(Code::usage, "give either --from PUB or both --manifest FILE and --signature FILE");
    }
    if (files && (!args.has("manifest") || !args.has("signature"))) {
        return Status(Code::usage, "--manifest and --signature go together");
    }
    TrustPolicy policy;
    policy.now = static_cast<std::int64_t>(std::time(nullptr));
    SSYNC_ASSIGN_OR_RETURN(policy.expected_name, cli::release_name(args));
    policy.allow_expired = args.has("allow-expired");
    if (args.has("max-manifest-size")) {
        auto n = cli::parse_unsigned(args.get("max-manifest-size"), "--max-manifest-size");
        if (!n) return n.status();
        policy.limits.max_bytes = *n;
    }
    SSYNC_ASSIGN_OR_RETURN(auto verifier, SignatureVerifier::create(args.get("keyring")));
    if (from) {
        SSYNC_ASSIGN_OR_RETURN(auto transport, open_transport(args.get("from")));
        return fetch_release(*transport, *verifier, policy);
    }
    std::string manifest_path = args.get("manifest");
    SSYNC_ASSIGN_OR_RETURN(std::string bytes, read_file_bounded(manifest_path, policy.limits.max_bytes));
    SSYNC_ASSIGN_OR_RETURN(std::string signature,
                           read_file_bounded(args.get("signature"), kMaxSignatureBytes));
    return verify_release(std::move(bytes), std::move(signature), *verifier, policy,
                          manifest_path);
}

}  // namespace ssync::verifier
