#!/usr/bin/env bash
# The ctest fixture around keys/make-test-keys.sh: the test keys are made once per ctest run,
# and every test process copies them into a GnuPG home of its own (tests/testkeys.cpp).
#
#   tests/test-keys-fixture.sh setup|cleanup DIR
#
# setup removes what an earlier run left in DIR, then makes the keys there; cleanup removes DIR
# (and the short home under /tmp that make-test-keys.sh links to when DIR is too deep).
set -euo pipefail

if [[ $# -ne 2 || ( $1 != setup && $1 != cleanup ) ]]; then
    echo "usage: $0 setup|cleanup DIR" >&2
    exit 2
fi
action=$1
dir=$2

remove_keys() {
    if [[ -L $dir/gnupg ]]; then
        local home
        home=$(readlink "$dir/gnupg")
        gpgconf --homedir "$home" --kill all >/dev/null 2>&1 || true
        rm -rf "$home"
    elif [[ -d $dir/gnupg ]]; then
        gpgconf --homedir "$dir/gnupg" --kill all >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

remove_keys
if [[ $action == setup ]]; then
    # One more try when gpg fails: it rarely does (once in several thousand makings, gpg-agent
    # answered "Corrupted protection" while self-signing a new key), and a failure here would
    # stop every test. The first failure's log is printed either way.
    if ! bash "$(dirname "$0")/../keys/make-test-keys.sh" "$dir"; then
        echo "$0: making the test keys failed; trying once more" >&2
        remove_keys
        bash "$(dirname "$0")/../keys/make-test-keys.sh" "$dir"
    fi
fi
