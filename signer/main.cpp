// ssync-signer: the release master's tool. Each verb lives in its own file.
#include "ssync/cli.h"
#include "verbs.h"

int main(int argc, char** argv) {
    const std::vector<ssync::cli::Command> commands = {
        ssync::signer::sign_command(),
        ssync::signer::gc_command(),
    };
    return ssync::cli::main("ssync-signer", "Sign a file tree into a publication that mirrors can verify.",
                            commands, argc, argv);
}
