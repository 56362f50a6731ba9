#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "ssync/cli.h"
#include "ssync/release.h"

namespace ssync::verifier {

cli::Command audit_command();
cli::Command check_command();
cli::Command show_command();
cli::Command export_command();
cli::Command sync_command();

// The options of every verb that reads a signed manifest: --from or --manifest/--signature,
// --keyring, --name, --allow-expired, --max-manifest-size.
std::vector<cli::OptionSpec> release_options();
// Reads and verifies the release those options name.
Result<VerifiedRelease> load_release(const cli::Args& args);
// Prints a JSON document on stdout.
void print_json(const nlohmann::json& j);

}  // namespace ssync::verifier
