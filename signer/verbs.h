#pragma once

#include "ssync/cli.h"

namespace ssync::signer {
cli::Command sign_command();
cli::Command gc_command();
}  // namespace ssync::signer
