// ssync-verifier: for mirror operators, end users and auditors. Each verb lives in its own file.
#include "ssync/cli.h"
#include "verbs.h"

int main(int argc, char** argv) {
    const std::vector<ssync::cli::Command> commands = {
        ssync::verifier::sync_command(),
        ssync::verifier::audit_command(),
        ssync::verifier::check_command(),
        ssync::verifier::show_command(),
        ssync::verifier::export_command(),
    };
    return ssync::cli::main("ssync-verifier",
                            "Verify signed ssync releases and the trees and files made from them.",
                            commands, argc, argv);
}
