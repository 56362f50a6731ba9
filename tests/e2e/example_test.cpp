// The README's first set-up command ends in examples/run-example.sh: run it here against the
// binaries under test, so that the main job on the bundled example keeps working.
#include <doctest/doctest.h>

#include <string>

#include "e2e.h"

namespace ssync::test {

TEST_SUITE("e2e example") {
    TEST_CASE("examples/run-example.sh signs, syncs, audits, collects and catches tampering") {
        std::string bin = SSYNC_SIGNER_BIN;
        bin.erase(bin.rfind('/'));
        auto r = run({"env", "SSYNC_BIN=" + bin, "bash", SSYNC_SOURCE_DIR "/examples/run-example.sh"});
        CHECK_MESSAGE(r.exit_status == 0, r.out << r.err);
        for (const char* step : {"== sign examples/site", "== sync a mirror", "== audit the mirror",
                                 "the mirror follows", "releases kept: 2\n", "content  index.html: expected size",
                                 "== done"}) {
            CAPTURE(step);
            CHECK(r.out.find(step) != std::string::npos);
        }
    }
}

}  // namespace ssync::test
